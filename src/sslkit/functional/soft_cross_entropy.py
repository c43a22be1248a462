"""Cross-entropy against soft targets, without materialising the (rows, K) log-probabilities.

DINO and iBOT compare a teacher distribution ``p`` with a tempered student softmax over K
prototypes (K = 65 536 in DINOv2):

    H(p, softmax(z / τ)) = -Σ_k p_k log softmax(z / τ)_k = m · lse(z / τ) - (p · z) / τ,

with ``m = Σ_k p_k`` (1 for a probability vector) and ``lse`` the row log-sum-exp. The usual
``-(p * F.log_softmax(z / τ)).sum(-1)`` writes ``z / τ``, the log-probabilities and their product
with ``p`` as three (rows, K) tensors and keeps the log-probabilities for backward. Here the forward
pass keeps one float per row (the log-sum-exp) and works through the rows in chunks, so its
temporaries are bounded by ``chunk_rows × K``; the backward pass writes the gradient
``(m · softmax(z / τ) - p) / τ`` straight into one (rows, K) buffer.

The identity is the standard one (e.g. the soft-target branch of ``torch.nn.functional.cross_entropy``);
the memory argument is ours (benchmarks/RESULTS.md, the ViT-S/16 breakdown: the K-wide loss tensors
are what separates the full DINOv2 step from the bare backbone).
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

__all__ = ["soft_cross_entropy", "scaled_logsumexp"]

# Rows per chunk: 64 × 65 536 fp32 = 16 MiB of temporaries, large enough to run at memory speed.
DEFAULT_CHUNK_ROWS = 64


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    # Half-precision exponentials over 65k prototypes lose too much; float64 stays float64.
    return torch.promote_types(dtype, torch.float32)


def _row_chunks(rows: int, chunk_rows: int):
    for start in range(0, rows, chunk_rows):
        yield slice(start, min(start + chunk_rows, rows))


def _chunked_logsumexp(logits: torch.Tensor, temperature: float, chunk_rows: int) -> torch.Tensor:
    """(rows,) log-sum-exp of ``logits / temperature`` in the compute dtype."""
    dtype = _compute_dtype(logits.dtype)
    out = torch.empty(logits.shape[0], dtype=dtype, device=logits.device)
    for rows in _row_chunks(logits.shape[0], chunk_rows):
        out[rows] = torch.logsumexp(logits[rows].to(dtype) / temperature, dim=-1)
    return out


class _SoftCrossEntropy(torch.autograd.Function):
    """Per-row H(p, softmax(z/τ)); gradient only for the logits."""

    @staticmethod
    def forward(ctx, logits, targets, temperature, chunk_rows):  # type: ignore[override]
        dtype = _compute_dtype(logits.dtype)
        lse = _chunked_logsumexp(logits, temperature, chunk_rows)
        mass = torch.empty_like(lse)
        dot = torch.empty_like(lse)
        # Autocast off: the row dot products run as bmm, which bf16/fp16 autocast would downcast.
        with torch.autocast(logits.device.type, enabled=False):
            for rows in _row_chunks(logits.shape[0], chunk_rows):
                p = targets[rows].to(dtype)
                mass[rows] = p.sum(-1)
                # Row-wise dot product as a batched (1, K) @ (K, 1): no (rows, K) product tensor.
                dot[rows] = torch.einsum("rk,rk->r", p, logits[rows].to(dtype))
        ctx.save_for_backward(logits, targets, lse, mass)
        ctx.temperature = temperature
        ctx.chunk_rows = chunk_rows
        return mass * lse - dot / temperature

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_rows):  # type: ignore[override]
        logits, targets, lse, mass = ctx.saved_tensors
        tau = ctx.temperature
        grad = None
        if ctx.needs_input_grad[0]:
            dtype = lse.dtype
            grad = torch.empty_like(logits)
            scale = grad_rows.to(dtype) / tau  # (rows,)
            for rows in _row_chunks(logits.shape[0], ctx.chunk_rows):
                chunk = logits[rows].to(dtype).div_(tau) if logits.dtype != dtype else logits[rows] / tau
                chunk.sub_(lse[rows, None]).exp_().mul_(mass[rows, None]).sub_(targets[rows].to(dtype))
                grad[rows] = chunk.mul_(scale[rows, None])
        return grad, None, None, None


def soft_cross_entropy(
    logits: torch.Tensor,
    targets: torch.Tensor,
    temperature: float = 1.0,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> torch.Tensor:
    """Per-row ``H(p, softmax(z / τ)) = -Σ_k p_k log softmax(z / τ)_k``, memory-lean.

    Args:
        logits: ``(rows, K)`` student logits ``z``; any float dtype (computed in at least float32).
        targets: ``(rows, K)`` targets ``p`` (no gradient flows to them); rows need not sum to 1.
        temperature: ``τ > 0``.
        chunk_rows: rows processed at a time (bounds the temporaries to ``chunk_rows × K``).

    Returns:
        ``(rows,)`` cross-entropies in the compute dtype; differentiable with respect to ``logits``.
    """
    if logits.ndim != 2 or logits.shape != targets.shape:
        raise ValueError(
            "soft_cross_entropy expects logits and targets of the same (rows, K) shape, got "
            f"{tuple(logits.shape)} and {tuple(targets.shape)}."
        )
    if not temperature > 0:
        raise ValueError(f"soft_cross_entropy: temperature must be > 0, got {temperature!r}.")
    if not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ValueError(f"soft_cross_entropy: chunk_rows must be a positive integer, got {chunk_rows!r}.")
    return _SoftCrossEntropy.apply(logits, targets.detach(), float(temperature), chunk_rows)


class _ScaledLogSumExp(torch.autograd.Function):
    """Row log-sum-exp of z/τ whose backward writes softmax(z/τ)/τ into one buffer."""

    @staticmethod
    def forward(ctx, logits, temperature, chunk_rows):  # type: ignore[override]
        lse = _chunked_logsumexp(logits, temperature, chunk_rows)
        ctx.save_for_backward(logits, lse)
        ctx.temperature = temperature
        ctx.chunk_rows = chunk_rows
        return lse

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_rows):  # type: ignore[override]
        logits, lse = ctx.saved_tensors
        tau = ctx.temperature
        dtype = lse.dtype
        grad = torch.empty_like(logits)
        scale = grad_rows.to(dtype) / tau
        for rows in _row_chunks(logits.shape[0], ctx.chunk_rows):
            chunk = logits[rows].to(dtype).div_(tau) if logits.dtype != dtype else logits[rows] / tau
            grad[rows] = chunk.sub_(lse[rows, None]).exp_().mul_(scale[rows, None])
        return grad, None, None


def scaled_logsumexp(logits: torch.Tensor, temperature: float = 1.0,
                     chunk_rows: int = DEFAULT_CHUNK_ROWS) -> torch.Tensor:
    """``(rows,)`` ``log Σ_k exp(z_k / τ)`` with chunked temporaries and a one-buffer backward.

    The building block of the DINO cross-entropy matrix, where one student row meets several
    teacher rows: ``H(p_t, softmax(z_s/τ)) = m_t · lse_s - (p_t · z_s) / τ``.
    """
    if logits.ndim != 2:
        raise ValueError(f"scaled_logsumexp expects (rows, K) logits, got {tuple(logits.shape)}.")
    if not temperature > 0:
        raise ValueError(f"scaled_logsumexp: temperature must be > 0, got {temperature!r}.")
    return _ScaledLogSumExp.apply(logits, float(temperature), chunk_rows)
