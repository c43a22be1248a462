"""KoLeo (Kozachenko-Leonenko) spreading regulariser of DINOv2.

Reference: Sablayrolles et al., "Spreading vectors for similarity search" (arXiv
1806.03198), as used in arXiv 2304.07193 (Sec. 4, "KoLeo regularizer") and
facebookresearch/dinov2 ``dinov2/loss/koleo_loss.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["koleo_loss"]


def koleo_loss(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``-mean_i log(d_i + eps)`` with ``d_i`` the distance to the nearest other row.

    Rows are L2-normalised, ``j* = argmax_{j != i} <x_i, x_j>`` and
    ``d_i = ||x_i - x_j* + eps||`` (``torch.nn.functional.pairwise_distance`` semantics,
    as the reference). Self-matches are excluded with ``-inf`` on the diagonal of the
    similarity matrix; the reference writes ``-1`` there, which ties with an exactly
    antipodal neighbour and then matches a point to itself.

    Args:
        x: ``(B, D)`` features, e.g. one global crop's final-norm CLS tokens. Computed in
            float32 (float64 inputs stay float64).
        eps: normalisation / distance epsilon.

    Returns:
        Scalar loss.
    """
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(
            f"koleo_loss needs a (B, D) batch with B >= 2 rows to find neighbours, got shape "
            f"{tuple(x.shape)}."
        )
    x = x.to(torch.promote_types(x.dtype, torch.float32))
    x_hat = F.normalize(x, p=2, dim=-1, eps=eps)
    with torch.no_grad():
        # Only the neighbour index is needed; the gradient flows through the distance.
        sims = x_hat @ x_hat.t()
        sims.fill_diagonal_(float("-inf"))
        nearest = sims.argmax(dim=1)
    distances = F.pairwise_distance(x_hat, x_hat[nearest], p=2, eps=eps)
    return -torch.log(distances + eps).mean()
