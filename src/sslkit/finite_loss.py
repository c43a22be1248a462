"""The check the training loops outside the engine share (grok, denoise, SAE, synthetic mixing, vision and text
LoRA): a loss that is no longer a finite number stops the run with one sentence saying which loss, where, and
what to lower. The engine has its own, which also names the loss terms (``sslkit.engine.module``)."""

from __future__ import annotations

import math

import torch


def require_finite(loss: torch.Tensor | float, what: str, where: str, hint: str,
                   error: type[Exception] = FloatingPointError) -> float:
    """``loss`` as a float, or ``error("The {what} loss became {value} at {where}; {hint}.")``."""
    value = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
    if not math.isfinite(value):
        raise error(f"The {what} loss became {value} at {where}; {hint}.")
    return value
