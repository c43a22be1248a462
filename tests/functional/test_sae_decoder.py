"""Closed-form decoder of PAM-SGD: stationarity, lstsq agreement, descent, modes and proximal terms."""

import torch

from sslkit.functional.sae_decoder import (
    add_normal_equations,
    decoder_normal_equations,
    pull_decoder_bias,
    ridge_decoder,
    solve_decoder_joint,
    solve_decoder_mean_residual,
)


def _sparse_codes(n=600, m=32, d=10, k=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, m, generator=g, dtype=torch.float64)
    keep = z.topk(k, dim=1).indices
    codes = torch.zeros_like(z).scatter(1, keep, z.gather(1, keep))
    x = codes @ torch.randn(m, d, generator=g, dtype=torch.float64) + 0.3 * torch.randn(n, d, generator=g, dtype=torch.float64) + 1.5
    return codes, x, g


def _loss(codes, x, w, b):
    return (codes @ w + b - x).pow(2).mean()


def test_joint_solve_without_ridge_matches_lstsq_on_codes_with_a_ones_column():
    codes, x, _ = _sparse_codes()
    w, b = solve_decoder_joint(decoder_normal_equations(codes, x), ridge=0.0)
    z1 = torch.cat([codes, torch.ones(codes.shape[0], 1, dtype=codes.dtype)], 1)
    reference = torch.linalg.lstsq(z1, x).solution
    assert torch.allclose(w, reference[:-1], atol=1e-9) and torch.allclose(b, reference[-1], atol=1e-9)


def test_after_the_decoder_step_the_decoder_gradient_vanishes():
    codes, x, _ = _sparse_codes(seed=1)
    w, b = solve_decoder_joint(decoder_normal_equations(codes, x), ridge=1e-6)
    w.requires_grad_(True)
    b.requires_grad_(True)
    _loss(codes, x, w, b).backward()
    gradient = torch.cat([w.grad.flatten(), b.grad])
    assert gradient.norm() < 1e-6 * w.detach().norm()
    # with ε = 1e-6 it still agrees with the exact least-squares solution
    reference = torch.linalg.lstsq(torch.cat([codes, torch.ones(len(codes), 1, dtype=codes.dtype)], 1), x).solution
    assert torch.allclose(w.detach(), reference[:-1], rtol=1e-5, atol=1e-7)


def test_full_batch_loss_does_not_increase_across_the_decoder_step():
    codes, x, g = _sparse_codes(seed=2)
    eq = decoder_normal_equations(codes, x)
    w_opt, b_opt = solve_decoder_joint(eq, ridge=1e-6)
    previous = [(0.01 * torch.randn(32, 10, generator=g, dtype=torch.float64), torch.zeros(10, dtype=torch.float64)),
                (w_opt + 1e-4 * torch.randn(32, 10, generator=g, dtype=torch.float64), b_opt),
                (w_opt, b_opt)]
    after = _loss(codes, x, w_opt, b_opt)
    for w_prev, b_prev in previous:
        assert after <= _loss(codes, x, w_prev, b_prev) * (1 + 1e-12)
    # a strict decrease from a random decoder
    assert after < 0.5 * _loss(codes, x, *previous[0])


def test_statistics_add_up_over_chunks():
    codes, x, _ = _sparse_codes(seed=3)
    whole = decoder_normal_equations(codes, x)
    parts = None
    for start in range(0, 600, 170):
        parts = add_normal_equations(parts, decoder_normal_equations(codes[start:start + 170], x[start:start + 170]))
    for a, b in zip(whole[:4], parts[:4]):
        assert torch.allclose(a, b, atol=1e-9)
    assert whole.count == parts.count == 600


def test_mean_residual_mode_sets_the_bias_to_the_mean_residual_and_is_never_better_than_joint():
    codes, x, _ = _sparse_codes(seed=4)
    eq = decoder_normal_equations(codes, x)
    w_mr, b_mr = solve_decoder_mean_residual(eq, ridge=1e-6)
    assert torch.allclose(b_mr, (x - codes @ w_mr).mean(0), atol=1e-10)
    w_j, b_j = solve_decoder_joint(eq, ridge=1e-6)
    assert _loss(codes, x, w_j, b_j) < _loss(codes, x, w_mr, b_mr)  # codes have non-zero means here
    # with centred codes the two modes coincide
    centred = codes - codes.mean(0)
    eq_c = decoder_normal_equations(centred, x)
    w_a, b_a = solve_decoder_joint(eq_c, ridge=1e-6)
    w_b, b_b = solve_decoder_mean_residual(eq_c, ridge=1e-6)
    assert torch.allclose(w_a, w_b, atol=1e-8) and torch.allclose(b_a, b_b, atol=1e-8)


def test_proximal_solve_satisfies_its_normal_equations_and_a_strong_pull_keeps_the_previous_decoder():
    codes, x, g = _sparse_codes(seed=5)
    eq = decoder_normal_equations(codes, x)
    previous = torch.randn(32, 10, generator=g, dtype=torch.float64)
    eps, alpha, mu = 1e-6, 1e-3, 5.0
    w, _ = solve_decoder_mean_residual(eq, eps, previous=previous, pull=mu, weight_decay=alpha)
    lhs = (codes.t() @ codes + (eps + alpha + mu) * torch.eye(32, dtype=torch.float64)) @ w
    assert torch.allclose(lhs, codes.t() @ x + mu * previous, atol=1e-8)
    w_far, _ = solve_decoder_joint(eq, eps, previous=previous, pull=1e9)
    assert torch.allclose(w_far, previous, atol=1e-5)
    b = torch.tensor([1.0, -2.0], dtype=torch.float64)
    b_prev = torch.tensor([3.0, 0.0], dtype=torch.float64)
    assert torch.allclose(pull_decoder_bias(b, b_prev, pull=1.0, decay=1.0), ((b + b_prev) / 2) / 2)


def test_dead_latent_without_ridge_gets_the_minimum_norm_solution():
    codes, x, _ = _sparse_codes(seed=6)
    codes[:, 7] = 0.0  # a latent that never fires makes ZᵀZ singular
    w, b = solve_decoder_joint(decoder_normal_equations(codes, x), ridge=0.0)
    assert torch.isfinite(w).all() and w[7].abs().max() < 1e-8
    reference = torch.linalg.lstsq(torch.cat([codes, torch.ones(len(codes), 1, dtype=codes.dtype)], 1), x,
                                   driver="gelsd").solution
    assert torch.allclose(w, reference[:-1], atol=1e-8)


def test_float32_convenience_returns_the_input_dtype():
    codes, x, _ = _sparse_codes(seed=7)
    w, b = ridge_decoder(codes.float(), x.float())
    assert w.dtype == torch.float32 and b.dtype == torch.float32
    w64, b64 = solve_decoder_joint(decoder_normal_equations(codes, x))
    assert torch.allclose(w.double(), w64, atol=1e-4)
