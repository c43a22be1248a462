"""What the engine needs from a pretraining method, in one place.

A method is an ``nn.Module`` whose ``forward(batch, **schedule_values)`` returns a dict of named
tensors with at least ``loss`` and ``embedding`` (the stable-pretraining idea: callbacks and
loggers read keys, never method internals). The engine optimises ``student`` (a ModuleDict that
holds ``backbone`` and the method's heads), passes the schedule values named in
``schedule_inputs`` (e.g. DINOv2's ``teacher_temp``), calls ``update_teacher`` after each step and
evaluates/exports ``eval_backbone``.
"""

from __future__ import annotations

from torch import nn

from sslkit.nn.vit import ViT


class SSLMethod(nn.Module):
    """Base class: no teacher, no schedule inputs, the student backbone is the one to evaluate."""

    student: nn.ModuleDict
    schedule_inputs: tuple[str, ...] = ()
    # True when masked crops go through the backbone (iBOT): only then does the ViT's mask token get a
    # gradient. Otherwise the engine freezes it, or DDP stops on "parameters that were not used".
    feeds_masked_crops: bool = False

    def update_teacher(self, momentum: float) -> None:
        """Methods with an EMA teacher override this; the others have nothing to update."""

    @property
    def eval_backbone(self) -> ViT:
        """The backbone that kNN monitoring and export use."""
        return self.student["backbone"]

    @property
    def has_teacher(self) -> bool:
        return False

    def heldout_metrics(self, images, seed: int = 0) -> dict[str, float]:
        """Scores of the method's own objective on held-out images (``images``: sslkit items with a
        normalised ``image``), reported at the end of a run; none by default."""
        return {}


def batchnorm_train(module: nn.Module, mode: bool) -> None:
    """Put every BatchNorm inside ``module`` in ``mode`` (an EMA teacher's heads normalise with batch statistics
    while training, like the student's). Call it in ``forward``: Lightning restores each submodule's own
    ``training`` flag as it was captured before fitting, which undoes a ``train()`` override."""
    for sub in module.modules():
        if isinstance(sub, nn.modules.batchnorm._BatchNorm):
            sub.train(mode)


# ------------------------------------------------------------------------------------------------
# Setup pieces that several methods share (their MethodSpec entries point here).


def patch_unit(cfg) -> int:
    """The patch size the collate cuts mask grids with: a pooled backbone (timm, CNN) has no patch grid,
    so its 'grid' is one pixel and its masks are empty."""
    from sslkit.nn.timm_backbone import is_pooled_arch

    return 1 if is_pooled_arch(cfg.model.arch) else cfg.model.patch_size


def two_view_collate(cfg):
    """Two views per image, no masks (SimCLR, VICReg, BYOL)."""
    from sslkit.data.collate import MultiCropCollate

    return MultiCropCollate(patch_unit(cfg), mask_probability=0.0, seed=cfg.trainer.seed)


def check_two_views(cfg, need) -> None:
    """A two-view method needs exactly two global crops and no local crop."""
    c = cfg.crops
    need(c.n_global == 2 and c.n_local == 0,
         f"method '{cfg.method}' compares two views: set crops.n_global=2 and crops.n_local=0 "
         f"(got {c.n_global} and {c.n_local}).")


def pooled_backbone_problem(cfg, why: str) -> str | None:
    """One sentence when ``model.arch`` is a pooled backbone (timm, CNN) but the method needs a ViT's patch
    tokens (``why`` says for what), else None."""
    from sslkit.methods.registry import registered_methods
    from sslkit.nn.timm_backbone import is_pooled_arch

    if not is_pooled_arch(cfg.model.arch):
        return None
    pooled_ok = [name for name, spec in registered_methods().items() if spec.runs_on_pooled_backbones]
    return (f"model.arch={cfg.model.arch} has no patch tokens, but method '{cfg.method}' needs them ({why}): "
            f"use an sslkit ViT (model.arch=vit_tiny|vit_small|vit_base|vit_large), or method "
            f"{'/'.join(pooled_ok)} with this backbone.")
