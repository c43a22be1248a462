"""VICReg: invariance between two views, variance and decorrelation of each view's embeddings.

Bardes, Ponce, LeCun, arXiv 2105.04906. backbone CLS -> ``ProjectionMLP`` (3 layers) ->
``functional.vicreg.vicreg_loss`` with the batch statistics taken over every worker.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from sslkit.functional.vicreg import vicreg_loss
from sslkit.methods.base import SSLMethod, check_two_views, two_view_collate
from sslkit.methods.registry import MethodSpec, register
from sslkit.nn.bounds import MAX_HEAD_WIDTH
from sslkit.nn.heads import ProjectionMLP
from sslkit.nn.vit import ViT


@dataclass
class VICRegConfig:
    """Recipe section ``vicreg:``: VICReg (Bardes et al., arXiv 2105.04906): loss weights of the paper, 3-layer
    projector."""

    sim_weight: float = 25.0
    var_weight: float = 25.0
    cov_weight: float = 1.0
    projector_hidden_dim: int = 2048  # the paper's ResNet-50 uses 8192; 2048 suits ViT-S and smaller
    projector_out_dim: int = 2048
    projector_layers: int = 3


class VICReg(SSLMethod):
    """``forward(batch)`` reads the two views in ``global_crops`` (2B, C, H, W), crop-major."""

    def __init__(self, backbone: ViT, projector: ProjectionMLP, sim_weight: float = 25.0,
                 var_weight: float = 25.0, cov_weight: float = 1.0):
        super().__init__()
        self.student = nn.ModuleDict({"backbone": backbone, "projector": projector})
        self.weights = (sim_weight, var_weight, cov_weight)

    def forward(self, batch: dict) -> dict:
        views = batch["global_crops"]
        h = self.student["backbone"](views)
        # One projector call per view, as the reference: its BatchNorm normalises each view by that
        # view's own batch statistics.
        z1, z2 = (self.student["projector"](part) for part in h.chunk(2))
        terms = vicreg_loss(z1, z2, *self.weights)
        return {"loss": terms["loss"], "invariance_loss": terms["invariance"].detach(),
                "variance_loss": terms["variance"].detach(), "covariance_loss": terms["covariance"].detach(),
                "embedding": h[: h.shape[0] // 2].detach()}


def build(cfg, backbone: ViT, in_chans: int) -> VICReg:
    v = cfg.vicreg
    projector = ProjectionMLP(backbone.embed_dim, v.projector_hidden_dim, v.projector_out_dim, v.projector_layers)
    return VICReg(backbone, projector, v.sim_weight, v.var_weight, v.cov_weight)


SPEC = register(MethodSpec(
    name="vicreg", config=VICRegConfig, build=build, collate=two_view_collate, check=check_two_views,
    ranges={"sim_weight": "[0, 1000]", "var_weight": "[0, 1000]", "cov_weight": "[0, 1000]",
            "projector_hidden_dim": f"[1, {MAX_HEAD_WIDTH}]", "projector_out_dim": f"[1, {MAX_HEAD_WIDTH}]",
            "projector_layers": "[1, 16]"},
    wrap_units=(ProjectionMLP,),
))
