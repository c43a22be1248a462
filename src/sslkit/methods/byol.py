"""BYOL: an online network predicts an EMA target network's projection of another view of the image.

Grill et al., "Bootstrap Your Own Latent", arXiv 2006.07733. Reference semantics from the official code
(google-deepmind/deepmind-research ``byol/byol_experiment.py``, ``utils/networks.py``):

- online: backbone → projector MLP → predictor MLP, each view through the network on its own
  (``apply_once_fn`` per view, so every BatchNorm sees one view's batch); target: an EMA of backbone →
  projector (no predictor). Each MLP is Linear(hidden) – BatchNorm – ReLU – Linear(out, with bias); the paper's sizes are
  4096 hidden and 256 out.
- loss: ``2 − 2·cos`` between the online prediction of one view and the target projection of the other,
  summed over both orders (``functional.byol.symmetric_byol_loss``).
- target update θ' ← τθ' + (1 − τ)θ after every step, τ from 0.996 to 1 on a cosine (``optim.momentum_teacher``
  / ``momentum_teacher_end``, the engine's EMA schedule); the target's BatchNorms use batch statistics, as the
  reference (it runs the target network in training mode).
- evaluated and exported: the *online* backbone (the paper keeps f_θ).

Differences, said plainly: the target starts as a copy of the online network (the reference initialises it from
its own random draw and reports no difference, ``_make_initial_state``); the reference trains with LARS at lr 0.2 × batch/256 and weight decay 1.5e-6;
sslkit's recipe uses the engine's AdamW with its own lr (``recipes/byol-tiny.yaml``). Its augmentations are
the DINO/BYOL ones sslkit already has (blur p 1.0 / 0.1 and solarize p 0.2 on the second view).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sslkit.functional.byol import symmetric_byol_loss
from sslkit.methods.base import SSLMethod, batchnorm_train, check_two_views, two_view_collate
from sslkit.methods.registry import MethodSpec, register
from sslkit.nn.bounds import MAX_HEAD_WIDTH
from sslkit.nn.ema import ema_update_, make_teacher


@dataclass
class BYOLConfig:
    """Recipe section ``byol:``: the projector and predictor MLPs (the paper: 4096 hidden, 256 out)."""

    projector_hidden_dim: int = 4096
    projector_out_dim: int = 256
    predictor_hidden_dim: int = 4096


class BYOLMLP(nn.Module):
    """Linear – BatchNorm1d – ReLU – Linear (with bias): BYOL's projector and predictor (``networks.MLP``).

    Written here rather than reusing ``nn.heads.ProjectionMLP`` because that one drops the output bias (as
    SimCLR and VICReg do) and BYOL's reference keeps it.
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True),
                                 nn.Linear(hidden_dim, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class BYOL(SSLMethod):
    """``forward(batch)`` reads the two views in ``global_crops`` (2B, C, H, W), crop-major. Returns ``loss``,
    ``byol_loss`` and ``embedding`` (online backbone features of the first view, detached)."""

    def __init__(self, backbone: nn.Module, projector: BYOLMLP, predictor: BYOLMLP):
        super().__init__()
        self.student = nn.ModuleDict({"backbone": backbone, "projector": projector, "predictor": predictor})
        self.teacher = make_teacher(self._target_twin())

    def _target_twin(self) -> nn.ModuleDict:
        """The online modules the target network mirrors (the predictor has no twin)."""
        return nn.ModuleDict({"backbone": self.student["backbone"], "projector": self.student["projector"]})

    @property
    def has_teacher(self) -> bool:
        return True

    def train(self, mode: bool = True) -> "BYOL":
        super().train(mode)
        self.teacher.eval()  # no drop-path in the target ...
        for module in self.teacher.modules():  # ... but its BatchNorms normalise with batch statistics
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.train(mode)
        return self

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        ema_update_(self.teacher, self._target_twin(), momentum)

    def _target_batchnorm_like_online(self) -> None:
        """The target's BatchNorms take the online network's mode (batch statistics while training). Set at
        every forward, not only in ``train()``: Lightning restores each submodule's own ``training`` flag as
        captured when the teacher was made (eval), which left the target normalising with its initial running
        statistics and BYOL collapsing (kNN 48 against 63 % at 600 steps of the learning budget)."""
        batchnorm_train(self.teacher, self.training)

    def forward(self, batch: dict) -> dict:
        self._target_batchnorm_like_online()
        views = batch["global_crops"]
        h = self.student["backbone"](views)
        # Each view through the MLPs on its own, as the reference (it runs the network once per view): their
        # BatchNorms then normalise each view by its own batch statistics. One call on both views mixes them,
        # and BYOL learns far less (kNN +2 instead of lightly's +15 at 600 steps of the learning budget).
        q1, q2 = (self.student["predictor"](self.student["projector"](hv)) for hv in h.chunk(2))
        with torch.no_grad():
            t = self.teacher["backbone"](views)
            z1_target, z2_target = (self.teacher["projector"](tv) for tv in t.chunk(2))
        loss = symmetric_byol_loss(q1, q2, z1_target, z2_target)
        return {"loss": loss, "byol_loss": loss.detach(), "embedding": h[: h.shape[0] // 2].detach()}


def build(cfg, backbone: nn.Module, in_chans: int) -> BYOL:
    b = cfg.byol
    projector = BYOLMLP(backbone.embed_dim, b.projector_hidden_dim, b.projector_out_dim)
    predictor = BYOLMLP(b.projector_out_dim, b.predictor_hidden_dim, b.projector_out_dim)
    return BYOL(backbone, projector, predictor)


SPEC = register(MethodSpec(
    name="byol", config=BYOLConfig, build=build, collate=two_view_collate, check=check_two_views,
    ranges={"projector_hidden_dim": f"[1, {MAX_HEAD_WIDTH}]", "projector_out_dim": f"[1, {MAX_HEAD_WIDTH}]",
            "predictor_hidden_dim": f"[1, {MAX_HEAD_WIDTH}]"},
    wrap_units=(BYOLMLP,),
    evaluated="online encoder",
))
