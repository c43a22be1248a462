"""SimCLR: contrast two augmented views of each image against every other view in the batch.

Chen et al., arXiv 2002.05709. backbone CLS -> ``ProjectionMLP`` -> NT-Xent
(``functional.contrastive.nt_xent_loss``), negatives gathered from every worker with gradients.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from sslkit.functional.contrastive import nt_xent_loss
from sslkit.methods.base import SSLMethod, check_two_views, two_view_collate
from sslkit.methods.registry import MethodSpec, register
from sslkit.nn.bounds import MAX_HEAD_WIDTH
from sslkit.nn.heads import ProjectionMLP
from sslkit.nn.vit import ViT


@dataclass
class SimCLRConfig:
    """Recipe section ``simclr:``: SimCLR (Chen et al., arXiv 2002.05709): 2-layer projector, NT-Xent."""

    temperature: float = 0.1  # google-research/simclr's ImageNet default (its CIFAR runs use 0.5)
    projector_hidden_dim: int = 2048
    projector_out_dim: int = 128
    projector_layers: int = 2
    projector_output_bn: bool = True  # BatchNorm (scale, no shift) on the output, as google-research/simclr


class SimCLR(SSLMethod):
    """``forward(batch)`` reads the two views in ``global_crops`` (2B, C, H, W), crop-major."""

    def __init__(self, backbone: ViT, projector: ProjectionMLP, temperature: float = 0.1):
        super().__init__()
        self.student = nn.ModuleDict({"backbone": backbone, "projector": projector})
        self.temperature = temperature

    def forward(self, batch: dict) -> dict:
        views = batch["global_crops"]
        h = self.student["backbone"](views)
        z1, z2 = self.student["projector"](h).chunk(2)
        loss = nt_xent_loss(z1, z2, self.temperature)
        return {"loss": loss, "contrastive_loss": loss.detach(), "embedding": h[: h.shape[0] // 2].detach()}


def build(cfg, backbone: ViT, in_chans: int) -> SimCLR:
    s = cfg.simclr
    projector = ProjectionMLP(backbone.embed_dim, s.projector_hidden_dim, s.projector_out_dim, s.projector_layers,
                              output_bn=s.projector_output_bn)
    return SimCLR(backbone, projector, temperature=s.temperature)


SPEC = register(MethodSpec(
    name="simclr", config=SimCLRConfig, build=build, collate=two_view_collate, check=check_two_views,
    ranges={"temperature": "(0, 10]", "projector_hidden_dim": f"[1, {MAX_HEAD_WIDTH}]",
            "projector_out_dim": f"[1, {MAX_HEAD_WIDTH}]", "projector_layers": "[1, 16]"},
    wrap_units=(ProjectionMLP,),
))
