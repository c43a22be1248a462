"""Closed forms of linear RC and JE (arXiv 2505.12477) against independent optimisation and sampled views.

The spec's four "must pass" checks: (1) RC closed form = gradient descent (d = 6, k = 2) to 1e-10 in the
objective and in the T-invariant product D·E; (2) JE: W*SW*ᵀ = I to 1e-12, the invariance loss equals
2(k − Σω) and is unchanged under W* → UW*, and equals gradient ascent on the trace ratio; (3) the
threshold sweep follows the two inequalities with the crossover at γ_n = γ_s; (4) finite-n probes.
"""

import numpy as np
import pytest
import scipy.linalg
import torch

from sslkit.functional import linear_theory as lt
from sslkit.theory.linear import probe_experiment

D, K = 6, 2


def _white(n: int, d: int, rng) -> np.ndarray:
    z = rng.standard_normal((n, d))
    return np.linalg.solve(np.linalg.cholesky(z.T @ z / n), z.T).T


def _orthogonal(d: int, rng) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


@pytest.fixture(scope="module")
def additive_problem():
    """A well-conditioned d = 6 problem: rotated data with a spread spectrum and a full (non-diagonal) C."""
    rng = np.random.default_rng(0)
    x = (_white(40, D, rng) * np.sqrt([4.0, 3.0, 1.5, 1.0, 0.7, 0.5])) @ _orthogonal(D, rng).T
    a = rng.standard_normal((D, D))
    noise_cov = 0.3 * a @ a.T / D + 0.2 * np.eye(D)
    return x, noise_cov, lt.augmentation_moments_additive(x, noise_cov)


