"""Power-diagram geometry of TopK SAEs (arXiv 2505.11836, Sec. 3): identities on random inputs."""

import pytest
import torch

from sslkit.functional.power_diagram import (
    cell_affine_map,
    piecewise_affine_reconstruction,
    power_active_set,
    power_distances,
    power_sites,
    region_ids,
    relu_active_set,
    topk_active_set,
)


def _random_encoder(d, m, seed, bias_scale=1.0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d, m, generator=g, dtype=torch.float64)
    b = bias_scale * torch.randn(m, generator=g, dtype=torch.float64)
    return w, b, g


@pytest.mark.parametrize("d,m,k", [(2, 12, 1), (5, 40, 3), (16, 64, 15), (3, 30, 29)])
def test_topk_by_value_active_set_is_the_k_nearest_in_power_distance(d, m, k):
    w, b, g = _random_encoder(d, m, seed=d * 100 + k)
    x = 2.0 * torch.randn(3000, d, generator=g, dtype=torch.float64)
    z = x @ w + b
    by_value = topk_active_set(z, k, "value")
    sites, radii_sq = power_sites(w, b)
    by_power = power_active_set(x, sites, radii_sq, k)
    assert by_value.sum(1).eq(k).all()
    agreement = (by_value == by_power).all(1).double().mean().item()
    assert agreement == 1.0


def test_power_distance_is_norm_minus_twice_preactivation():
    w, b, g = _random_encoder(7, 25, seed=3)
    x = torch.randn(200, 7, generator=g, dtype=torch.float64)
    sites, radii_sq = power_sites(w, b)
    assert torch.allclose(radii_sq, w.pow(2).sum(0) + 2 * b)
    distances = power_distances(x, sites, radii_sq, chunk_size=37)  # chunking must not matter
    expected = x.pow(2).sum(1, keepdim=True) - 2 * (x @ w + b)
    assert torch.allclose(distances, expected, atol=1e-10)


def test_selection_by_absolute_value_is_not_a_power_diagram():
    # Negative biases make many pre-activations negative, so the largest |z| often differ from the largest z.
    w, b, g = _random_encoder(4, 20, seed=11)
    b = b - 2.0
    x = torch.randn(2000, 4, generator=g, dtype=torch.float64)
    z = x @ w + b
    sites, radii_sq = power_sites(w, b)
    by_abs = topk_active_set(z, 3, "abs")
    by_power = power_active_set(x, sites, radii_sq, 3)
    disagreement = (by_abs != by_power).any(1).double().mean().item()
    assert disagreement > 0.05
    # the |z| selection keeps the largest magnitudes
    kept = z.abs()[by_abs].view(-1, 3).min(1).values
    dropped = z.abs().masked_fill(by_abs, -1).max(1).values
    assert (kept >= dropped).all()


def test_region_ids_number_distinct_active_sets_independently_of_order():
    w, b, g = _random_encoder(2, 10, seed=5)
    x = torch.randn(500, 2, generator=g, dtype=torch.float64)
    active = topk_active_set(x @ w + b, 2)
    ids, patterns = region_ids(active)
    assert torch.equal(patterns[ids], active)
    assert patterns.shape[0] == len({tuple(row.tolist()) for row in active})
    perm = torch.randperm(500, generator=g)
    ids_perm, patterns_perm = region_ids(active[perm])
    assert torch.equal(patterns_perm, patterns) and torch.equal(ids_perm, ids[perm])


@pytest.mark.parametrize("select", ["value", "abs", "relu"])
def test_cell_affine_maps_reproduce_the_sae_forward_pass(select):
    d, m, k = 6, 30, 4
    w, b, g = _random_encoder(d, m, seed=21)
    w_dec = torch.randn(m, d, generator=g, dtype=torch.float64)
    b_dec = torch.randn(d, generator=g, dtype=torch.float64)
    x = torch.randn(400, d, generator=g, dtype=torch.float64)
    z = x @ w + b
    active = relu_active_set(z) if select == "relu" else topk_active_set(z, k, select)
    forward = (z * active) @ w_dec + b_dec
    assert torch.allclose(piecewise_affine_reconstruction(x, w, b, w_dec, b_dec, active), forward, atol=1e-10)
    # and one cell by hand: x A + c
    a, c = cell_affine_map(w, b, w_dec, b_dec, active[0])
    assert torch.allclose(x[0] @ a + c, forward[0], atol=1e-12)


def test_topk_rejects_bad_arguments():
    z = torch.zeros(2, 5)
    with pytest.raises(ValueError, match="k must be"):
        topk_active_set(z, 6)
    with pytest.raises(ValueError, match="select"):
        topk_active_set(z, 2, "magnitude")
