"""Potts prefix sampler: blobs at low temperature, uniform labels at high temperature, the conditional."""

import math

import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from sslkit.functional.potts_sampler import kernel_factors, potts_prefix_sample


def _triangle_blobs(per_blob=100, seed=0):
    g = torch.Generator().manual_seed(seed)
    vertices = 5.0 * torch.tensor([[0.0, 1.0], [math.sqrt(3) / 2, -0.5], [-math.sqrt(3) / 2, -0.5]])
    truth = torch.arange(3).repeat_interleave(per_blob)
    return vertices[truth] + 0.3 * torch.randn(3 * per_blob, 2, generator=g), truth


def test_low_temperature_recovers_the_blobs():
    points, truth = _triangle_blobs()
    tasks = potts_prefix_sample(points, num_classes=3, temperature=0.01, num_tasks=10, seed=0)
    assert tasks.shape == (10, 300) and tasks.dtype == torch.long
    for labels in tasks:
        assert adjusted_rand_score(truth.numpy(), labels.numpy()) >= 0.95


def test_high_temperature_gives_uniform_labels():
    points, truth = _triangle_blobs()
    tasks = potts_prefix_sample(points, num_classes=3, temperature=1e6, num_tasks=10, seed=1)
    n, q = points.shape[0], 3
    bound = 4 * math.sqrt((1 / q) * (1 - 1 / q) / n)
    for labels in tasks:
        assert abs(adjusted_rand_score(truth.numpy(), labels.numpy())) < 0.05
        proportions = torch.bincount(labels, minlength=q).double() / n
        assert ((proportions - 1 / q).abs() < bound).all()


def test_second_draw_follows_the_potts_conditional():
    # Two points: the second joins the first one's class with probability e^{β b₁·b₂} / (e^{β b₁·b₂} + q − 1).
    b = torch.tensor([[1.0, 0.5], [0.8, -0.2]])
    beta, q = 2.0, 3
    tasks = potts_prefix_sample(b, num_classes=q, temperature=1 / beta, num_tasks=40_000, center=False, seed=3)
    same = (tasks[:, 0] == tasks[:, 1]).double().mean()
    a = beta * float(b[0] @ b[1])
    expected = math.exp(a) / (math.exp(a) + q - 1)
    assert abs(float(same) - expected) < 4 * math.sqrt(expected * (1 - expected) / 40_000)
    # The first drawn point is uniform over the classes.
    assert abs(float((tasks[:, 0] == 0).double().mean()) - 1 / q) < 0.01


def test_seeded_and_tasks_differ():
    points, _ = _triangle_blobs(per_blob=20)
    a = potts_prefix_sample(points, 2, 1.0, num_tasks=5, seed=7)
    assert torch.equal(a, potts_prefix_sample(points, 2, 1.0, num_tasks=5, seed=7))
    assert not torch.equal(a, potts_prefix_sample(points, 2, 1.0, num_tasks=5, seed=8))
    assert len({tuple(t.tolist()) for t in potts_prefix_sample(points, 2, 3.0, num_tasks=8, seed=0)}) > 1


def test_kernel_factors_reproduce_the_centred_kernel():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(40, 6, generator=g)
    k = f.double() @ f.double().T
    z = kernel_factors(k)
    kc = k - k.mean(0, keepdim=True)
    kc = kc - kc.mean(1, keepdim=True)
    assert z.shape == (40, 6)  # rank of the centred kernel
    assert torch.allclose(z @ z.T, kc, atol=1e-9)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="num_classes"):
        potts_prefix_sample(torch.randn(5, 2), num_classes=1)
    with pytest.raises(ValueError, match="temperature"):
        potts_prefix_sample(torch.randn(5, 2), num_classes=2, temperature=0)
