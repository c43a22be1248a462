"""VICReg terms against numpy and known values."""

import numpy as np
import pytest
import torch

from sslkit.functional.vicreg import covariance_term, variance_term, vicreg_loss


def test_terms_match_numpy():
    rng = np.random.default_rng(0)
    z1, z2 = rng.normal(size=(10, 4)) * [0.5, 1.0, 2.0, 0.1], rng.normal(size=(10, 4))
    t = vicreg_loss(torch.from_numpy(z1), torch.from_numpy(z2), 25.0, 25.0, 1.0)
    inv = np.mean((z1 - z2) ** 2)

    def var(z):
        return np.mean(np.maximum(0.0, 1.0 - np.sqrt(z.var(axis=0, ddof=1) + 1e-4)))

    def cov(z):
        c = np.cov(z, rowvar=False)
        return ((c ** 2).sum() - (np.diag(c) ** 2).sum()) / z.shape[1]

    assert t["invariance"].item() == pytest.approx(inv, rel=1e-10)
    assert t["variance"].item() == pytest.approx((var(z1) + var(z2)) / 2, rel=1e-10)  # averaged, as the reference
    assert t["covariance"].item() == pytest.approx(cov(z1) + cov(z2), rel=1e-10)
    assert t["loss"].item() == pytest.approx(25 * inv + 25 * (var(z1) + var(z2)) / 2 + cov(z1) + cov(z2), rel=1e-10)


def test_collapse_and_healthy_values():
    constant = torch.ones(16, 8, dtype=torch.float64)
    assert variance_term(constant).item() == pytest.approx(1 - 1e-2, rel=1e-9)  # γ − sqrt(ε)
    assert covariance_term(constant).item() == 0.0
    # Orthogonal, centred columns with std > 1: no variance penalty and no covariance.
    a = torch.randn(16, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    q, _ = torch.linalg.qr(a - a.mean(0))  # columns stay centred: combinations of centred columns
    z = 10 * q
    assert variance_term(z).item() == 0.0
    assert covariance_term(z).item() == pytest.approx(0.0, abs=1e-20)


def test_identical_views_have_zero_invariance():
    z = torch.randn(8, 5)
    assert vicreg_loss(z, z.clone())["invariance"].item() == 0.0
