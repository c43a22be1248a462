"""VICReg: invariance between two views, variance and decorrelation of each view's embeddings.

Bardes, Ponce, LeCun, arXiv 2105.04906. backbone CLS -> ``ProjectionMLP`` (3 layers) ->
``functional.vicreg.vicreg_loss`` with the batch statistics taken over every worker.
"""

from __future__ import annotations

from torch import nn

from sslkit.functional.vicreg import vicreg_loss
from sslkit.methods.base import SSLMethod
from sslkit.nn.heads import ProjectionMLP
from sslkit.nn.vit import ViT


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
