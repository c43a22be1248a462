"""Exponential-moving-average teacher (DINO / DINOv2 momentum encoder).

After each student step: θ_t ← m·θ_t + (1 − m)·θ_s (spec ``specs/dinov2.md`` step 6), with m
scheduled 0.992 → 1. Reference: facebookresearch/dinov2 ``dinov2/train/ssl_meta_arch.py``
(``update_teacher`` also uses fused ``torch._foreach_*`` ops).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["ema_update_", "make_teacher"]


def make_teacher(student: nn.Module) -> nn.Module:
    """Deep copy of ``student`` with ``requires_grad=False`` everywhere, in eval mode.

    Eval mode matters: the teacher must not drop paths or update normalisation statistics.
    """
    teacher = copy.deepcopy(student)
    teacher.requires_grad_(False)
    return teacher.eval()


def _matched_params(teacher: nn.Module, student: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    t_named = list(teacher.named_parameters())
    s_named = list(student.named_parameters())
    t_shapes = {n: p.shape for n, p in t_named}
    s_shapes = {n: p.shape for n, p in s_named}
    if t_shapes != s_shapes:
        only_t = sorted(set(t_shapes) - set(s_shapes))[:5]
        only_s = sorted(set(s_shapes) - set(t_shapes))[:5]
        shape = [
            f"{n}: teacher {tuple(t_shapes[n])} vs student {tuple(s_shapes[n])}"
            for n in sorted(set(t_shapes) & set(s_shapes))
            if t_shapes[n] != s_shapes[n]
        ][:5]
        raise ValueError(
            "EMA teacher and student parameters differ "
            f"(only in teacher: {only_t}; only in student: {only_s}; shape mismatches: {shape}); "
            "build the teacher with make_teacher(student)."
        )
    s_by_name = dict(s_named)
    # pair by name, not position, so a differing registration order cannot mix tensors up
    return [p for _, p in t_named], [s_by_name[n] for n, _ in t_named]


@torch.no_grad()
def ema_update_(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """In place: every teacher parameter θ_t ← m·θ_t + (1 − m)·θ_s.

    Implemented as ``lerp_(θ_t, θ_s, 1 − m)``, a single fused ``_foreach`` kernel. PyTorch's
    lerp computes ``start + w·(end − start)`` for w < 0.5 and ``end − (1 − w)·(end − start)``
    otherwise, so m = 1 leaves the teacher bit-identical and m = 0 copies the student exactly
    (a plain ``m·θ_t + (1−m)·θ_s`` does not guarantee either in floating point).
    Buffers are not touched (the DINOv2 reference averages parameters only).
    """
    m = float(momentum)
    if not 0.0 <= m <= 1.0:
        raise ValueError(f"EMA momentum must be in [0, 1], got {momentum!r}.")
    t_params, s_params = _matched_params(teacher, student)
    if not t_params or m == 1.0:
        return
    torch._foreach_lerp_(t_params, s_params, 1.0 - m)
