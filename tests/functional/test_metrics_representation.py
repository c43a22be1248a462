"""Representation metrics against closed forms, brute-force references and invariances
(spec representation-metrics.md, "What a faithful implementation must pass" 1-8)."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from sslkit.functional.metrics import (alpha_req, cka, cknna, hsic_biased, hsic_unbiased, lidar, linear_cka,
                                       linear_r2, mcc, mutual_knn, nearest_neighbours, rankme)


def gen(seed):
    return torch.Generator().manual_seed(seed)


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=gen(seed), dtype=torch.float64)


def orthogonal(d, seed=0):
    q, r = torch.linalg.qr(randn(d, d, seed=seed))
    return q * torch.sign(torch.diagonal(r))


# ----------------------------------------------------------------------------------- RankMe


def test_rankme_of_isotropic_gaussian_is_near_full_rank():
    d = 32
    z = randn(10 * d, d, seed=1)
    value = rankme(z)
    assert 0.9 * d < value <= d


def test_rankme_of_collapsed_embeddings_is_one():
    z = randn(500, 1, seed=2) @ randn(1, 64, seed=3)
    assert rankme(z) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("r", [1, 3, 7])
def test_rankme_equals_r_for_r_equal_singular_values(r):
    n, d = 60, 20
    u = orthogonal(n, seed=4)[:, :r]
    v = orthogonal(d, seed=5)[:, :r]
    z = 2.5 * u @ v.t()
    assert rankme(z) == pytest.approx(r, abs=1e-3)
    assert rankme(z, spectrum="eig") == pytest.approx(r, abs=1e-3)


def test_rankme_is_invariant_to_rotation_and_scale_but_not_centring():
    z = randn(200, 16, seed=6) * torch.linspace(0.1, 2.0, 16, dtype=torch.float64)
    q = orthogonal(16, seed=7)
    assert rankme(z @ q) == pytest.approx(rankme(z), rel=1e-9)
    assert rankme(7.0 * z) == pytest.approx(rankme(z), rel=1e-9)
    # The uncentred spectrum: a large common offset is one dominant direction.
    assert rankme(z + 50.0) < 0.5 * rankme(z)


# ----------------------------------------------------------------------------------- α-ReQ


@pytest.mark.parametrize("alpha", [0.8, 1.5, 2.5])
def test_alpha_req_recovers_the_power_law_exponent(alpha):
    n, d = 40_000, 32
    scales = torch.arange(1, d + 1, dtype=torch.float64) ** (-alpha / 2)
    z = randn(n, d, seed=8) * scales @ orthogonal(d, seed=9)
    assert alpha_req(z) == pytest.approx(alpha, abs=0.05)
    assert alpha_req(3.0 * z + 1.0) == pytest.approx(alpha_req(z), rel=1e-9)  # scale- and shift-free


# ----------------------------------------------------------------------------------- LiDAR


def views_with_isotropic_means(n_cls, q, d, r, noise, seed):
    means = torch.zeros(n_cls, d, dtype=torch.float64)
    means[:, :r] = randn(n_cls, r, seed=seed)
    return means[:, None, :] + noise * randn(n_cls, q, d, seed=seed + 1)


def test_lidar_counts_the_discriminative_directions():
    r = 5
    e = views_with_isotropic_means(1000, 4, 16, r, noise=0.01, seed=10)
    assert lidar(e) == pytest.approx(r, abs=0.1)


def test_lidar_is_invariant_under_invertible_linear_maps_as_delta_vanishes():
    e = views_with_isotropic_means(300, 5, 8, 4, noise=0.3, seed=11)
    a = randn(8, 8, seed=12) + 3 * torch.eye(8, dtype=torch.float64)  # well conditioned
    base = lidar(e, delta=1e-10)
    assert lidar(e @ a, delta=1e-10) == pytest.approx(base, rel=1e-4)
    assert lidar(e @ orthogonal(8, seed=13), delta=1e-10) == pytest.approx(base, rel=1e-6)


def test_lidar_is_bounded_by_the_number_of_classes_minus_one():
    for n_cls, d in ((5, 20), (12, 6)):
        e = randn(n_cls, 3, d, seed=n_cls)
        assert 1.0 <= lidar(e) <= min(n_cls - 1, d) + 1e-3


# ----------------------------------------------------------------------------------- HSIC and CKA


def brute_force_hsic_unbiased(k, l):
    """The U-statistic over ordered 4-tuples of distinct indices (Song et al. 2012, eq. 4-5)."""
    n = k.shape[0]
    total, count = 0.0, 0
    for i, j, q, r in itertools.permutations(range(n), 4):
        total += k[i, j] * l[i, j] + k[i, j] * l[q, r] - 2 * k[i, j] * l[i, q]
        count += 1
    return float(total) / count


def test_unbiased_hsic_equals_the_u_statistic():
    x, y = randn(7, 3, seed=14), randn(7, 2, seed=15)
    k, l = x @ x.t(), torch.exp(-torch.cdist(y, y) ** 2)
    assert float(hsic_unbiased(k, l)) == pytest.approx(brute_force_hsic_unbiased(k, l), rel=1e-10)


def test_biased_hsic_equals_trace_formula():
    x, y = randn(9, 4, seed=16), randn(9, 3, seed=17)
    k, l = x @ x.t(), y @ y.t()
    h = torch.eye(9, dtype=torch.float64) - 1.0 / 9
    expected = torch.trace(k @ h @ l @ h) / 8**2
    assert float(hsic_biased(k, l)) == pytest.approx(float(expected), rel=1e-12)


def test_unbiased_hsic_of_independent_data_averages_zero_while_biased_stays_positive():
    biased, unbiased = [], []
    for seed in range(200):
        x, y = randn(20, 3, seed=1000 + seed), randn(20, 3, seed=5000 + seed)
        k, l = x @ x.t(), y @ y.t()
        biased.append(float(hsic_biased(k, l)))
        unbiased.append(float(hsic_unbiased(k, l)))
    b, u = torch.tensor(biased), torch.tensor(unbiased)
    assert b.min() > 0
    assert abs(u.mean()) < 3 * u.std() / math.sqrt(len(u))
    assert b.mean() > 10 * u.std() / math.sqrt(len(u))


def test_linear_cka_feature_form_equals_kernel_form():
    x, y = randn(50, 6, seed=18), randn(50, 9, seed=19)
    k, l = x @ x.t(), y @ y.t()
    kernel_form = hsic_biased(k, l) / torch.sqrt(hsic_biased(k, k) * hsic_biased(l, l))
    assert linear_cka(x, y) == pytest.approx(float(kernel_form), rel=1e-10)


@pytest.mark.parametrize("kernel,unbiased", [("linear", False), ("rbf", False), ("linear", True), ("rbf", True)])
def test_cka_invariances(kernel, unbiased):
    a = randn(80, 12, seed=20)
    q = orthogonal(12, seed=21)
    assert cka(a, a, kernel, unbiased) == pytest.approx(1.0, abs=1e-9)
    assert cka(a, a @ q, kernel, unbiased) == pytest.approx(1.0, abs=1e-9)
    b = torch.tanh(a[:, :5] @ randn(5, 7, seed=22))
    assert cka(a, 4.0 * b, kernel, unbiased) == pytest.approx(cka(a, b, kernel, unbiased), rel=1e-9)
    assert cka(a, b, kernel, unbiased) == pytest.approx(cka(b, a, kernel, unbiased), rel=1e-9)


def test_cka_of_independent_representations_is_small_and_unbiased_can_go_negative():
    values = [cka(randn(40, 5, seed=s), randn(40, 5, seed=100 + s), unbiased=True) for s in range(20)]
    assert min(values) < 0 < max(values)
    assert cka(randn(400, 5, seed=1), randn(400, 5, seed=2)) < 0.1


# ----------------------------------------------------------------------------------- neighbourhoods


def test_nearest_neighbours_blockwise_equals_dense():
    z = randn(103, 8, seed=23)
    zn = F.normalize(z, dim=1)
    sims = zn @ zn.t()
    sims.fill_diagonal_(-math.inf)
    dense = sims.topk(5, dim=1).indices
    for block in (1, 10, 1000):
        assert torch.equal(nearest_neighbours(z, 5, block_size=block), dense)


def test_mutual_knn_of_identical_rotated_or_scaled_representations_is_one():
    a = randn(300, 16, seed=24)
    assert mutual_knn(a, a) == 1.0
    assert mutual_knn(a, 3.0 * a @ orthogonal(16, seed=25)) == pytest.approx(1.0)


def test_mutual_knn_of_independent_representations_is_k_over_n_minus_1():
    n, k = 1500, 10
    value = mutual_knn(randn(n, 16, seed=26), randn(n, 16, seed=27), k=k)
    p = k / (n - 1)
    # Per row the overlap is hypergeometric (k draws from n - 1 with k marked); m averages n rows of overlap/k.
    row_var = k * p * (1 - p) * (n - 1 - k) / (n - 2)
    standard_error = math.sqrt(row_var) / k / math.sqrt(n)
    assert abs(value - p) < 3 * standard_error


@pytest.mark.parametrize("normalize", [True, False])
def test_cknna_with_all_neighbours_equals_unbiased_linear_cka(normalize):
    a, b = randn(30, 6, seed=28), randn(30, 4, seed=29)
    b = b + a[:, :4]  # related, so the value is far from 0
    ref_a, ref_b = (F.normalize(a, dim=1), F.normalize(b, dim=1)) if normalize else (a, b)
    expected = cka(ref_a, ref_b, unbiased=True)
    assert cknna(a, b, k=29, normalize=normalize) == pytest.approx(expected, abs=1e-6)
    assert abs(expected) > 0.1


def test_cknna_is_one_for_the_same_neighbourhoods_and_lower_for_independent_ones():
    a = randn(200, 8, seed=30)
    assert cknna(a, 2.0 * a @ orthogonal(8, seed=31), k=10) == pytest.approx(1.0, abs=1e-9)
    assert cknna(a, randn(200, 8, seed=32), k=10) < 0.5


# ----------------------------------------------------------------------------------- identifiability


def test_linear_r2_is_one_for_an_invertible_affine_map_and_lower_for_a_nonlinear_one():
    z_fit, z_test = randn(500, 4, seed=33), randn(200, 4, seed=34)
    a = randn(4, 4, seed=35) + 2 * torch.eye(4, dtype=torch.float64)
    b = randn(1, 4, seed=36)
    assert linear_r2(z_fit @ a + b, z_fit, z_test @ a + b, z_test) == pytest.approx(1.0, abs=1e-6)
    assert linear_r2(z_fit**2, z_fit, z_test**2, z_test) < 0.1  # squares carry no linear information about z


def test_linear_r2_matches_sklearn_linear_regression():
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import r2_score

    h_fit, h_test = randn(300, 6, seed=37), randn(100, 6, seed=38)
    w = randn(6, 3, seed=39)
    z_fit = h_fit @ w + 0.5 * randn(300, 3, seed=40)
    z_test = h_test @ w + 0.5 * randn(100, 3, seed=41)
    model = LinearRegression().fit(h_fit.numpy(), z_fit.numpy())
    expected = r2_score(z_test.numpy(), model.predict(h_test.numpy()), multioutput="uniform_average")
    assert linear_r2(h_fit, z_fit, h_test, z_test, ridge=0.0) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_mcc_is_one_for_permuted_rescaled_sign_flipped_latents(method):
    z = randn(400, 5, seed=42)
    z_hat = z[:, [3, 0, 4, 1, 2]] * torch.tensor([2.0, -0.5, 3.0, -1.0, 0.1], dtype=torch.float64) + 7.0
    assert mcc(z_hat, z, method) == pytest.approx(1.0, abs=1e-12)
    mixed = z @ orthogonal(5, seed=43)
    assert mcc(mixed, z, method) < 0.9  # a rotation is not a permutation


def test_mcc_matching_is_optimal_not_greedy():
    # |rho| is about [[0.7, 0.6], [0.65, 0.0]] (rows: learned dims). Greedy matching takes the largest entry
    # (0, 0) first and is left with (1, 1): mean 0.35. The optimal assignment (0, 1), (1, 0) gives 0.625.
    n = 20_000
    z = randn(n, 2, seed=44)
    a = 0.7 * z[:, 0] + 0.6 * z[:, 1] + math.sqrt(0.15) * randn(n, seed=45)
    b = 0.65 * z[:, 0] + math.sqrt(1 - 0.65**2) * randn(n, seed=46)
    z_hat = torch.stack([a, b], dim=1)
    corr = torch.corrcoef(torch.cat([z_hat, z], dim=1).t())[:2, 2:].abs()
    optimal = float(corr[0, 1] + corr[1, 0]) / 2
    greedy = float(corr[0, 0] + corr[1, 1]) / 2
    assert mcc(z_hat, z) == pytest.approx(optimal, rel=1e-9)
    assert optimal > greedy + 0.2


def test_metrics_reject_bad_shapes():
    with pytest.raises(ValueError, match="same samples"):
        cka(randn(10, 3), randn(11, 3))
    with pytest.raises(ValueError, match=r"\(N, q, d\)"):
        lidar(randn(10, 3))
    with pytest.raises(ValueError, match="k must be"):
        mutual_knn(randn(5, 3), randn(5, 3), k=5)
    with pytest.raises(ValueError, match="NaN"):
        rankme(torch.tensor([[float("nan"), 1.0]]))
