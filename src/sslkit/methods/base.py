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

    def update_teacher(self, momentum: float) -> None:
        """Methods with an EMA teacher override this; the others have nothing to update."""

    @property
    def eval_backbone(self) -> ViT:
        """The backbone that kNN monitoring and export use."""
        return self.student["backbone"]

    @property
    def has_teacher(self) -> bool:
        return False
