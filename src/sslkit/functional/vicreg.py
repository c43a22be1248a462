"""VICReg: variance-invariance-covariance regularisation.

Bardes, Ponce, LeCun, "VICReg: Variance-Invariance-Covariance Regularization for
Self-Supervised Learning", arXiv 2105.04906, eqs. (1)-(6), and the official
facebookresearch/vicreg ``main_vicreg.py`` for the details the paper leaves open (the variance and
covariance terms are computed on embeddings gathered from every worker; ε = 1e-4 inside the
square root; the covariance term divides by D, not D(D−1); the two views' variance terms are
averaged and their covariance terms summed, as ``VICReg.forward`` there, which is what the paper's
25/25/1 weights were tuned with).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sslkit.functional.gather import gather_with_grad

__all__ = ["vicreg_loss", "variance_term", "covariance_term"]


def variance_term(z: torch.Tensor, eps: float = 1e-4, gamma: float = 1.0) -> torch.Tensor:
    """mean_d relu(γ − sqrt(Var(z_d) + ε)), unbiased variance over the N rows of z (N, D)."""
    std = torch.sqrt(z.var(dim=0) + eps)
    return F.relu(gamma - std).mean()


def covariance_term(z: torch.Tensor) -> torch.Tensor:
    """(1/D) Σ_{i≠j} C_ij² with C the unbiased covariance of z (N, D)."""
    n, d = z.shape
    zc = z - z.mean(dim=0)
    cov = zc.T @ zc / (n - 1)
    off_diagonal = cov.pow(2).sum() - cov.diagonal().pow(2).sum()
    return off_diagonal / d


def vicreg_loss(z1: torch.Tensor, z2: torch.Tensor, sim_weight: float = 25.0, var_weight: float = 25.0,
                cov_weight: float = 1.0, gather: bool = True) -> dict[str, torch.Tensor]:
    """VICReg of two views (B, D). Returns ``loss`` and the three unweighted terms.

    The invariance term is the mean squared error of the local pairs; the variance and covariance
    terms use the gathered global batch: the mean of the two views' variance terms and the sum of their
    covariance terms (facebookresearch/vicreg ``main_vicreg.py``).
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"vicreg_loss needs two (B, D) tensors of equal shape, got {tuple(z1.shape)} and {tuple(z2.shape)}.")
    dtype = torch.promote_types(z1.dtype, torch.float32)
    z1, z2 = z1.to(dtype), z2.to(dtype)
    invariance = F.mse_loss(z1, z2)
    if gather:
        z1, z2 = gather_with_grad(z1), gather_with_grad(z2)
    if z1.shape[0] < 2:
        raise ValueError("vicreg_loss needs at least 2 samples in the (global) batch for its variance term.")
    variance = (variance_term(z1) + variance_term(z2)) / 2
    covariance = covariance_term(z1) + covariance_term(z2)
    loss = sim_weight * invariance + var_weight * variance + cov_weight * covariance
    return {"loss": loss, "invariance": invariance, "variance": variance, "covariance": covariance}
