"""Sinkhorn-Knopp teacher targets (SwAV-style balanced assignment) used by DINOv2.

Reference: arXiv 2304.07193 (Sec. 4, "Sinkhorn-Knopp centering") and
facebookresearch/dinov2 ``dinov2/loss/dino_clstoken_loss.py`` /
``dinov2/loss/ibot_patch_loss.py`` (``sinkhorn_knopp_teacher``).
"""

from __future__ import annotations

import torch

__all__ = ["sinkhorn_knopp"]


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _all_reduce(t: torch.Tensor, op=None) -> torch.Tensor:
    if _distributed():
        if op is None:
            torch.distributed.all_reduce(t)
        else:
            torch.distributed.all_reduce(t, op=op)
    return t


def sinkhorn_knopp(
    teacher_logits: torch.Tensor, teacher_temp: float, n_iterations: int = 3
) -> torch.Tensor:
    """Balanced teacher probabilities by ``n_iterations`` Sinkhorn-Knopp steps, in float32.

    With ``n`` the row count summed over all workers and ``K`` prototypes:

    1. ``Q = exp(z / tau_t)^T`` (K, n), then ``Q <- Q / sum(Q)``;
    2. repeat: rows ``Q_k. <- Q_k. / (K sum_b Q_kb)`` (row sums all-reduced),
       columns ``Q_.b <- Q_.b / (n sum_k Q_kb)`` (columns are local to a worker);
    3. return ``(n Q)^T``: every sample's probabilities sum to 1 and every prototype
       receives a mass close to ``n / K``.

    The exponent is shifted by the global maximum logit before ``exp``. That multiplies
    ``Q`` by one constant, which step 1 divides out again, so the result is
    mathematically identical to the reference while ``exp`` cannot overflow (it still
    underflows to 0 for logits more than ~87 tau_t below the maximum, as float32 does; a sample
    whose every logit underflows gets an all-zero target instead of the reference's NaN).

    Under ``torch.distributed`` every worker must call this, even with zero local rows
    (e.g. no masked patches), because the sums are collective; with zero rows on all
    workers an empty tensor is returned.

    Args:
        teacher_logits: ``(n_local, K)`` teacher logits on this worker (CLS tokens, or
            all masked patch tokens for iBOT).
        teacher_temp: ``tau_t``.
        n_iterations: Sinkhorn iterations (3 in DINOv2).

    Returns:
        ``(n_local, K)`` float32 probabilities, no gradient.
    """
    if teacher_logits.ndim != 2:
        raise ValueError(
            f"sinkhorn_knopp expects (n, K) logits, got shape {tuple(teacher_logits.shape)}."
        )
    with torch.no_grad():
        z = teacher_logits.detach().float()
        n_prototypes = z.shape[1]
        n_rows = _all_reduce(torch.tensor([float(z.shape[0])], device=z.device))
        if n_rows.item() == 0:
            # Same decision on every worker (n is global), so no collective is left waiting.
            return z

        # An empty shard has no max of its own; -inf is neutral for the MAX reduction.
        local_max = z.max() if z.numel() > 0 else torch.tensor(float("-inf"), device=z.device)
        global_max = _all_reduce(
            local_max.reshape(1).clone(), op=torch.distributed.ReduceOp.MAX if _distributed() else None
        )
        q = torch.exp((z - global_max) / teacher_temp).t()  # (K, n_local)

        # A prototype (or sample) whose every exponent underflowed has a zero sum; dividing by it
        # would turn the whole target into NaN (as in the reference). The clamp keeps it at zero
        # mass instead and changes nothing else (a non-zero sum is never below `tiny`).
        tiny = torch.finfo(q.dtype).tiny
        q /= _all_reduce(q.sum().reshape(1))
        for _ in range(n_iterations):
            # Every prototype gets total mass 1/K across all workers' samples.
            q /= _all_reduce(q.sum(dim=1, keepdim=True)).clamp_min(tiny)
            q /= n_prototypes
            # Every sample gets total mass 1/n (a column lives on one worker only).
            q /= q.sum(dim=0, keepdim=True).clamp_min(tiny)
            q /= n_rows
        q *= n_rows
        return q.t()
