"""Tests for sslkit.nn.heads.DINOHead."""

import pytest
import torch

from sslkit.nn.heads import DINOHead


@pytest.mark.parametrize("nlayers", [1, 2, 3])
def test_shape_and_structure(nlayers):
    head = DINOHead(24, out_dim=50, hidden_dim=40, bottleneck_dim=16, nlayers=nlayers)
    assert head(torch.randn(7, 24)).shape == (7, 50)
    linears = [m for m in head.mlp.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == nlayers
    assert linears[-1].out_features == 16
    for lin in linears:
        assert torch.count_nonzero(lin.bias) == 0
        assert 0.015 < lin.weight.std() < 0.025  # trunc-normal(0.02)


def test_last_layer_weight_norm_g_trainable():
    torch.manual_seed(0)
    head = DINOHead(24, out_dim=50, hidden_dim=40, bottleneck_dim=16)
    named = dict(head.named_parameters())
    g = head.last_layer.parametrizations.weight.original0
    assert g.shape == (50, 1) and g.requires_grad and torch.equal(g, torch.ones_like(g))
    assert all("last_layer" in n for n in named if "original" in n)
    assert sum("last_layer" in n for n in named) == 2
    assert torch.allclose(head.last_layer.weight.norm(dim=1), torch.ones(50), atol=1e-6)
    with torch.no_grad():
        g.mul_(torch.linspace(0.5, 2.0, 50)[:, None])
        head.last_layer.parametrizations.weight.original1.mul_(3.0)  # direction unchanged
    assert torch.allclose(head.last_layer.weight.norm(dim=1), g[:, 0], atol=1e-6)


def test_output_is_prototype_cosine_times_g():
    head = DINOHead(24, out_dim=30, hidden_dim=40, bottleneck_dim=16)
    x = torch.randn(5, 24)
    z = torch.nn.functional.normalize(head.mlp(x), dim=-1)
    v = head.last_layer.parametrizations.weight.original1
    assert torch.allclose(head(x), z @ torch.nn.functional.normalize(v, dim=1).T, atol=1e-6)
    assert head(x).abs().max() <= 1 + 1e-5  # |cos| <= 1 with g = 1


def test_gradients_reach_every_parameter():
    head = DINOHead(24, out_dim=30, hidden_dim=40, bottleneck_dim=16, nlayers=3)
    torch.manual_seed(1)
    (head(torch.randn(6, 24)) * torch.randn(6, 30)).sum().backward()
    for name, p in head.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_zero_input_is_finite():
    head = DINOHead(8, out_dim=10, hidden_dim=12, bottleneck_dim=4, nlayers=1)
    with torch.no_grad():
        head.mlp.weight.zero_()
    assert torch.isfinite(head(torch.zeros(2, 8))).all()
