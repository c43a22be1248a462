"""GrokAlign regulariser: random-projection Jacobian-norm estimate (spec grokalign.md step 1)."""

import math

import pytest
import torch
from torch import nn
from torch.func import functional_call, jacrev

from sslkit.functional.jacobian import (jacobian_norm_estimate, jacobian_penalty, per_sample_jacobian,
                                        random_unit_projections)


def tanh_mlp(d_in=6, width=8, d_out=4, seed=0):
    # No output bias: it shifts f without changing J, so no Jacobian penalty can reach it.
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d_in, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(),
                         nn.Linear(width, d_out, bias=False)).double()


def test_projections_are_unit_vectors_per_sample():
    v = random_unit_projections(3, 5, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert v.shape == (3, 5, 7)
    torch.testing.assert_close(v.norm(dim=-1), torch.ones(3, 5, dtype=torch.float64))
    assert not torch.allclose(v[0, 0], v[0, 1])  # independent draws per sample


def test_linear_map_estimate_converges_to_frobenius_norm():
    gen = torch.Generator().manual_seed(0)
    A = torch.randn(10, 12, generator=gen, dtype=torch.float64)
    x = torch.randn(1, 12, dtype=torch.float64)
    frob2 = A.pow(2).sum().item()
    # 10^4 single-projection estimates (one per copy of x), each unbiased for ||A||_F^2.
    r = jacobian_norm_estimate(lambda z: z @ A.T, x.expand(10_000, -1), 1, generator=gen, create_graph=False)
    mean_r2 = r.pow(2).mean().item()
    assert abs(mean_r2 / frob2 - 1) < 0.02
    # A single estimate is noisy: the 2 % agreement is a property of the average, not of any draw.
    assert r.pow(2).std().item() / frob2 > 0.1
    # n_p = 2000 projections on one sample (one VJP each): the (C/n_p) scaling averages them inside R.
    r_many = jacobian_norm_estimate(lambda z: z @ A.T, x, 2_000, generator=gen, create_graph=False)
    assert abs(r_many.pow(2).item() / frob2 - 1) < 0.02


def test_estimate_matches_dense_jacobian_for_fixed_projections():
    model = tanh_mlp()
    x = torch.randn(5, 6, dtype=torch.float64)
    v = random_unit_projections(3, 5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    jac = torch.stack([jacrev(lambda z: model(z))(xi) for xi in x])  # (B, C, D)
    expected = ((4 / 3) * torch.einsum("pbc,bcd->pbd", v, jac).pow(2).sum(dim=(0, 2))).sqrt()
    got = jacobian_norm_estimate(model, x, projections=v)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(per_sample_jacobian(model, x), jac, rtol=1e-12, atol=1e-12)


def test_penalty_is_the_mean_of_norms_not_of_squares():
    # C = 1: v = +-1, so R(x) = ||a|| exactly, whatever the draw; P is its mean, not its square.
    a = torch.tensor([[3.0, 4.0]], dtype=torch.float64)
    x = torch.randn(7, 2, dtype=torch.float64)
    p = jacobian_penalty(lambda z: z @ a.T, x, n_projections=3)
    assert p.item() == pytest.approx(5.0, rel=1e-12)
    # Per-sample norms of a map whose Jacobian depends on x: P is the plain batch mean of R.
    model = tanh_mlp()
    x = torch.randn(6, 6, dtype=torch.float64)
    v = random_unit_projections(2, 6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    r = jacobian_norm_estimate(model, x, projections=v)
    assert r.std() > 0
    assert jacobian_penalty(model, x, projections=v).item() == pytest.approx(r.mean().item(), rel=1e-12)


def test_floor_keeps_a_flat_model_finite():
    w = torch.zeros(3, 4, dtype=torch.float64, requires_grad=True)
    r = jacobian_norm_estimate(lambda z: z @ w.T, torch.randn(2, 4, dtype=torch.float64))
    torch.testing.assert_close(r, torch.full((2,), math.sqrt(1e-8), dtype=torch.float64))
    r.mean().backward()
    assert torch.isfinite(w.grad).all()


def test_penalty_reaches_every_parameter():
    model = tanh_mlp()
    x = torch.randn(8, 6, dtype=torch.float64)
    jacobian_penalty(model, x).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        # A tanh network's Jacobian depends on every weight and bias.
        assert p.grad.abs().max() > 0, name


def test_penalty_gradient_matches_finite_differences():
    model = tanh_mlp(d_in=3, width=4, d_out=2)
    x = torch.randn(4, 3, dtype=torch.float64)
    v = random_unit_projections(2, 4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    params = {k: p.detach() for k, p in model.named_parameters()}
    names = list(params)

    def penalty_of(*tensors):
        call = lambda z: functional_call(model, dict(zip(names, tensors)), (z,))
        return jacobian_penalty(call, x, projections=v)

    inputs = tuple(params[k].clone().requires_grad_(True) for k in names)
    assert torch.autograd.gradcheck(penalty_of, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


def test_vmap_mode_equals_batched_mode_and_gradients():
    model = tanh_mlp()
    x = torch.randn(5, 6, dtype=torch.float64)
    v = random_unit_projections(2, 5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    batched = jacobian_penalty(model, x, projections=v)
    grads_b = torch.autograd.grad(batched, list(model.parameters()))
    vmapped = jacobian_penalty(model, x, projections=v, per_sample="vmap")
    grads_v = torch.autograd.grad(vmapped, list(model.parameters()))
    torch.testing.assert_close(vmapped, batched, rtol=1e-12, atol=1e-12)
    for gb, gv in zip(grads_b, grads_v):
        torch.testing.assert_close(gv, gb, rtol=1e-10, atol=1e-12)


def test_vmap_mode_keeps_samples_apart_under_a_cross_sample_op():
    # A model that mixes samples (subtracts the batch mean): the batched VJP of the summed outputs
    # then is not the per-sample Jacobian, vmap of vjp is (each sample alone has zero output).
    w = torch.randn(3, 4, dtype=torch.float64)
    mixing = lambda z: (z - z.mean(0, keepdim=True)) @ w.T
    x = torch.randn(6, 4, dtype=torch.float64)
    v = random_unit_projections(1, 6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    per_sample = jacobian_norm_estimate(mixing, x, projections=v, per_sample="vmap")
    torch.testing.assert_close(per_sample, torch.full((6,), 1e-4, dtype=torch.float64))
    batched = jacobian_norm_estimate(mixing, x, projections=v)
    assert (batched > 1e-2).all()


def test_embedding_input_passes_the_penalty_gradient_upstream():
    emb = nn.Embedding(5, 4).double()
    head = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    tokens = torch.tensor([0, 1, 2, 3])
    jacobian_penalty(head, emb(tokens)).backward()
    assert emb.weight.grad[:4].abs().sum(dim=1).min() > 0  # rows used reached through x
    assert emb.weight.grad[4].abs().sum() == 0


def test_bad_arguments_say_what_is_wrong():
    with pytest.raises(ValueError, match="per_sample"):
        jacobian_penalty(nn.Linear(2, 2), torch.randn(3, 2), per_sample="loop")
    with pytest.raises(ValueError, match=r"\(n_p, B=3, C\)"):
        jacobian_penalty(nn.Linear(2, 2), torch.randn(3, 2), projections=torch.randn(1, 2, 2))
    with pytest.raises(ValueError, match="n_projections"):
        jacobian_penalty(nn.Linear(2, 2), torch.randn(3, 2), n_projections=0)


def test_from_outputs_shares_the_forward_and_equals_the_estimate():
    from sslkit.functional.jacobian import jacobian_norm_from_outputs

    model = tanh_mlp()
    x = torch.randn(5, 6, dtype=torch.float64)
    v = random_unit_projections(2, 5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    x_leaf = x.clone().requires_grad_(True)
    shared = jacobian_norm_from_outputs(model(x_leaf), x_leaf, projections=v)
    torch.testing.assert_close(shared, jacobian_norm_estimate(model, x, projections=v), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="require grad before"):
        jacobian_norm_from_outputs(model(x), x)


def test_penalty_through_vit_attention_reaches_the_backbone():
    # Fused attention kernels cannot be differentiated twice; the estimate must route around them.
    from sslkit.nn.vit import build_vit

    torch.manual_seed(0)
    vit = build_vit("vit_tiny", depth=1, embed_dim=32, num_heads=2, img_size=16, patch_size=8, layerscale_init=None)
    jacobian_penalty(vit, torch.randn(3, 3, 16, 16)).backward()
    no_grad = {n for n, p in vit.named_parameters() if p.grad is None or p.grad.abs().max() == 0}
    # mask_token is unused without masks; the final LayerNorm's bias shifts f without changing J.
    assert no_grad == {"mask_token", "norm.bias"}


def test_grokalign_objective_is_task_loss_plus_lam_times_the_penalty():
    from sslkit.functional.jacobian import differentiable_forward, grokalign_objective

    model = tanh_mlp()
    x, y = torch.randn(5, 6, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64)
    inputs, outputs = differentiable_forward(model, x)
    assert inputs.requires_grad and not x.requires_grad
    task = nn.functional.mse_loss(outputs, y)
    objective, penalty = grokalign_objective(task, outputs, inputs, 0.3, 2, generator=torch.Generator().manual_seed(4))
    expected = jacobian_penalty(model, x, 2, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(penalty, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(objective, task + 0.3 * expected, rtol=1e-12, atol=1e-12)
    # differentiable w.r.t. the parameters (the penalty through a double backward)
    objective.backward()
    assert all(p.grad is not None and p.grad.abs().max() > 0 for p in model.parameters())


def test_centroid_summary_is_the_batch_means_of_the_centroid_statistics():
    from sslkit.functional.jacobian import centroid_stats, centroid_summary

    model, x = tanh_mlp(), torch.randn(7, 6, dtype=torch.float64)
    stats, summary = centroid_stats(model, x), centroid_summary(model, x)
    assert summary == {"alignment": float(stats.alignment.mean()), "norm": float(stats.norm.mean()),
                       "inner_product": float(stats.inner_product.mean())}
