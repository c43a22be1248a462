"""BYOL's regression loss: the online network predicts the target network's projection of the other view.

Grill et al., "Bootstrap Your Own Latent", arXiv 2006.07733, Eq. 2: with both vectors L2-normalised,
``‖q̄ − z̄'‖² = 2 − 2·⟨q, z'⟩ / (‖q‖·‖z'‖)``. The reference (google-deepmind/deepmind-research ``byol``,
``byol_experiment.py`` ``regression_loss``) averages it over the batch and adds the symmetric term, the
second view through the online network against the first through the target (Eq. 3, ``L + L~``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["byol_regression_loss", "symmetric_byol_loss"]


def byol_regression_loss(prediction: torch.Tensor, target: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Mean over rows of ``2 − 2·cos(prediction_i, target_i)``; in [0, 4], 0 when every pair points the same way.

    ``target`` is treated as a constant (the caller passes the target network's output, which gets no
    gradient). Both are (B, D).
    """
    if prediction.shape != target.shape or prediction.ndim != 2:
        raise ValueError(f"BYOL's loss needs two (B, D) tensors of one shape, got {tuple(prediction.shape)} and "
                         f"{tuple(target.shape)}.")
    q = F.normalize(prediction.float(), dim=-1, eps=eps)
    z = F.normalize(target.detach().float(), dim=-1, eps=eps)
    return (2.0 - 2.0 * (q * z).sum(dim=-1)).mean()


def symmetric_byol_loss(q1: torch.Tensor, q2: torch.Tensor, z1_target: torch.Tensor,
                        z2_target: torch.Tensor) -> torch.Tensor:
    """``L(q1, z2') + L(q2, z1')``: each view's online prediction regresses the other view's target projection."""
    return byol_regression_loss(q1, z2_target) + byol_regression_loss(q2, z1_target)