@pytest.fixture(scope="module")
def sampled_problem():
    """A general (non-additive) augmentation given by samples: random masking of coordinates plus noise,
    so the mean view x̄_i differs from x_i. 48 views of 30 samples."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((30, D)) * np.sqrt([3.0, 2.0, 1.0, 0.8, 0.5, 0.3])
    keep = rng.random((48, 30, D)) < 0.8
    views = keep * x[None] + 0.3 * rng.standard_normal((48, 30, D))
    return x, views


def _plugin_statistics(x, views):
    """Test-side sufficient statistics straight from the views (not the library's moment functions)."""
    v, n, _ = views.shape
    flat = views.reshape(-1, views.shape[-1])
    second = flat.T @ flat / (n * v)  # (1/n) Σ_i mean_v τ τᵀ
    cross = sum(x.T @ views[j] for j in range(v)) / (n * v)  # (1/n) Σ_i x_i mean_v τᵀ
    mean = views.mean(axis=0)
    return second, cross, float(np.sum(x * x) / n), mean.T @ mean / n


def _rc_gradient_descent(second, cross, k, seed=0, max_steps=200_000):
    """Plain gradient descent on R(E, D) = c − 2 tr(DE crossᵀ) + tr(DE second (DE)ᵀ) from a random start."""
    rng = np.random.default_rng(seed)
    d = second.shape[0]
    enc, dec = 0.1 * rng.standard_normal((k, d)), 0.1 * rng.standard_normal((d, k))
    step = 0.2 / (np.linalg.eigvalsh(second)[-1] * max(1.0, np.linalg.norm(cross, 2)))
    for _ in range(max_steps):
        grad = 2.0 * (dec @ enc @ second - cross)  # ∂R/∂(DE)
        grad_dec, grad_enc = grad @ enc.T, dec.T @ grad
        dec, enc = dec - step * grad_dec, enc - step * grad_enc
        if max(np.abs(grad_dec).max(), np.abs(grad_enc).max()) < 1e-14:
            break
    return enc, dec


def _je_gradient_ascent(second, mean_gram, k, seed=0, max_steps=50_000):
    """Gradient ascent on the trace ratio tr((WSWᵀ)⁻¹ WGWᵀ), which is invariant to W → AW, rescaling W to
    WSWᵀ = I after every step (a gauge fix, not a projection of the gradient)."""
    rng = np.random.default_rng(seed)

    def normalise(w):
        vals, vecs = np.linalg.eigh(w @ second @ w.T)
        return (vecs / np.sqrt(vals)) @ vecs.T @ w

    w = normalise(rng.standard_normal((k, second.shape[0])))
    step = 0.5 / np.linalg.eigvalsh(mean_gram)[-1]
    for _ in range(max_steps):
        grad = 2.0 * (w @ mean_gram - (w @ mean_gram @ w.T) @ w @ second)
        w = normalise(w + step * grad)
        if np.abs(grad).max() < 1e-14:
            break
    return w


# --------------------------------------------------------------------------- moments and objectives


def test_objectives_from_moments_equal_the_literal_objectives_on_views(sampled_problem):
    x, views = sampled_problem
    m = lt.augmentation_moments_from_views(x, views)
    rng = np.random.default_rng(2)
    for _ in range(3):
        enc, dec, w = rng.standard_normal((K, D)), rng.standard_normal((D, K)), rng.standard_normal((K, D))
        assert lt.reconstruction_objective(enc, dec, m) == pytest.approx(
            lt.reconstruction_objective_views(enc, dec, x, views), rel=1e-12)
        assert lt.joint_embedding_objective(w, m) == pytest.approx(lt.joint_embedding_objective_views(w, views),
                                                                   rel=1e-12)
        z = views.reshape(-1, D) @ w.T
        np.testing.assert_allclose(lt.joint_embedding_constraint(w, m), z.T @ z / z.shape[0], rtol=1e-12, atol=1e-12)


def test_streamed_monte_carlo_moments_equal_moments_of_the_same_views(sampled_problem):
    x, _ = sampled_problem
    draws = []

    def augment(batch, rng):
        view = (rng.random(batch.shape) < 0.7) * batch + 0.2 * rng.standard_normal(batch.shape)
        draws.append(view)
        return view

    streamed = lt.augmentation_moments_monte_carlo(x, augment, num_views=40, seed=5)
    batch = lt.augmentation_moments_from_views(x, np.stack(draws))
    for name in ("cross", "mean_gram", "aug_cov"):
        np.testing.assert_allclose(getattr(streamed, name), getattr(batch, name), rtol=1e-11, atol=1e-13)


def test_monte_carlo_moments_of_additive_noise_converge_to_the_exact_ones(additive_problem):
    x, noise_cov, exact = additive_problem
    factor = np.linalg.cholesky(noise_cov).T
    sampled = lt.augmentation_moments_monte_carlo(x, lambda b, rng: b + rng.standard_normal(b.shape) @ factor,
                                                  num_views=lt.DEFAULT_NUM_VIEWS, seed=0)
    # 40 × 256 noise draws: the entries of Σ have standard error ≈ 0.01; 5 σ
    np.testing.assert_allclose(sampled.aug_cov, noise_cov, atol=0.06)
    np.testing.assert_allclose(sampled.second_moment, exact.second_moment, atol=0.1)
    assert np.abs(sampled.aug_cov - noise_cov).max() > 1e-4  # really sampled, not the closed form


# --------------------------------------------------------------------------- check 1: reconstruction


@pytest.mark.parametrize("problem", ["additive", "sampled"])
def test_rc_closed_form_equals_gradient_descent(problem, additive_problem, sampled_problem):
    if problem == "additive":
        x, noise_cov, m = additive_problem
        second = x.T @ x / x.shape[0] + noise_cov
        cross, power = x.T @ x / x.shape[0], float(np.sum(x * x) / x.shape[0])
    else:
        x, views = sampled_problem
        m = lt.augmentation_moments_from_views(x, views)
        second, cross, power, _ = _plugin_statistics(x, views)
    rc = lt.reconstruction_closed_form(m, K)
    assert rc.ridge == 0.0
    phi2 = rc.singular_values**2
    assert phi2[K - 1] - phi2[K] > 0.05 * phi2[0]  # a gap: the optimum is unique, GD converges
    enc, dec = _rc_gradient_descent(second, cross, K)
    gd_objective = power - 2 * np.sum(dec @ enc * cross) + np.sum((dec @ enc @ second) * (dec @ enc))
    assert abs(rc.objective - gd_objective) <= 1e-10
    assert np.abs(rc.product - dec @ enc).max() <= 1e-10
    assert rc.objective == pytest.approx(m.data_power - phi2[:K].sum(), abs=1e-12)  # Theorem 1's optimum
    assert rc.encoder.shape == (K, D) and rc.decoder.shape == (D, K)


def test_rc_solution_is_t_invariant_and_only_the_product_is_identified(additive_problem):
    _, _, m = additive_problem
    base = lt.reconstruction_closed_form(m, K)
    t = np.random.default_rng(3).standard_normal((K, K)) + 2 * np.eye(K)
    other = lt.reconstruction_closed_form(m, K, transform=t)
    assert np.abs(other.encoder - base.encoder).max() > 0.1  # different factors ...
    np.testing.assert_allclose(other.product, base.product, atol=1e-12)  # ... same map
    assert other.objective == pytest.approx(base.objective, abs=1e-12)


def test_rc_with_torch_inputs_matches_numpy(additive_problem):
    x, noise_cov, m = additive_problem
    m_torch = lt.augmentation_moments_additive(torch.tensor(x, dtype=torch.float64), torch.tensor(noise_cov))
    np.testing.assert_array_equal(lt.reconstruction_closed_form(m_torch, K).product,
                                  lt.reconstruction_closed_form(m, K).product)


# --------------------------------------------------------------------------- check 2: joint embedding


@pytest.mark.parametrize("problem", ["additive", "sampled"])
def test_je_closed_form_constraint_loss_and_rotation_invariance(problem, additive_problem, sampled_problem):
    if problem == "additive":
        m = additive_problem[2]
        views = None
    else:
        x, views = sampled_problem
        m = lt.augmentation_moments_from_views(x, views)
    je = lt.joint_embedding_closed_form(m, K)
    assert je.weights.shape == (K, D) and je.ridge == 0.0
    np.testing.assert_allclose(je.weights @ m.second_moment @ je.weights.T, np.eye(K), rtol=0, atol=1e-12)
    assert je.loss == pytest.approx(2 * (K - je.eigenvalues[:K].sum()), abs=1e-14)
    assert lt.joint_embedding_objective(je.weights, m) == pytest.approx(je.loss, abs=1e-12)
    if views is not None:  # the literal pairwise invariance loss on the views the moments came from
        assert lt.joint_embedding_objective_views(je.weights, views) == pytest.approx(je.loss, abs=1e-12)
    u = np.linalg.qr(np.random.default_rng(4).standard_normal((K, K)))[0]
    rotated = lt.joint_embedding_closed_form(m, K, rotation=u)
    assert np.abs(rotated.weights - je.weights).max() > 0.01
    np.testing.assert_allclose(rotated.weights, u @ je.weights, atol=1e-13)
    assert lt.joint_embedding_objective(rotated.weights, m) == pytest.approx(je.loss, abs=1e-12)
    np.testing.assert_allclose(lt.joint_embedding_constraint(rotated.weights, m), np.eye(K), atol=1e-12)


@pytest.mark.parametrize("problem", ["additive", "sampled"])
def test_je_closed_form_equals_gradient_ascent_and_the_generalised_eigensolver(problem, additive_problem,
                                                                              sampled_problem):
    if problem == "additive":
        x, noise_cov, m = additive_problem
        second, mean_gram = x.T @ x / x.shape[0] + noise_cov, x.T @ x / x.shape[0]
    else:
        x, views = sampled_problem
        m = lt.augmentation_moments_from_views(x, views)
        second, _, _, mean_gram = _plugin_statistics(x, views)
    je = lt.joint_embedding_closed_form(m, K)
    assert je.eigenvalues[K - 1] - je.eigenvalues[K] > 0.02  # a gap: the optimal subspace is unique
    w = _je_gradient_ascent(second, mean_gram, K)
    gd_loss = 2 * np.sum((w @ (second - mean_gram)) * w)
    assert abs(gd_loss - je.loss) <= 1e-10
    np.testing.assert_allclose(w.T @ w, je.weights.T @ je.weights, rtol=0, atol=1e-10)  # U-invariant
    vals = scipy.linalg.eigh(mean_gram, second, eigvals_only=True)[::-1]
    np.testing.assert_allclose(je.eigenvalues, vals, atol=1e-12)


# --------------------------------------------------------------------------- ridge handling


def test_ridge_only_when_singular_and_then_the_spec_value():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((50, 4)) * np.sqrt([3.0, 2.0, 1.0, 0.0])  # the last coordinate is always 0 ...
    m = lt.augmentation_moments_additive(x, [0.2, 0.3, 0.1, 0.0])  # ... and never augmented: S is singular
    s = m.second_moment
    je = lt.joint_embedding_closed_form(m, 2)
    rc = lt.reconstruction_closed_form(m, 2)
    assert je.ridge == rc.ridge == pytest.approx(1e-10 * np.trace(s) / 4, rel=1e-12)
    assert np.all(np.isfinite(je.weights)) and np.all(np.isfinite(rc.product))
    np.testing.assert_allclose(je.weights @ s @ je.weights.T, np.eye(2), atol=1e-8)
    enc, dec = _rc_gradient_descent(s, m.cross, 2)
    assert rc.objective == pytest.approx(lt.reconstruction_objective(enc, dec, m), abs=1e-8)
    regular = lt.augmentation_moments_additive(x[:, :3], [0.2, 0.3, 0.1])
    inv, eps = lt.inverse_sqrt_psd(regular.second_moment)
    assert eps == 0.0
    np.testing.assert_allclose(inv @ regular.second_moment @ inv, np.eye(3), atol=1e-12)
    forced, eps = lt.inverse_sqrt_psd(regular.second_moment, ridge=0.5)
    assert eps == 0.5
    np.testing.assert_allclose(forced @ (regular.second_moment + 0.5 * np.eye(3)) @ forced, np.eye(3), atol=1e-12)


# --------------------------------------------------------------------------- check 3: thresholds


def test_diagonal_spectra_are_the_per_coordinate_formulas():
    rng = np.random.default_rng(7)
    gamma = np.array([2.0, 0.5, 5.0, 1.0, 0.2, 3.0])
    c = np.array([0.1, 0.02, 8.0, 0.5, 0.015, 0.3])  # no ties in either spectrum
    x = _white(64, 6, rng) * np.sqrt(gamma)
    m = lt.augmentation_moments_additive(x, c)
    for k in (1, 2, 3):
        je = lt.joint_embedding_closed_form(m, k)
        rc = lt.reconstruction_closed_form(m, k)
        np.testing.assert_allclose(je.eigenvalues, np.sort(lt.je_spectrum(gamma, c))[::-1], atol=1e-12)
        np.testing.assert_allclose(rc.singular_values**2, np.sort(lt.rc_spectrum(gamma, c))[::-1], atol=1e-12)
        # the coordinates each map reads are exactly the ones kept_coordinates names
        for weights, method in ((je.weights, "je"), (rc.encoder, "rc")):
            used = np.flatnonzero(np.abs(weights).max(axis=0) > 1e-9)
            np.testing.assert_array_equal(used, lt.kept_coordinates(gamma, c, k, method))


def test_thresholds_are_where_the_spectra_cross():
    gamma_s, c_s = 1.3, 0.2
    gamma_n = np.geomspace(0.05, 20, 30)
    je_c = lt.je_threshold(gamma_n, gamma_s, c_s)
    np.testing.assert_allclose(lt.je_spectrum(gamma_n, je_c), lt.je_spectrum(gamma_s, c_s), rtol=1e-13)
    rc_c = lt.rc_threshold(gamma_n, gamma_s, c_s)
    ok = rc_c > 0
    np.testing.assert_allclose(lt.rc_spectrum(gamma_n[ok], rc_c[ok]), lt.rc_spectrum(gamma_s, c_s), rtol=1e-12)
    # with no augmentation at all the nuisance already loses exactly where the RC threshold is negative
    assert np.array_equal(rc_c < 0, lt.rc_keeps_signal(gamma_s, c_s, gamma_n, 0.0))
    # the JE threshold is the lower one exactly when γ_n > γ_s, and they meet at (γ_s, c_s)
    assert np.array_equal(je_c < rc_c, gamma_n > gamma_s)
    assert lt.je_threshold(gamma_s, gamma_s, c_s) == pytest.approx(c_s)
    assert lt.rc_threshold(gamma_s, gamma_s, c_s) == pytest.approx(c_s)


def test_margins_are_the_inequalities_signed_and_have_one_home():
    gamma_s, c_s = 1.3, 0.2
    gamma_n, c_n = np.meshgrid(np.geomspace(0.05, 20, 25), np.r_[0.0, np.geomspace(1e-3, 50, 24)], indexing="ij")
    for margin, keeps, threshold in ((lt.je_margin, lt.je_keeps_signal, lt.je_threshold),
                                     (lt.rc_margin, lt.rc_keeps_signal, lt.rc_threshold)):
        m = margin(gamma_s, c_s, gamma_n, c_n)
        assert np.all(np.abs(m) <= 1) and np.array_equal(m > 0, keeps(gamma_s, c_s, gamma_n, c_n))
        on_line = threshold(gamma_n[:, 0], gamma_s, c_s)
        ok = on_line > 0
        np.testing.assert_allclose(margin(gamma_s, c_s, gamma_n[ok, 0], on_line[ok]), 0.0, atol=1e-12)
    assert lt.je_margin(gamma_s, c_s, 0.0, 0.0) == 0.0  # both sides 0: no margin, not a division by zero
    # sslkit.theory.linear re-exports every formula as the same object (one home per formula)
    from sslkit.theory import linear as tl

    assert all(getattr(tl, name) is getattr(lt, name) for name in lt.__all__)


def test_threshold_sweep_follows_the_inequalities_with_the_crossover_at_gamma_s():
    """Check 3 straight on the closed forms: signal and nuisance coordinates in a rotated basis; the
    subspace each map selects over a (γ_n, c_n) grid. The grid avoids exact ties (c_n/γ_n ≠ c_s/γ_s)."""
    gamma_s, c_s = 1.0, 0.1
    rng = np.random.default_rng(8)
    rot = _orthogonal(2, rng)
    base = _white(32, 2, rng)
    gamma_grid = np.geomspace(0.1, 10, 21)
    c_grid = np.geomspace(1e-3, 1e3, 27) * 1.07
    je_sel = np.zeros((21, 27), dtype=bool)
    rc_sel = np.zeros_like(je_sel)
    for i, g in enumerate(gamma_grid):
        for j, c in enumerate(c_grid):
            x = base * np.sqrt([gamma_s, g]) @ rot.T
            m = lt.augmentation_moments_additive(x, rot @ np.diag([c_s, c]) @ rot.T)
            je_sel[i, j] = lt.subspace_overlap(lt.joint_embedding_closed_form(m, 1).weights, rot[:, :1]) > 0.5
            rc_sel[i, j] = lt.subspace_overlap(lt.reconstruction_closed_form(m, 1).encoder, rot[:, :1]) > 0.5
    gn, cn = np.meshgrid(gamma_grid, c_grid, indexing="ij")
    np.testing.assert_array_equal(je_sel, cn > gn * c_s / gamma_s)
    np.testing.assert_array_equal(rc_sel, cn > gn**2 * (gamma_s + c_s) / gamma_s**2 - gn)
    je_only, rc_only = je_sel & ~rc_sel, rc_sel & ~je_sel
    assert je_only.any() and rc_only.any()
    assert np.all(gamma_grid[je_only.any(axis=1)] > gamma_s)  # JE needs less alignment only above γ_s ...
    assert np.all(gamma_grid[rc_only.any(axis=1)] < gamma_s)  # ... RC only below
    assert not (je_only | rc_only)[gamma_grid == gamma_s].any()  # at γ_n = γ_s they need the same


def test_subspace_overlap_euclidean_and_data_weighted():
    rng = np.random.default_rng(9)
    rot = _orthogonal(3, rng)
    signal = rot[:, :1]
    assert lt.subspace_overlap(rng.standard_normal((1, 3)) @ np.outer(signal, signal), signal) == pytest.approx(1.0)
    assert lt.subspace_overlap(rot[:, 1:].T, signal) == pytest.approx(0.0, abs=1e-15)
    # a feature leaning towards the signal (cos² = 0.5 in input space) whose output is mostly a large
    # irrelevant coordinate (variance 9): a probe recovers only 1/(1 + 9) of the signal's variance
    feature = (rot[:, 0] + rot[:, 1])[None]
    gamma = rot @ np.diag([1.0, 9.0, 1.0]) @ rot.T
    assert lt.subspace_overlap(feature, signal) == pytest.approx(0.5)
    assert lt.subspace_overlap(feature, signal, gamma) == pytest.approx(0.1)
    # Monte Carlo check of the probe reading: R² of least squares of the signal on the feature
    x = rng.standard_normal((200_000, 3)) @ np.linalg.cholesky(gamma).T
    z, s = x @ feature.T, x @ signal
    coef = np.linalg.lstsq(z, s, rcond=None)[0]
    assert 1 - np.sum((s - z @ coef) ** 2) / np.sum(s**2) == pytest.approx(0.1, abs=0.01)


# --------------------------------------------------------------------------- check 4: finite n


def test_finite_n_probe_supervised_reaches_the_optimum_ssl_only_above_its_threshold():
    """γ_n = 10 γ_s: JE's threshold is c_n > 1, RC's c_n > 100. Alignments 0.1 (below both), 10 (between)
    and 1000 (above both); n from 16 to 4096; optimum (Bayes) accuracy 1."""
    result = probe_experiment(gamma_s=1.0, c_s=0.1, gamma_n=10.0, c_n=(0.1, 10.0, 1000.0),
                              n_values=(16, 256, 4096), n_nuisance=8, trials=3, seed=0)
    sup, je, rc = (result.accuracy[m] for m in ("supervised", "joint_embedding", "reconstruction"))
    assert np.all(sup[:, -1] > 0.98)  # supervised: near the optimum at every alignment with enough n
    assert sup[0, -1] - sup[0, 0] > 0.1  # ... reached by growing n when the augmentations are misaligned
    assert np.all(np.abs(je[0] - 0.5) < 0.05) and np.all(np.abs(rc[0] - 0.5) < 0.05)  # below: chance at any n
    assert je[1, -1] > 0.98 and abs(rc[1, -1] - 0.5) < 0.05  # between: JE recovers the signal, RC does not
    assert je[2, -1] > 0.98 and rc[2, -1] > 0.98  # above both: both do
