"""iBOT masked-patch loss of DINOv2.

Reference: arXiv 2304.07193 (Sec. 4, "Patch-level objective") and facebookresearch/dinov2
``dinov2/loss/ibot_patch_loss.py`` (``forward_masked``) and ``dinov2/data/collate.py``
(per-crop mask weights).
"""

from __future__ import annotations

import torch

from sslkit.functional.prototype_logits import PrototypeLogits, prototype_scaled_logsumexp, teacher_dot_logits
from sslkit.functional.soft_cross_entropy import soft_cross_entropy

__all__ = ["ibot_patch_loss", "mask_token_weights"]


def mask_token_weights(masks: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Weight ``w_b = 1 / max(1, |M_b|)`` of the crop each masked token belongs to.

    Args:
        masks: ``(n_crops, N)`` bool, True where a patch is masked.
        dtype: floating dtype of the weights.

    Returns:
        ``(M,)`` weights, one per True entry of ``masks`` in row-major order
        (the order of ``masks.nonzero()`` and of ``tokens[masks]``).
    """
    if masks.ndim != 2 or masks.dtype != torch.bool:
        raise ValueError(
            f"mask_token_weights expects a 2-D bool mask (n_crops, N), got "
            f"{masks.dtype} of shape {tuple(masks.shape)}."
        )
    per_crop = 1.0 / masks.sum(dim=1).clamp(min=1).to(dtype)
    return per_crop.unsqueeze(1).expand_as(masks)[masks]


def ibot_patch_loss(
    student_patch_logits: torch.Tensor | PrototypeLogits,
    teacher_patch_probs: torch.Tensor,
    token_weights: torch.Tensor,
    n_global_crops_total: int,
    student_temp: float = 0.1,
) -> torch.Tensor:
    """``L_iBOT = -(1/2B) sum_m w_m sum_k p_t[m,k] log softmax(s[m] / tau_s)_k``.

    Each masked crop contributes the mean cross-entropy over its masked tokens; the sum
    is divided by *all* global crops ``2B``, unmasked ones included (arXiv 2304.07193;
    ``ibot_patch_loss.py`` divides by the number of mask rows).

    Args:
        student_patch_logits: ``(M, K)`` student logits at the masked positions of all crops.
        teacher_patch_probs: ``(M, K)`` teacher probabilities at the same positions.
        token_weights: ``(M,)`` from :func:`mask_token_weights`.
        n_global_crops_total: ``2B``, the number of global crops in the batch.
        student_temp: ``tau_s``.

    Returns:
        Scalar loss.
    """
    if student_patch_logits.shape != teacher_patch_probs.shape or len(student_patch_logits.shape) != 2:
        raise ValueError(
            "ibot_patch_loss expects student logits and teacher probabilities of the same "
            f"(M, K) shape, got {tuple(student_patch_logits.shape)} and "
            f"{tuple(teacher_patch_probs.shape)}."
        )
    if token_weights.shape != (student_patch_logits.shape[0],):
        raise ValueError(
            f"token_weights must have shape ({student_patch_logits.shape[0]},), one per masked "
            f"token, got {tuple(token_weights.shape)}."
        )
    if n_global_crops_total < 1:
        raise ValueError(
            f"n_global_crops_total must be the number of global crops (>= 1), got {n_global_crops_total}."
        )
    # H(p_t, softmax(s/τ)) per token without (M, K) log-probabilities (functional/soft_cross_entropy.py).
    if isinstance(student_patch_logits, PrototypeLogits):
        # The student logits z = f Wᵀ kept factored (functional/prototype_logits.py): m·lse(z/τ) − ((p W)·f)/τ.
        lse = prototype_scaled_logsumexp(student_patch_logits, student_temp)
        p_w = teacher_dot_logits(teacher_patch_probs, student_patch_logits)
        with torch.autocast(student_patch_logits.device.type, enabled=False):
            mass = teacher_patch_probs.detach().to(lse.dtype).sum(-1)
            dot = (p_w * student_patch_logits.features.to(lse.dtype)).sum(-1)
        per_token = mass * lse - dot / student_temp
    else:
        per_token = soft_cross_entropy(student_patch_logits, teacher_patch_probs, student_temp)
    return (per_token * token_weights.to(per_token.dtype)).sum() / n_global_crops_total
