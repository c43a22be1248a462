"""Task priors at scale: blockwise = dense, pair-sampling intervals, exact streaming median."""

import numpy as np
import pytest
import torch

from sslkit.functional import taskprior as tp

N = 333  # not a multiple of the block sizes below, so ragged edge tiles are exercised


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, 24, generator=g) + 0.4
    z = 0.5 * x[:, :16] + torch.randn(N, 16, generator=g)
    y = torch.randint(0, 5, (N,), generator=g)
    return x, z, y


def _rel(a, b):
    return float(((a - b).abs() / b.abs()).max())


@pytest.mark.parametrize("kind", tp.KERNELS)
@pytest.mark.parametrize("prior_kind", ["labels", "model", "mean", "dense"])
@pytest.mark.parametrize("center", [False, True])
def test_blockwise_equals_dense_to_1e6(data, kind, prior_kind, center):
    x, z, y = data
    temps = [2.0, 0.25]
    dense_m = tp.model_kernel(x, kind)
    block_m = tp.block_kernel_from_features(x, kind)  # float32 tiles, fp64 accumulation
    if prior_kind == "labels":
        dense_k, block_k = tp.label_kernel(y), tp.label_block_kernel(y)
    elif prior_kind == "model":
        dense_k, block_k = tp.model_kernel(z, kind), tp.block_kernel_from_features(z, kind)
    elif prior_kind == "mean":
        dense_k = (tp.model_kernel(z, kind) + tp.model_kernel(x, "cosine")) / 2
        block_k = tp.mean_block_kernel([tp.block_kernel_from_features(z, kind), tp.block_kernel_from_features(x, "cosine")])
    else:  # a user's matrix, e.g. loaded from a file
        dense_k = tp.model_kernel(z, kind)
        block_k = tp.DenseKernel(dense_k.numpy())
    if center:
        dense_m, dense_k = tp.center_normalise_kernel(dense_m), tp.center_normalise_kernel(dense_k)
        block_m = tp.center_normalise_block_kernel(block_m, block_size=64)
        block_k = tp.center_normalise_block_kernel(block_k, block_size=100)
        temps = [t * 1e-2 for t in temps]  # centred, normalised entries are ~1/n
    e, v = tp.expectation_variance(model_kernel=dense_m, prior_kernel=dense_k, temperature=temps)
    eb, vb = tp.expectation_variance_blockwise(block_m, block_k, temps, block_size=64)
    assert _rel(eb, e) < 1e-6 and _rel(vb, v) < 1e-6
    # In float64 the tiles reproduce the dense formula to rounding.
    if not center and prior_kind in ("labels", "model"):
        m64 = tp.block_kernel_from_features(x, kind, dtype=torch.float64)
        k64 = tp.label_block_kernel(y, torch.float64) if prior_kind == "labels" else \
            tp.block_kernel_from_features(z, kind, dtype=torch.float64)
        e64, v64 = tp.expectation_variance_blockwise(m64, k64, temps, block_size=50)
        assert _rel(e64, e) < 1e-11 and _rel(v64, v) < 1e-11


def test_blockwise_handles_a_non_symmetric_prior(data):
    x, z, _ = data
    k = tp.model_kernel(z, "linear") + 0.3 * torch.randn(N, N, generator=torch.Generator().manual_seed(1)).double()
    dense = tp.DenseKernel(k)
    assert not dense.symmetric
    e, v = tp.expectation_variance(model_kernel=tp.cosine_kernel(x), prior_kernel=k, temperature=1.5)
    eb, vb = tp.expectation_variance_blockwise(tp.block_kernel_from_features(x), dense, 1.5, block_size=70)
    assert _rel(eb, e) < 1e-6 and _rel(vb, v) < 1e-6


