"""DINO CLS-token loss pieces: cross-entropies, teacher centering, centre update.

Reference: Oquab et al., "DINOv2: Learning Robust Visual Features without
Supervision", arXiv 2304.07193, and facebookresearch/dinov2
``dinov2/loss/dino_clstoken_loss.py`` / ``dinov2/train/ssl_meta_arch.py``.

All inputs are crop-major: rows ``[crop 0 of all B images; crop 1 of all B; ...]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sslkit.functional.prototype_logits import PrototypeLogits, prototype_scaled_logsumexp, teacher_dot_logits
from sslkit.functional.soft_cross_entropy import scaled_logsumexp

__all__ = [
    "dino_cross_entropy_matrix",
    "dino_loss",
    "softmax_center_teacher",
    "update_center",
]


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    # Half-precision log-softmax over 65k prototypes loses too much; keep float64 if given.
    return torch.promote_types(dtype, torch.float32)


def _crop_batch_size(rows: int, n_crops: int, what: str) -> int:
    if n_crops < 1:
        raise ValueError(f"{what}: the number of crops must be at least 1, got {n_crops}.")
    if rows % n_crops != 0:
        raise ValueError(
            f"{what}: {rows} rows cannot be split into {n_crops} crop-major chunks of equal size; "
            "pass logits ordered [crop 0 of all B; crop 1 of all B; ...]."
        )
    return rows // n_crops


def dino_cross_entropy_matrix(
    student_logits: torch.Tensor | PrototypeLogits,
    teacher_probs: torch.Tensor,
    n_student_crops: int,
    n_teacher_crops: int,
    student_temp: float = 0.1,
) -> torch.Tensor:
    """Batch-mean cross-entropy between every teacher crop and every student crop.

    Args:
        student_logits: ``(n_s * B, K)`` raw student head outputs, crop-major; or the same logits kept
            factored (:class:`~sslkit.functional.prototype_logits.PrototypeLogits`), never formed.
        teacher_probs: ``(n_t * B, K)`` teacher probabilities (rows sum to 1), crop-major.
        n_student_crops: ``n_s``.
        n_teacher_crops: ``n_t``.
        student_temp: ``tau_s``.

    Returns:
        ``(n_t, n_s)`` tensor whose entry ``[t, s]`` is
        ``mean_b H(p_t[b], s[b]) = mean_b -sum_k p_t[b,k] log softmax(s[b] / tau_s)_k``
        (arXiv 2304.07193, Sec. 3, DINO image-level objective).
    """
    if len(student_logits.shape) != 2 or teacher_probs.ndim != 2:
        raise ValueError(
            "dino_cross_entropy_matrix expects 2-D (rows, K) tensors, got "
            f"{tuple(student_logits.shape)} and {tuple(teacher_probs.shape)}."
        )
    k = student_logits.shape[1]
    if teacher_probs.shape[1] != k:
        raise ValueError(
            f"Student has {k} prototypes but teacher has {teacher_probs.shape[1]}; they must match."
        )
    b_s = _crop_batch_size(student_logits.shape[0], n_student_crops, "student_logits")
    b_t = _crop_batch_size(teacher_probs.shape[0], n_teacher_crops, "teacher_probs")
    if b_s != b_t:
        raise ValueError(
            f"Student crops hold {b_s} images each but teacher crops hold {b_t}; "
            "both must come from the same batch."
        )
    dtype = _compute_dtype(student_logits.dtype)
    # H(p, softmax(z/τ)) = m·lse(z/τ) − (p·z)/τ with m = Σ_k p_k: no (rows, K) log-probabilities are
    # written or kept for backward (functional/soft_cross_entropy.py), which matters at K = 65 536.
    p_t = teacher_probs.to(dtype).view(n_teacher_crops, b_t, k)
    if isinstance(student_logits, PrototypeLogits):
        # z = f Wᵀ never formed: p·z = (p W)·f, and lse recomputes its chunks in backward.
        lse = prototype_scaled_logsumexp(student_logits, student_temp).view(n_student_crops, b_s)
        p_w = teacher_dot_logits(teacher_probs, student_logits).view(n_teacher_crops, b_t, -1)
        f_s = student_logits.features.to(dtype).view(n_student_crops, b_s, -1)
        with torch.autocast(student_logits.device.type, enabled=False):
            dot = torch.einsum("tbd,sbd->ts", p_w, f_s)
            mass_lse = torch.einsum("tb,sb->ts", p_t.sum(-1), lse)
        return (mass_lse - dot / student_temp) / b_s
    lse = scaled_logsumexp(student_logits, student_temp).view(n_student_crops, b_s)
    z_s = student_logits.to(dtype).view(n_student_crops, b_s, k)
    # One contraction over (image, prototype) for all crop pairs at once; in full precision even under
    # bf16/fp16 autocast, which would otherwise run these bmm-backed einsums in half precision.
    with torch.autocast(student_logits.device.type, enabled=False):
        dot = torch.einsum("tbk,sbk->ts", p_t, z_s)
        mass_lse = torch.einsum("tb,sb->ts", p_t.sum(-1), lse)
    return (mass_lse - dot / student_temp) / b_s


def dino_loss(
    student_global_logits: torch.Tensor | PrototypeLogits,
    student_local_logits: torch.Tensor | PrototypeLogits | None,
    teacher_probs: torch.Tensor,
    n_global: int,
    student_temp: float = 0.1,
) -> torch.Tensor:
    """L_DINO of DINOv2 (arXiv 2304.07193; ``ssl_meta_arch.py`` loss-term counting).

    Student global crop ``g`` is matched with every *other* teacher global crop
    (same-crop pairs excluded: for two crops this is the teacher swap), every student
    local crop with every teacher global crop; the sum of these batch-mean
    cross-entropies is divided by the number of terms ``n_g (n_g - 1) + n_g n_l``
    (18 for 2 global + 8 local crops).

    Args:
        student_global_logits: ``(n_g * B, K)`` student logits of the global crops.
        student_local_logits: ``(n_l * B, K)`` student logits of the local crops, or ``None``.
        teacher_probs: ``(n_g * B, K)`` teacher probabilities of the global crops, in the
            same crop order as ``student_global_logits`` (no swap applied by the caller).
        n_global: ``n_g``.
        student_temp: ``tau_s``.

    Returns:
        Scalar loss.
    """
    batch = _crop_batch_size(student_global_logits.shape[0], n_global, "student_global_logits")
    n_local = 0
    if student_local_logits is not None:
        n_local = student_local_logits.shape[0] // batch
        if student_local_logits.shape[0] % batch != 0:
            raise ValueError(
                f"student_local_logits has {student_local_logits.shape[0]} rows, "
                f"not a multiple of the batch size {batch} of the global crops."
            )
    n_terms = n_global * (n_global - 1) + n_global * n_local
    if n_terms == 0:
        raise ValueError(
            "L_DINO has no terms: with a single global crop and no local crops there is no "
            "student/teacher pair of different crops; use at least 2 global crops or add local crops."
        )

    ce_global = dino_cross_entropy_matrix(
        student_global_logits, teacher_probs, n_global, n_global, student_temp
    )
    off_diagonal = ~torch.eye(n_global, dtype=torch.bool, device=ce_global.device)
    total = ce_global[off_diagonal].sum()
    if n_local > 0:
        ce_local = dino_cross_entropy_matrix(
            student_local_logits, teacher_probs, n_local, n_global, student_temp
        )
        total = total + ce_local.sum()
    return total / n_terms


def softmax_center_teacher(
    teacher_logits: torch.Tensor, center: torch.Tensor, teacher_temp: float, inplace: bool = False
) -> torch.Tensor:
    """Centred, sharpened teacher targets ``softmax((z_t - c) / tau_t)``.

    Args:
        teacher_logits: ``(n, K)``.
        center: ``(1, K)`` running centre ``c``.
        teacher_temp: ``tau_t``.
        inplace: overwrite ``teacher_logits`` with the shifted, scaled logits instead of
            allocating two (n, K) temporaries; for callers done with the raw logits (with
            K = 65 536 each temporary is ~144 MB at ViT-S batch 8, see benchmarks/RESULTS.md).

    Returns:
        ``(n, K)`` probabilities, no gradient.
    """
    with torch.no_grad():
        if inplace:
            return F.softmax(teacher_logits.sub_(center).div_(teacher_temp), dim=-1)
        return F.softmax((teacher_logits - center) / teacher_temp, dim=-1)


def update_center(
    center: torch.Tensor, teacher_logits: torch.Tensor, momentum: float = 0.9
) -> torch.Tensor:
    """EMA centre update ``c <- m c + (1 - m) mean(z_t)``; returns a new tensor.

    The mean is over the rows of every worker: when ``torch.distributed`` is
    initialised the row sum and the row count are all-reduced, so workers with
    unequal row counts (e.g. masked patches for the iBOT centre) are weighted by rows.
    The reference divides by ``rows * world_size`` instead, which is the same when all
    workers hold equally many rows (``dino_clstoken_loss.py``).

    Args:
        center: ``(1, K)``.
        teacher_logits: ``(n, K)`` raw teacher logits used for this step's targets.
        momentum: ``m``.

    Returns:
        ``(1, K)`` new centre.
    """
    with torch.no_grad():
        logits = teacher_logits.detach()
        row_sum = logits.sum(dim=0, keepdim=True).to(_compute_dtype(logits.dtype))
        row_count = torch.tensor(
            [float(logits.shape[0])], dtype=row_sum.dtype, device=row_sum.device
        )
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(row_sum)
            torch.distributed.all_reduce(row_count)
        if row_count.item() == 0:
            # Nothing to average anywhere (e.g. no masked patches in this step): keep c.
            # Returning instead of raising lets every worker call this unconditionally,
            # which the collective all-reduce requires.
            return center.clone()
        batch_center = row_sum / row_count
        return center * momentum + batch_center.to(center.dtype) * (1.0 - momentum)
