"""The fine-tuning learning-rate schedule: linear warm-up, then a half cosine to 0 (SGDR without restarts,
Loshchilov & Hutter, arXiv 1608.03983; the BEiT / DINOv2 fine-tuning schedule)."""

from __future__ import annotations

import math

__all__ = ["warmup_cosine"]


def warmup_cosine(step: int, total_steps: int, warmup_steps: int) -> float:
    """Multiplier of the peak learning rate at optimiser step ``step`` (0-based).

    ``(step + 1) / warmup_steps`` during the warm-up, then ``(1 + cos(π·t)) / 2`` with
    ``t = (step − warmup_steps) / (total_steps − warmup_steps)`` going from 0 to (almost) 1.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
