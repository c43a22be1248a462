"""Per-iteration hyper-parameter schedules of DINOv2 (lr, wd, EMA momentum, tau_t).

Reference: arXiv 2304.07193 (training details) and facebookresearch/dinov2
``dinov2/utils/utils.py`` (``CosineScheduler``) and ``dinov2/train/train.py``
(``build_schedulers``, sqrt learning-rate scaling w.r.t. a batch of 1024).

Every schedule is a pure function of the iteration index, so resuming at iteration
``it`` needs no state beyond ``it``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "cosine_schedule",
    "linear_warmup_constant",
    "lr_peak_from_batch",
    "DINOv2Schedules",
]


def _check_iteration(it: int) -> None:
    if it < 0:
        raise ValueError(f"The iteration index must be non-negative, got {it}.")


def _linear_ramp(it: int, start: float, end: float, n_iters: int) -> float:
    """Value at ``it`` of ``linspace(start, end, n_iters)`` (both ends included, as the reference)."""
    if n_iters == 1:
        return start
    return start + (end - start) * it / (n_iters - 1)


def cosine_schedule(
    it: int,
    *,
    start: float,
    end: float,
    total_iters: int,
    warmup_iters: int = 0,
    warmup_start: float = 0.0,
) -> float:
    """Linear warm-up, then cosine decay; constant ``end`` from ``total_iters`` on.

    For ``it < warmup_iters`` the value ramps linearly from ``warmup_start`` to ``start``
    (reaching ``start`` at ``it = warmup_iters - 1``, like ``np.linspace`` in the
    reference). Then, with ``i = it - warmup_iters`` and ``n = total_iters - warmup_iters``,
    ``v(i) = end + 0.5 (start - end) (1 + cos(pi i / n))``.

    Args:
        it: iteration index (0-based).
        start: value at the end of warm-up (peak for the lr).
        end: final value.
        total_iters: total iterations including warm-up.
        warmup_iters: warm-up iterations.
        warmup_start: value at iteration 0 when there is a warm-up.
    """
    _check_iteration(it)
    if warmup_iters < 0 or total_iters < warmup_iters:
        raise ValueError(
            f"Need 0 <= warmup_iters <= total_iters, got warmup_iters={warmup_iters} and "
            f"total_iters={total_iters}; shorten the warm-up or train longer."
        )
    if it >= total_iters:
        return float(end)
    if it < warmup_iters:
        return float(_linear_ramp(it, warmup_start, start, warmup_iters))
    i = it - warmup_iters
    n = total_iters - warmup_iters
    return float(end + 0.5 * (start - end) * (1.0 + math.cos(math.pi * i / n)))


def linear_warmup_constant(it: int, *, start: float, end: float, warmup_iters: int) -> float:
    """Linear from ``start`` to ``end`` over ``warmup_iters`` iterations, then ``end``.

    Used for the teacher temperature (0.04 -> 0.07 over 30 epochs). As in the reference
    (a ``CosineScheduler`` whose length equals its warm-up), ``end`` is reached at
    ``it = warmup_iters - 1``.
    """
    _check_iteration(it)
    if warmup_iters < 0:
        raise ValueError(f"warmup_iters must be non-negative, got {warmup_iters}.")
    if it >= warmup_iters:
        return float(end)
    return float(_linear_ramp(it, start, end, warmup_iters))


def lr_peak_from_batch(
    base_lr: float = 0.004, global_batch: int = 1024, reference_batch: int = 1024
) -> float:
    """Square-root scaling ``base_lr * sqrt(global_batch / reference_batch)``.

    ``global_batch`` counts images (not crops) over all workers.
    """
    if global_batch < 1 or reference_batch < 1:
        raise ValueError(
            f"Batch sizes must be positive, got global_batch={global_batch}, "
            f"reference_batch={reference_batch}."
        )
    return base_lr * math.sqrt(global_batch / reference_batch)


@dataclass(frozen=True)
class DINOv2Schedules:
    """All DINOv2 schedules, evaluated per iteration by :meth:`at`.

    Durations in epochs are converted with ``iters_per_epoch`` (1250 in DINOv2, an
    "epoch" of an infinite sampler) and rounded to whole iterations. ``lr_peak`` is the
    value after warm-up, e.g. from :func:`lr_peak_from_batch`.
    """

    total_iters: int
    iters_per_epoch: int = 1250
    lr_peak: float = 0.004
    lr_min: float = 1e-6
    lr_warmup_epochs: float = 10
    wd_start: float = 0.04
    wd_end: float = 0.4
    momentum_start: float = 0.992
    momentum_end: float = 1.0
    teacher_temp_start: float = 0.04
    teacher_temp_end: float = 0.07
    teacher_temp_warmup_epochs: float = 30
    freeze_last_layer_epochs: float = 1
    # Continued pretraining: the student backbone's lr is 0 for this long, so fresh heads settle on the loaded
    # features first (LightlyTrain's student_freeze_backbone_epochs); the EMA teacher then stays put too.
    freeze_backbone_epochs: float = 0

    def __post_init__(self) -> None:
        if self.total_iters < 1 or self.iters_per_epoch < 1:
            raise ValueError(
                f"total_iters and iters_per_epoch must be positive, got {self.total_iters} "
                f"and {self.iters_per_epoch}."
            )
        for name in ("lr_warmup_epochs", "teacher_temp_warmup_epochs", "freeze_last_layer_epochs",
                     "freeze_backbone_epochs"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be non-negative, got {getattr(self, name)}.")
        if self.lr_warmup_iters > self.total_iters:
            raise ValueError(
                f"lr_warmup_epochs={self.lr_warmup_epochs} is {self.lr_warmup_iters} iterations, "
                f"more than total_iters={self.total_iters}; shorten the warm-up or train longer."
            )

    def _epochs_to_iters(self, epochs: float) -> int:
        return int(round(epochs * self.iters_per_epoch))

    @property
    def lr_warmup_iters(self) -> int:
        return self._epochs_to_iters(self.lr_warmup_epochs)

    @property
    def teacher_temp_warmup_iters(self) -> int:
        return self._epochs_to_iters(self.teacher_temp_warmup_epochs)

    @property
    def freeze_last_layer_iters(self) -> int:
        return self._epochs_to_iters(self.freeze_last_layer_epochs)

    def at(self, it: int) -> dict[str, float]:
        """Values at iteration ``it``.

        Returns:
            ``{"lr", "wd", "momentum", "teacher_temp", "last_layer_lr_multiplier", "backbone_lr_multiplier"}``;
            the multipliers are 0 during the first ``freeze_last_layer_epochs`` / ``freeze_backbone_epochs``
            and 1 after.
        """
        _check_iteration(it)
        return {
            "lr": cosine_schedule(
                it,
                start=self.lr_peak,
                end=self.lr_min,
                total_iters=self.total_iters,
                warmup_iters=self.lr_warmup_iters,
                warmup_start=0.0,
            ),
            "wd": cosine_schedule(
                it, start=self.wd_start, end=self.wd_end, total_iters=self.total_iters
            ),
            "momentum": cosine_schedule(
                it, start=self.momentum_start, end=self.momentum_end, total_iters=self.total_iters
            ),
            "teacher_temp": linear_warmup_constant(
                it,
                start=self.teacher_temp_start,
                end=self.teacher_temp_end,
                warmup_iters=self.teacher_temp_warmup_iters,
            ),
            "last_layer_lr_multiplier": 0.0 if it < self.freeze_last_layer_iters else 1.0,
            "backbone_lr_multiplier": 0.0 if it < self._epochs_to_iters(self.freeze_backbone_epochs) else 1.0,
        }


@dataclass(frozen=True)
class CurriculumSchedules:
    """Schedules of a run split into stages; ``at(it)`` adds the stage index as ``"stage"``.

    ``stages`` is a list of ``(start_iter, schedules, restart)``, ordered by ``start_iter`` (the first
    at 0). A stage with ``restart`` evaluates its own ``schedules`` (built for that stage's length) at
    ``it - start_iter``, as a fresh run would (the fast-DINOv2 stage 2 and the denoised→noisy
    switch: lr warm-up again, EMA momentum and teacher temperature from their start values). A stage
    without it continues the whole-run schedules of stage 0 at ``it``.
    """

    stages: tuple
    total_iters: int

    def stage_at(self, it: int) -> int:
        index = 0
        for k, (start, _, _) in enumerate(self.stages):
            if it >= start:
                index = k
        return index

    def starts_fresh(self, it: int) -> bool:
        """True at the first iteration of a stage that restarts its schedules (reset the optimiser)."""
        k = self.stage_at(it)
        start, _, restart = self.stages[k]
        return bool(restart) and k > 0 and it == start

    @property
    def lr_peak(self) -> float:
        return self.stages[0][1].lr_peak

    @property
    def lr_warmup_iters(self) -> int:
        """The first stage's lr warm-up (the whole-run schedules)."""
        return self.stages[0][1].lr_warmup_iters

    def at(self, it: int) -> dict[str, float]:
        _check_iteration(it)
        k = self.stage_at(it)
        start, schedules, restart = self.stages[k]
        values = schedules.at(it - start) if restart else self.stages[0][1].at(it)
        values["stage"] = k
        return values
