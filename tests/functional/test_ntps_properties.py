"""NTPS properties (spec tests 2 and 3): range, full-rank V, scale invariance, U equals the direct
reduced-rank-regression fit, the derived excess-loss bounds, and clear errors for a k above the rank."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from sslkit.functional.ntps import (NTPSStatistics, excess_loss_bounds, generalized_eigh, ntps,
                                    perception_subspace)


def random_sentences(seed: int, n: int = 400, length: int = 9, d: int = 10, classes: int = 4):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g)
    h = torch.randn(n, length, d, generator=g).cumsum(1) @ mix / length + torch.randn(d, generator=g)
    lengths = torch.randint(1, length + 1, (n,), generator=g)  # includes L = 1 sentences (no AR pair)
    mask = (torch.arange(length)[None] < lengths[:, None]).float()
    means = (h * mask[..., None]).sum(1) / lengths[:, None]
    labels = (means @ torch.randn(d, classes, generator=g) + 0.5 * torch.randn(n, classes, generator=g)).argmax(1)
    return h, mask, labels


def statistics(h, mask, labels, classes=4, dtype=torch.float32):
    stats = NTPSStatistics(1, h.shape[-1], classes, dtype=dtype)
    stats.update(h[None], mask, labels)
    return stats.layer(0)


@pytest.mark.parametrize("seed", range(5))
def test_score_in_unit_interval_for_every_k(seed):
    stats = statistics(*random_sentences(seed))
    for k_u in (1, 2, 3):
        for k_v in (1, 4, 9):
            result = ntps(stats, k_u=k_u, k_v=k_v)
            assert 0.0 <= result.score <= 1.0 + 1e-12
            assert 0.0 <= result.score_whitened <= 1.0 + 1e-12
    assert all(0.0 <= v <= 1.0 + 1e-12 for v in ntps(stats).curve.values())


def test_full_rank_v_gives_one():
    stats = statistics(*random_sentences(1))
    result = ntps(stats, k_u=3, k_v=10)
    assert result.rank_v == 10
    assert result.score == pytest.approx(1.0, abs=1e-10)
    assert result.score_whitened == pytest.approx(1.0, abs=1e-10)


def test_invariant_to_scaling_hidden_states():
    h, mask, labels = random_sentences(2)
    base = ntps(statistics(h, mask, labels), k_v=3)
    for scale in (1e-2, 7.0, 300.0):
        scaled = ntps(statistics(h * scale, mask, labels), k_v=3)
        assert scaled.k_u == base.k_u
        assert scaled.score == pytest.approx(base.score, abs=1e-4)
        assert scaled.score_whitened == pytest.approx(base.score_whitened, abs=1e-4)


def test_perception_subspace_equals_direct_reduced_rank_regression():
    h, mask, labels = random_sentences(3, n=600)
    stats = statistics(h, mask, labels, dtype=torch.float64)
    _, u = perception_subspace(stats)
    # Direct fit on the (N, d) sentence means: least squares, then the SVD of the fitted values gives the
    # reduced-rank-regression encoder B̂ Q_k (Izenman 1975).
    x = ((h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)).double().numpy()
    y = np.eye(4)[labels.numpy()]
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    _, _, qt = np.linalg.svd(x @ coef, full_matrices=False)
    for k in (1, 2, 3):
        direct = coef @ qt[:k].T
        angles = scipy.linalg.subspace_angles(direct, u[:, :k].numpy())
        assert angles.max() < 1e-6


def test_generalized_solver_is_b_orthonormal_and_solves_the_pencil():
    g = torch.Generator().manual_seed(4)
    a = torch.randn(6, 6, generator=g, dtype=torch.float64)
    a = a @ a.T
    root = torch.randn(6, 4, generator=g, dtype=torch.float64)
    b = root @ root.T  # rank 4: the solver works on B's range
    lam, x = generalized_eigh(a, b)
    assert x.shape == (6, 4)
    torch.testing.assert_close(x.T @ b @ x, torch.eye(4, dtype=torch.float64), atol=1e-9, rtol=0)
    assert torch.all(lam[:-1] >= lam[1:])
    # On B's range the pencil holds after projecting A's action there: Wᵀ(A X − B X Λ) = 0.
    s, q = torch.linalg.eigh(b)
    qr = q[:, s > 1e-8]
    torch.testing.assert_close(qr.T @ (a @ x - b @ x @ torch.diag(lam)), torch.zeros(4, 4, dtype=torch.float64),
                               atol=1e-8, rtol=0)


@pytest.mark.parametrize("seed", range(20))
def test_excess_loss_bounds_hold_on_random_psd_and_subspaces(seed):
    g = torch.Generator().manual_seed(seed)
    d = int(torch.randint(4, 12, (1,), generator=g))
    k = int(torch.randint(1, d, (1,), generator=g))
    root = torch.randn(d, d, generator=g, dtype=torch.float64)
    m = root @ root.T
    lower, delta, upper, ntps_w = excess_loss_bounds(m, torch.randn(d, k, generator=g, dtype=torch.float64))
    assert 0.0 <= ntps_w <= 1.0 + 1e-12
    assert delta >= -1e-9
    assert lower <= delta + 1e-9 and delta <= upper + 1e-9


def test_excess_loss_bounds_are_equal_in_the_flat_case():
    g = torch.Generator().manual_seed(0)
    d, k, lam = 8, 3, 2.5
    basis, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    m = lam * basis[:, :k] @ basis[:, :k].T  # λ₁ = … = λ_k = λ, λ_{k+1} = 0
    lower, delta, upper, ntps_w = excess_loss_bounds(m, torch.randn(d, k, generator=g, dtype=torch.float64))
    assert delta == pytest.approx(k * lam * (1 - ntps_w), abs=1e-10)
    assert lower == pytest.approx(delta, abs=1e-10) and upper == pytest.approx(delta, abs=1e-10)


def test_k_above_rank_and_bad_order_raise_clear_errors():
    h, mask, labels = random_sentences(5)
    # Rank-3 states in 10 dimensions; float64 statistics so that rounding does not lift the null eigenvalues
    # above the spec's absolute 1e-8 cutoff.
    low_rank = h[..., :3] @ torch.randn(3, 10, generator=torch.Generator().manual_seed(0))
    stats = statistics(low_rank, mask, labels, dtype=torch.float64)
    with pytest.raises(ValueError, match="larger than the retained rank"):
        ntps(stats, k_u=1, k_v=5)
    with pytest.raises(ValueError, match="order"):
        ntps(stats, order="top")
    assert ntps(stats, k_u=1, k_v=0.5).k_v == 1  # a fraction of the retained rank 3
