"""Centroids c(x) = J^T 1, centroid alignment and the PC1 diagnostic (spec grokalign.md steps 2-5)."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import jacrev

from sslkit.functional.jacobian import (alignment_from_centroids, centroid_alignment, centroid_stats, centroids,
                                        jacobian_pc1)


def relu_mlp_no_bias(d_in=20, width=32, d_out=5, depth=3, seed=0):
    torch.manual_seed(seed)
    layers, d = [], d_in
    for _ in range(depth):
        layers += [nn.Linear(d, width, bias=False), nn.ReLU()]
        d = width
    layers.append(nn.Linear(d, d_out, bias=False))
    return nn.Sequential(*layers).double()


def test_vjp_centroid_equals_summed_jacobian_rows():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(6, 9), nn.GELU(), nn.Linear(9, 4)).double()
    x = torch.randn(5, 6, dtype=torch.float64)
    expected = torch.stack([jacrev(model)(xi).sum(0) for xi in x])
    torch.testing.assert_close(centroids(model, x), expected, rtol=1e-12, atol=1e-12)


def test_centroid_of_image_shaped_inputs_keeps_the_shape():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 4 * 4, 2)).double()
    x = torch.randn(3, 1, 6, 6, dtype=torch.float64)
    c = centroids(model, x)
    assert c.shape == x.shape
    dense = torch.stack([jacrev(lambda z: model(z[None])[0])(xi).sum(0) for xi in x])
    torch.testing.assert_close(c, dense, rtol=1e-12, atol=1e-12)


def test_bias_free_relu_inner_product_is_the_summed_output():
    model = relu_mlp_no_bias()
    x = torch.randn(64, 20, dtype=torch.float64)
    stats = centroid_stats(model, x)
    summed = model(x).sum(dim=1).detach()
    assert summed.abs().max() > 0.1  # not trivially zero
    assert (stats.inner_product - summed).abs().max().item() < 1e-10
    # With a bias the network is no longer homogeneous and the identity breaks.
    torch.manual_seed(0)
    biased = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 5)).double()
    with torch.no_grad():
        biased[0].bias.fill_(0.5)
    assert (centroid_stats(biased, x).inner_product - biased(x).sum(1)).abs().max() > 1e-3


def test_alignment_matches_a_numpy_cosine_and_is_scale_invariant():
    model = relu_mlp_no_bias()
    x = torch.randn(16, 20, dtype=torch.float64)
    stats = centroid_stats(model, x)
    c, xn = stats.centroid.numpy(), x.numpy()
    cos = (c * xn).sum(1) / (np.linalg.norm(c, axis=1) * np.linalg.norm(xn, axis=1))
    np.testing.assert_allclose(stats.alignment.numpy(), cos, rtol=1e-12)
    np.testing.assert_allclose(stats.norm.numpy(), np.linalg.norm(c, axis=1), rtol=1e-12)
    # Positive homogeneity: J is constant along rays, so c(3x) = c(x) and the alignment is unchanged.
    torch.testing.assert_close(centroid_alignment(model, 3.0 * x), stats.alignment, rtol=1e-12, atol=1e-12)
    # and flipping the input flips the inner product of a linear map's centroid
    lin = nn.Linear(20, 5, bias=False).double()
    torch.testing.assert_close(centroid_alignment(lin, -x), -centroid_alignment(lin, x))


def test_alignment_floor_for_zero_input():
    a, norm, inner = alignment_from_centroids(torch.ones(2, 3), torch.zeros(2, 3))
    assert torch.equal(a, torch.zeros(2)) and torch.equal(inner, torch.zeros(2))
    torch.testing.assert_close(norm, torch.full((2,), 3 ** 0.5))


def test_centroids_work_under_no_grad_and_leave_parameter_grads_alone():
    model = relu_mlp_no_bias()
    x = torch.randn(4, 20, dtype=torch.float64)
    with torch.no_grad():
        stats = centroid_stats(model, x)
    assert stats.centroid.abs().sum() > 0 and not stats.centroid.requires_grad
    assert all(p.grad is None for p in model.parameters())
    assert not x.requires_grad


def test_pc1_of_a_linear_map_is_its_spectral_share():
    torch.manual_seed(3)
    A = torch.randn(4, 7, dtype=torch.float64)
    s = np.linalg.svd(A.numpy(), compute_uv=False)
    x = torch.randn(5, 7, dtype=torch.float64)
    pc1 = jacobian_pc1(lambda z: z @ A.T, x)
    np.testing.assert_allclose(pc1.numpy(), np.full(5, s[0] ** 2 / (s ** 2).sum()), rtol=1e-10)
    u, v = torch.randn(4, 1, dtype=torch.float64), torch.randn(1, 7, dtype=torch.float64)
    assert jacobian_pc1(lambda z: z @ (u @ v).T, x).sub(1).abs().max() < 1e-12  # rank one


def test_pc1_uses_at_most_max_samples():
    model = relu_mlp_no_bias()
    pc1 = jacobian_pc1(model, torch.randn(10, 20, dtype=torch.float64), max_samples=3)
    assert pc1.shape == (3,)
    assert ((pc1 > 0) & (pc1 <= 1 + 1e-12)).all()
    assert 1 / 5 - 1e-12 <= pc1.min()  # s1^2 is at least the mean over the C = 5 singular values


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_is_kept(dtype):
    model = nn.Linear(3, 2).to(dtype)
    assert centroid_stats(model, torch.randn(2, 3, dtype=dtype)).alignment.dtype == dtype
