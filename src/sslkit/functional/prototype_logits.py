"""Prototype logits ``z = f Wᵀ`` kept factored, so the DINO and iBOT losses never hold the (rows, K) student logits.

A DINO head ends in K prototypes: the L2-normalised bottleneck features ``f`` (rows, d) meet the weight-normalised
prototype matrix ``W`` (K, d), d = 256 and K = 65 536 in DINOv2. The losses only need two row quantities of the
student logits (``functional/soft_cross_entropy.py``):

    H(p, softmax(z / τ)) = m · lse(z / τ) − (p · z) / τ,          m = Σ_k p_k,

and both have a form that never keeps ``z``:

- ``p · z = (p W) · f``: the teacher rows are projected onto the prototypes first, a (rows, d) product;
- ``lse(f Wᵀ / τ)`` is computed chunk by chunk, keeping one number per row, and its backward recomputes each
  chunk's logits to form ``softmax(z / τ) / τ`` and multiply it straight into the gradients of ``f`` and ``W``.

So the student side keeps (rows, d) instead of (rows, K) for backward, and backward writes no (rows, K) gradient:
at ViT-S/16 with 2×224 + 8×96 crops and B = 16 that is 545 × 65 536 fp32 = 136 MiB less at the step's peak
(benchmarks/RESULTS.md). The price is one more ``f Wᵀ`` matmul in backward, ~2 % of a DINOv2 step's FLOPs.
This is the "fused linear + cross-entropy" trick of large-vocabulary language models, written here for soft
targets and tempered softmaxes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch.autograd.function import once_differentiable

from sslkit.functional.soft_cross_entropy import DEFAULT_CHUNK_ROWS, _compute_dtype, _row_chunks as _chunks

__all__ = ["PrototypeLogits", "prototype_scaled_logsumexp", "teacher_dot_logits"]


@dataclass(frozen=True)
class PrototypeLogits:
    """Student logits ``features @ prototypes.T`` that are never formed; see the module docstring.

    ``features``: (rows, d); ``prototypes``: (K, d). Both may require gradients.
    """

    features: torch.Tensor
    prototypes: torch.Tensor

    def __post_init__(self) -> None:
        if self.features.ndim != 2 or self.prototypes.ndim != 2 or self.features.shape[1] != self.prototypes.shape[1]:
            raise ValueError("PrototypeLogits needs features (rows, d) and prototypes (K, d) of the same d, got "
                             f"{tuple(self.features.shape)} and {tuple(self.prototypes.shape)}.")

    @property
    def shape(self) -> torch.Size:
        return torch.Size((self.features.shape[0], self.prototypes.shape[0]))

    @property
    def dtype(self) -> torch.dtype:
        return torch.promote_types(self.features.dtype, self.prototypes.dtype)

    @property
    def device(self) -> torch.device:
        return self.features.device

    def split(self, sizes: Sequence[int]) -> tuple["PrototypeLogits", ...]:
        """Row blocks sharing the prototypes (as ``Tensor.split`` along rows)."""
        return tuple(PrototypeLogits(part, self.prototypes) for part in self.features.split(list(sizes)))

    def materialise(self) -> torch.Tensor:
        """The (rows, K) logits, for checks and small K."""
        return self.features @ self.prototypes.t()


class _PrototypeScaledLogSumExp(torch.autograd.Function):
    """Row ``lse(f Wᵀ / τ)`` whose backward recomputes the logits chunk by chunk."""

    @staticmethod
    def forward(ctx, features, prototypes, temperature, chunk_rows):  # type: ignore[override]
        dtype = _compute_dtype(torch.promote_types(features.dtype, prototypes.dtype))
        f, w = features.to(dtype), prototypes.to(dtype)
        lse = torch.empty(f.shape[0], dtype=dtype, device=f.device)
        for rows in _chunks(f.shape[0], chunk_rows):
            lse[rows] = torch.logsumexp(f[rows] @ w.t() / temperature, dim=-1)
        ctx.save_for_backward(features, prototypes, lse)
        ctx.temperature = temperature
        ctx.chunk_rows = chunk_rows
        return lse

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_rows):  # type: ignore[override]
        features, prototypes, lse = ctx.saved_tensors
        tau = ctx.temperature
        dtype = lse.dtype
        f, w = features.to(dtype), prototypes.to(dtype)
        scale = grad_rows.to(dtype) / tau  # d lse / d z = softmax(z/τ) / τ, times the incoming row gradient
        grad_f = torch.empty_like(f) if ctx.needs_input_grad[0] else None
        grad_w = torch.zeros_like(w) if ctx.needs_input_grad[1] else None
        # Autocast off here too: backward may run inside the caller's autocast block (manual optimisation).
        with torch.autocast(f.device.type, enabled=False):
            for rows in _chunks(f.shape[0], ctx.chunk_rows):
                g = (f[rows] @ w.t()).div_(tau).sub_(lse[rows, None]).exp_().mul_(scale[rows, None])  # (chunk, K)
                if grad_f is not None:
                    grad_f[rows] = g @ w
                if grad_w is not None:
                    grad_w.addmm_(g.t(), f[rows])
        grad_f = grad_f.to(features.dtype) if grad_f is not None else None
        grad_w = grad_w.to(prototypes.dtype) if grad_w is not None else None
        return grad_f, grad_w, None, None


def prototype_scaled_logsumexp(logits: PrototypeLogits, temperature: float = 1.0,
                               chunk_rows: int = DEFAULT_CHUNK_ROWS) -> torch.Tensor:
    """``(rows,)`` ``log Σ_k exp(z_k / τ)`` of ``z = f Wᵀ`` without keeping ``z``; differentiable in ``f`` and ``W``.

    Computed in at least float32 with autocast off (a half-precision exponential over 65 536 prototypes loses too
    much, as in ``soft_cross_entropy``)."""
    if not temperature > 0:
        raise ValueError(f"prototype_scaled_logsumexp: temperature must be > 0, got {temperature!r}.")
    if not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ValueError(f"prototype_scaled_logsumexp: chunk_rows must be a positive integer, got {chunk_rows!r}.")
    with torch.autocast(logits.device.type, enabled=False):
        return _PrototypeScaledLogSumExp.apply(logits.features, logits.prototypes, float(temperature), chunk_rows)


def teacher_dot_logits(targets: torch.Tensor, logits: PrototypeLogits) -> torch.Tensor:
    """``targets @ W`` — the teacher rows projected on the prototypes, (rows_t, d), so that ``p · z = (p W) · f``.

    ``targets`` (rows_t, K) carry no gradient; the product is differentiable in ``W``. Full precision with
    autocast off, like the rest of the loss."""
    dtype = _compute_dtype(logits.dtype)
    with torch.autocast(logits.device.type, enabled=False):
        return targets.detach().to(dtype) @ logits.prototypes.to(dtype)
