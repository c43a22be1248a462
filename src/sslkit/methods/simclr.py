"""SimCLR: contrast two augmented views of each image against every other view in the batch.

Chen et al., arXiv 2002.05709. backbone CLS -> ``ProjectionMLP`` -> NT-Xent
(``functional.contrastive.nt_xent_loss``), negatives gathered from every worker with gradients.
"""

from __future__ import annotations

from torch import nn

from sslkit.functional.contrastive import nt_xent_loss
from sslkit.methods.base import SSLMethod
from sslkit.nn.heads import ProjectionMLP
from sslkit.nn.vit import ViT


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