def test_blockwise_reports_progress_over_upper_triangle_tiles(data):
    x, _, y = data
    calls = []
    tp.expectation_variance_blockwise(tp.block_kernel_from_features(x), tp.label_block_kernel(y), 1.0,
                                      block_size=100, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (10, 10)  # 4 row blocks -> 4·5/2 tiles


def test_pair_sampling_intervals_cover_the_exact_value(data):
    x, z, y = data
    model, prior = tp.block_kernel_from_features(x), tp.block_kernel_from_features(z)
    e, v = tp.expectation_variance_blockwise(model, prior, 1.0)
    covered_e = covered_v = 0
    runs = 200
    for seed in range(runs):
        se, sv = tp.expectation_variance_sampled(model, prior, 1.0, num_pairs=2000, seed=seed)
        covered_e += se.covers(float(e))
        covered_v += sv.covers(float(v))
    # 95 % intervals: coverage over 200 independent runs is 0.95 ± 0.015.
    assert 0.90 <= covered_e / runs <= 0.99 and 0.90 <= covered_v / runs <= 0.99
    se, sv = tp.expectation_variance_sampled(model, tp.label_block_kernel(y), 1.0, num_pairs=200_000, confidence=0.999)
    e, v = tp.expectation_variance_blockwise(model, tp.label_block_kernel(y), 1.0)
    assert se.covers(float(e)) and sv.covers(float(v))
    assert se.stderr / float(e) < 5e-3  # and the interval is narrow


def test_pair_sampling_is_unbiased(data):
    x, _, y = data
    model, prior = tp.block_kernel_from_features(x, "rbf"), tp.label_block_kernel(y)
    e, _ = tp.expectation_variance_blockwise(model, prior, 0.5)
    estimates = torch.tensor([tp.expectation_variance_sampled(model, prior, 0.5, num_pairs=500, seed=s)[0].estimate
                              for s in range(300)])
    stderr = estimates.std() / np.sqrt(len(estimates))
    assert abs(float(estimates.mean() - e)) < 4 * stderr


def test_exact_streaming_median_equals_dense_median(data):
    x, _, _ = data
    dense = torch.cdist(x.double(), x.double())
    dense.fill_diagonal_(0)
    exact = tp.median_pairwise_distance(x, block_size=64)
    assert abs(exact - float(dense.median())) / float(dense.median()) < 1e-6
    # Force several refinement passes (16 bins, ≤ 50 candidates) and compare with the median of the
    # very same computed distances.
    dist = tp.PairwiseDistances(x)
    same = dist.block(slice(0, N), slice(0, N))
    refined = tp.median_pairwise_distance(x, block_size=64, bins=16, max_candidates=50)
    assert refined == float(same.median())


def test_exact_median_with_ties():
    # 80 of 100 points coincide: 6420 of the 10⁴ distances are 0 (up to float32 rounding of the
    # ‖a‖² + ‖b‖² − 2⟨a, b⟩ expansion), so the median is one of thousands of tied near-zero values.
    g = torch.Generator().manual_seed(2)
    x = torch.cat([torch.zeros(80, 5), torch.randn(20, 5, generator=g)])
    median = tp.median_pairwise_distance(x, block_size=32, bins=8, max_candidates=10)
    assert median == float(tp.PairwiseDistances(x).block(slice(0, 100), slice(0, 100)).median())
    assert median < 1e-4
    y = torch.cat([torch.ones(30, 3), torch.randn(20, 3, generator=g)])
    assert tp.median_pairwise_distance(y, block_size=16, bins=4, max_candidates=5) == \
        float(tp.PairwiseDistances(y).block(slice(0, 50), slice(0, 50)).median())
    with pytest.raises(ValueError, match="median pairwise distance is 0"):
        tp.block_kernel_from_features(torch.ones(10, 3), "rbf")  # all points equal


def test_sampled_median_is_within_its_stated_rank_band():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(1500, 10, generator=g)
    dist = torch.cdist(x, x)
    dist.fill_diagonal_(0)
    flat = dist.reshape(-1).sort().values
    approx = tp.median_pairwise_distance(x, "sampled", num_pairs=1_000_000, seed=1)
    level = float((flat <= approx).double().mean())
    assert abs(level - 0.5) < 0.0015  # ±3 s.d. of the order statistic, 0.5/√10⁶ each


def test_sampled_estimator_with_a_sampled_median_rbf(data):
    x, _, y = data
    bandwidth = tp.median_pairwise_distance(x, "sampled", num_pairs=50_000)
    model = tp.block_kernel_from_features(x, "rbf", bandwidth=bandwidth)
    e, _ = tp.expectation_variance_blockwise(model, tp.label_block_kernel(y), 1.0)
    exact_model = tp.block_kernel_from_features(x, "rbf")
    e_exact, _ = tp.expectation_variance_blockwise(exact_model, tp.label_block_kernel(y), 1.0)
    assert abs(float(e / e_exact) - 1) < 0.01  # the approximation moves E[S] by well under 1 %
