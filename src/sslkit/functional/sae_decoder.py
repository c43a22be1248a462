"""Closed-form decoder of a sparse autoencoder for fixed codes (the "A" block of PAM-SGD).

With the codes Z = σ(enc(X)) (N, m) held fixed, the reconstruction loss is a linear least-squares
problem in the decoder (W_dec (m, d), b_dec (d,)). PAM-SGD (arXiv 2505.11836, Sec. 5) solves it
exactly on the whole training set every epoch. Two modes:

* ``joint`` (the exact block minimiser): with Z₁ = [Z, 1] solve
  (Z₁ᵀZ₁ + ε·diag(1, …, 1, 0)) [W_dec; b_decᵀ] = Z₁ᵀX — the bias row is not penalised.
* ``mean_residual`` (the reference code): solve (ZᵀZ + εI) W_dec = ZᵀX without a bias, then set
  b_dec = mean(X − Z W_dec). Not a joint stationary point when the codes do not have zero mean.
  The LLM reference solves by ``lstsq`` on Z stacked over ε·I rows, which is ridge ε²: pass
  ``ridge=eps**2`` for that variant.

Optional proximal terms pull W_dec towards its previous value W^t and decay it:
(ZᵀZ + (ε + α_w + μ)I) W_dec = ZᵀX + μ W^t, and the bias update
b ← (b + ν b^t)/(1 + ν), then b ← b/(1 + β) (:func:`pull_decoder_bias`).

Everything is accumulated and solved in float64: the Gram matrix of sparse codes is often
ill-conditioned, and the normal equations square the condition number. The sufficient
statistics (:class:`DecoderNormalEquations`) add up over chunks, so Z never has to be held whole.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = [
    "DecoderNormalEquations",
    "decoder_normal_equations",
    "add_normal_equations",
    "solve_decoder_joint",
    "solve_decoder_mean_residual",
    "pull_decoder_bias",
    "ridge_decoder",
]


class DecoderNormalEquations(NamedTuple):
    """Sufficient statistics of the decoder least-squares problem, in float64.

    zz: (m, m) ZᵀZ;  z_sum: (m,) Zᵀ1;  zx: (m, d) ZᵀX;  x_sum: (d,) Xᵀ1;  count: N.
    """

    zz: torch.Tensor
    z_sum: torch.Tensor
    zx: torch.Tensor
    x_sum: torch.Tensor
    count: int


def decoder_normal_equations(codes: torch.Tensor, x: torch.Tensor) -> DecoderNormalEquations:
    """Statistics of one chunk: codes (N, m), x (N, d)."""
    z = codes.detach().to(torch.float64)
    xs = x.detach().to(torch.float64)
    return DecoderNormalEquations(z.t() @ z, z.sum(dim=0), z.t() @ xs, xs.sum(dim=0), int(z.shape[0]))


def add_normal_equations(a: DecoderNormalEquations | None, b: DecoderNormalEquations) -> DecoderNormalEquations:
    """Sum of the statistics of two disjoint chunks (``a`` may be None for the first chunk)."""
    if a is None:
        return b
    return DecoderNormalEquations(a.zz + b.zz, a.z_sum + b.z_sum, a.zx + b.zx, a.x_sum + b.x_sum, a.count + b.count)


def _solve_spd(matrix: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    # Cholesky when the system is positive definite (any ε > 0 or full-rank codes); otherwise
    # (ε = 0 with a dead latent) the minimum-norm least-squares solution, as lstsq would return.
    factor, info = torch.linalg.cholesky_ex(matrix)
    if int(info) == 0:
        return torch.cholesky_solve(rhs, factor)
    return torch.linalg.lstsq(matrix, rhs, driver="gelsd").solution


def _weight_system(eq: DecoderNormalEquations, ridge: float, previous: torch.Tensor | None,
                   pull: float, weight_decay: float) -> tuple[torch.Tensor, torch.Tensor]:
    m = eq.zz.shape[0]
    lhs = eq.zz + (ridge + weight_decay + pull) * torch.eye(m, dtype=eq.zz.dtype, device=eq.zz.device)
    rhs = eq.zx
    if pull:
        if previous is None:
            raise ValueError("pull > 0 needs the previous decoder weights.")
        rhs = rhs + pull * previous.to(rhs.dtype)
    return lhs, rhs


def solve_decoder_joint(eq: DecoderNormalEquations, ridge: float = 1e-6, *, previous: torch.Tensor | None = None,
                        pull: float = 0.0, weight_decay: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact joint minimiser over (W_dec, b_dec) of ‖X − ZW − 1bᵀ‖² + (ε + α + μ)‖W‖² − 2μ⟨W, W^t⟩.

    Args:
        eq: statistics of the full training set.
        ridge: ε on the weight rows only (the bias row is unpenalised).
        previous: (m, d) W^t, needed when ``pull`` > 0.
        pull: μ_dec; weight_decay: α_w.

    Returns:
        ``w_dec`` (m, d) and ``b_dec`` (d,), float64.
    """
    m = eq.zz.shape[0]
    weight_lhs, weight_rhs = _weight_system(eq, ridge, previous, pull, weight_decay)
    lhs = torch.empty(m + 1, m + 1, dtype=torch.float64, device=eq.zz.device)
    lhs[:m, :m] = weight_lhs
    lhs[:m, m] = eq.z_sum
    lhs[m, :m] = eq.z_sum
    lhs[m, m] = float(eq.count)
    rhs = torch.cat([weight_rhs, eq.x_sum[None, :]], dim=0)
    solution = _solve_spd(lhs, rhs)
    return solution[:m], solution[m]


def solve_decoder_mean_residual(eq: DecoderNormalEquations, ridge: float = 1e-6, *,
                                previous: torch.Tensor | None = None, pull: float = 0.0,
                                weight_decay: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference mode: W_dec from (ZᵀZ + (ε + α + μ)I) W = ZᵀX + μW^t without a bias, then
    b_dec = mean(X − Z W_dec). Returns (m, d) and (d,) float64."""
    lhs, rhs = _weight_system(eq, ridge, previous, pull, weight_decay)
    w = _solve_spd(lhs, rhs)
    b = (eq.x_sum - eq.z_sum @ w) / eq.count
    return w, b


def pull_decoder_bias(b_dec: torch.Tensor, previous: torch.Tensor | None, pull: float = 0.0,
                      decay: float = 0.0) -> torch.Tensor:
    """b ← (b + ν b^t)/(1 + ν), then b ← b/(1 + β) (the LLM reference's bias proximal step and decay)."""
    if pull:
        if previous is None:
            raise ValueError("pull > 0 needs the previous decoder bias.")
        b_dec = (b_dec + pull * previous.to(b_dec.dtype)) / (1.0 + pull)
    if decay:
        b_dec = b_dec / (1.0 + decay)
    return b_dec


def ridge_decoder(codes: torch.Tensor, x: torch.Tensor, ridge: float = 1e-6, bias: str = "joint") -> tuple[torch.Tensor, torch.Tensor]:
    """One-call solve for codes (N, m) and targets x (N, d); returns (W_dec (m, d), b_dec (d,)) in
    the dtype of ``x``. ``bias`` is ``"joint"`` or ``"mean_residual"``."""
    eq = decoder_normal_equations(codes, x)
    if bias == "joint":
        w, b = solve_decoder_joint(eq, ridge)
    elif bias == "mean_residual":
        w, b = solve_decoder_mean_residual(eq, ridge)
    else:
        raise ValueError(f"bias must be 'joint' or 'mean_residual', got {bias!r}.")
    return w.to(x.dtype), b.to(x.dtype)
