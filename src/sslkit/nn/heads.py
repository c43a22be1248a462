"""Projection heads: DINO's prototype head and the MLP projector of SimCLR/VICReg.

``DINOHead`` follows facebookresearch/dinov2 ``dinov2/layers/dino_head.py`` and the spec
(``specs/dinov2.md`` step 3): h(x) = W_last · normalize(MLP(x)), with W_last weight-normalised
and its gain g left trainable (DINO v1 froze g at 1; DINOv2 does not).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.init import trunc_normal_
from torch.nn.utils.parametrizations import weight_norm

from sslkit.functional.prototype_logits import PrototypeLogits

__all__ = ["DINOHead", "ProjectionMLP"]


class DINOHead(nn.Module):
    """MLP -> L2 normalisation -> weight-normalised linear prototypes.

    ``mlp``: Linear(in, hidden)–[BatchNorm if ``use_bn``]–GELU–[Linear(hidden, hidden)–GELU]×(nlayers−2)–Linear(hidden,
    bottleneck), or a single Linear(in, bottleneck) when ``nlayers == 1``; trunc-normal(0.02)
    weights and zero biases.
    ``last_layer``: Linear(bottleneck, out, bias=False) under ``weight_norm``; its effective
    weight is ``g * v / ||v||`` row-wise, with g (out, 1) initialised to 1 and trainable.
    Parameter names: ``last_layer.parametrizations.weight.original0`` (g) and ``.original1`` (v).

    Example::

        head = DINOHead(384, out_dim=4096)
        logits = head(torch.randn(8, 384))   # (8, 4096)
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int = 65536,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        nlayers: int = 3,
        use_bn: bool = False,
    ) -> None:
        super().__init__()
        if nlayers < 1:
            raise ValueError(f"DINOHead needs nlayers >= 1, got {nlayers}.")
        if nlayers == 1:
            self.mlp: nn.Module = nn.Linear(in_dim, bottleneck_dim)
        else:
            # use_bn: BatchNorm after each hidden Linear, the reference head's option
            # (dino_head.py `use_bn`); it removes the component shared by every image, which
            # otherwise dominates a small backbone's features at init (see the tiny recipe).
            def block(n_in: int) -> list[nn.Module]:
                return [nn.Linear(n_in, hidden_dim)] + ([nn.BatchNorm1d(hidden_dim)] if use_bn else []) + [nn.GELU()]

            layers: list[nn.Module] = block(in_dim)
            for _ in range(nlayers - 2):
                layers += block(hidden_dim)
            layers.append(nn.Linear(hidden_dim, bottleneck_dim))
            self.mlp = nn.Sequential(*layers)
        for m in self.mlp.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        # v keeps nn.Linear's default init, as in the reference (its init loop runs before
        # last_layer exists); only the direction of v matters once normalised.
        self.last_layer = weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False), name="weight", dim=0)
        with torch.no_grad():
            self.last_layer.parametrizations.weight.original0.fill_(1.0)
        self.in_dim, self.out_dim, self.bottleneck_dim = in_dim, out_dim, bottleneck_dim

    def bottleneck(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, in_dim) -> the L2-normalised bottleneck features (N, bottleneck_dim) the prototypes score."""
        z = self.mlp(x)
        # Normalise in float32 with eps 1e-6: 1e-12 underflows to 0 in fp16, and a bf16 norm
        # loses precision exactly where the prototype similarities are read.
        return F.normalize(z.float(), p=2.0, dim=-1, eps=1e-6).to(z.dtype)

    def forward(self, x: torch.Tensor, factored: bool = False) -> torch.Tensor | PrototypeLogits:
        """x: (N, in_dim) -> logits (N, out_dim).

        ``factored=True`` returns the same logits kept factored — the features (N, bottleneck_dim) and the
        weight-normalised prototypes (out_dim, bottleneck_dim) — for the losses that never form them
        (``sslkit.functional.prototype_logits``). A keyword of ``forward``, not a method of its own, so that
        FSDP and hooks wrap both."""
        features = self.bottleneck(x)
        if factored:
            return PrototypeLogits(features, self.last_layer.weight)
        return self.last_layer(features)


class ProjectionMLP(nn.Module):
    """The projector of SimCLR and VICReg: [Linear–BatchNorm–ReLU] × (layers − 1) – Linear [– BatchNorm].

    Hidden Linears have no bias: the BatchNorm after each removes it anyway. The last Linear has no
    bias either, as in both references. ``output_bn`` adds a BatchNorm over the output with a scale γ
    and no shift β:

    - SimCLR (arXiv 2002.05709; google-research/simclr ``tf2/model.py`` ``ProjectionHead``: the last
      ``LinearLayer`` has ``use_bias=False, use_bn=True`` and its BatchNorm ``center=False``) uses
      2 layers, a 128-d output and ``output_bn=True``. Without it the outputs of a small backbone
      share one direction at initialisation and NT-Xent sits at ln(2B − 1) for most of a short run
      (issue 18: kNN 56–61 % vs 71–72 % on digits at step 88).
    - VICReg (arXiv 2105.04906, Sec. 4.2; facebookresearch/vicreg ``main_vicreg.py`` ``Projector``)
      uses 3 layers of equal width, a last ``Linear(bias=False)`` and no output normalisation.

    Example::

        proj = ProjectionMLP(192, hidden_dim=512, out_dim=128, layers=2, output_bn=True)
        z = proj(torch.randn(8, 192))   # (8, 128)
    """

    def __init__(self, in_dim: int, hidden_dim: int = 2048, out_dim: int = 128, layers: int = 2,
                 output_bn: bool = False) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError(f"ProjectionMLP needs layers >= 1, got {layers}.")
        modules: list[nn.Module] = []
        width = in_dim
        for _ in range(layers - 1):
            modules += [nn.Linear(width, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True)]
            width = hidden_dim
        modules.append(nn.Linear(width, out_dim, bias=False))
        if output_bn:
            norm = nn.BatchNorm1d(out_dim)
            # The reference's centre=False: a learned scale but no learned shift (F.batch_norm takes bias=None).
            norm.register_parameter("bias", None)
            modules.append(norm)
        self.net = nn.Sequential(*modules)
        self.in_dim, self.out_dim, self.output_bn = in_dim, out_dim, output_bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, in_dim) -> (N, out_dim)."""
        return self.net(x)
