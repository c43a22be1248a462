"""Property tests (hypothesis) for the pure functions: shapes, finiteness, bounds and invariances over
many random inputs, not just the hand-picked cases of the unit tests."""

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sslkit.functional.contrastive import nt_xent_loss
from sslkit.functional.dino import dino_loss, softmax_center_teacher
from sslkit.functional.koleo import koleo_loss
from sslkit.functional.metrics import linear_cka, mutual_knn, rankme
from sslkit.functional.sinkhorn import sinkhorn_knopp
from sslkit.functional.vicreg import vicreg_loss

FAST = settings(max_examples=25, deadline=None)
seeds = st.integers(0, 2**31 - 1)


def randn(seed, *shape, scale=1.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale


@FAST
@given(seed=seeds, b=st.integers(2, 6), k=st.integers(2, 40), n_local=st.integers(0, 3),
       tau_t=st.floats(0.01, 1.0), scale=st.floats(1e-3, 50.0))
def test_dino_loss_is_finite_and_bounded_below_by_teacher_entropy(seed, b, k, n_local, tau_t, scale):
    teacher = softmax_center_teacher(randn(seed, 2 * b, k, scale=scale), torch.zeros(1, k, dtype=torch.float64), tau_t)
    student_g = randn(seed + 1, 2 * b, k, scale=scale)
    student_l = randn(seed + 2, n_local * b, k, scale=scale) if n_local else None
    loss = dino_loss(student_g, student_l, teacher, n_global=2, student_temp=0.1)
    assert torch.isfinite(loss)
    # Cross-entropy >= entropy of the target (Gibbs), averaged the same way over pairs.
    entropy = -(teacher * teacher.clamp_min(1e-300).log()).sum(1).mean()
    assert loss.item() >= entropy.item() - 1e-6


@FAST
@given(seed=seeds, n=st.integers(1, 30), k=st.integers(2, 30), tau=st.floats(0.02, 1.0))
def test_sinkhorn_rows_are_distributions(seed, n, k, tau):
    logits = randn(seed, n, k, scale=3.0)
    q = sinkhorn_knopp(logits, tau, 3)
    assert q.shape == (n, k) and torch.isfinite(q).all() and (q >= 0).all()  # never NaN (found by hypothesis)
    # Each row is a distribution, unless all its exponents underflow in float32 (logits roughly 87-104
    # tau below the batch maximum, where denormals end): then the row is all zero by design.
    sums = q.sum(1)
    assert (((sums - 1).abs() < 1e-5) | (sums == 0)).all()
    safe = ((logits.max() - logits) / tau < 80).any(dim=1)
    assert ((sums[safe] - 1).abs() < 1e-5).all()


@FAST
@given(seed=seeds, n=st.integers(2, 20), d=st.integers(2, 16), scale=st.floats(1e-2, 1e2))
def test_koleo_is_invariant_to_scale_and_rotation(seed, n, d, scale):
    x = randn(seed, n, d)
    q, _ = torch.linalg.qr(randn(seed + 1, d, d))
    a, b = koleo_loss(x), koleo_loss(scale * x @ q)
    assert torch.isfinite(a) and abs(a.item() - b.item()) < 1e-6 * max(1.0, abs(a.item()))


@FAST
@given(seed=seeds, b=st.integers(2, 10), d=st.integers(2, 12), tau=st.floats(0.05, 2.0))
def test_nt_xent_bounds(seed, b, d, tau):
    loss = nt_xent_loss(randn(seed, b, d), randn(seed + 1, b, d), tau).item()
    # Each term is −log of a probability among 2b − 1 candidates with logits in [−1/τ, 1/τ].
    assert 0.0 <= loss <= math.log(2 * b - 1) + 2.0 / tau + 1e-9


@FAST
@given(seed=seeds, b=st.integers(2, 10), d=st.integers(2, 12), shift=st.floats(-5, 5))
def test_vicreg_variance_and_covariance_ignore_a_shift(seed, b, d, shift):
    z1, z2 = randn(seed, b, d), randn(seed + 1, b, d)
    a, c = vicreg_loss(z1, z2), vicreg_loss(z1 + shift, z2 + shift)
    assert abs(a["variance"].item() - c["variance"].item()) < 1e-9
    assert abs(a["covariance"].item() - c["covariance"].item()) < 1e-7 * max(1.0, a["covariance"].item())
    assert a["loss"].item() >= 0


@FAST
@given(seed=seeds, n=st.integers(5, 40), d=st.integers(2, 10), scale=st.floats(1e-2, 1e2))
def test_metric_invariances(seed, n, d, scale):
    x = randn(seed, n, d)
    q, _ = torch.linalg.qr(randn(seed + 1, d, d))
    r = rankme(x)
    assert 1.0 - 1e-6 <= r <= min(n, d) + 1e-6
    assert abs(rankme(scale * x @ q) - r) < 1e-6 * r
    assert abs(linear_cka(x, scale * x @ q) - 1.0) < 1e-6
    k = min(3, n - 1)
    assert abs(mutual_knn(x, scale * x @ q, k=k) - 1.0) < 1e-9
