"""NT-Xent against a direct loop over anchors, and known values."""

import math

import pytest
import torch
import torch.nn.functional as F

from sslkit.functional.contrastive import nt_xent_loss


def loop_nt_xent(z1, z2, tau):
    """Eq. (1) of arXiv 2002.05709 written anchor by anchor."""
    z = F.normalize(torch.cat([z1, z2]).double(), dim=1)
    n = z.shape[0]
    b = n // 2
    total = 0.0
    for i in range(n):
        j = i + b if i < b else i - b
        denom = sum(math.exp(float(z[i] @ z[k]) / tau) for k in range(n) if k != i)
        total += -math.log(math.exp(float(z[i] @ z[j]) / tau) / denom)
    return total / n


def test_matches_the_anchor_by_anchor_formula():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    for tau in (0.1, 0.5, 1.0):
        assert nt_xent_loss(z1, z2, tau).item() == pytest.approx(loop_nt_xent(z1, z2, tau), rel=1e-5)


def test_orthonormal_views_give_the_closed_form():
    # z1 = z2 = e_1..e_B: the positive similarity is 1, every negative 0 (or 1 for... none here).
    b, tau = 4, 0.2
    z = torch.eye(8)[:b]
    expected = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + (2 * b - 2)))
    assert nt_xent_loss(z, z.clone(), tau).item() == pytest.approx(expected, rel=1e-6)


def test_invariant_to_positive_rescaling_and_rotation():
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(8, 6, generator=g), torch.randn(8, 6, generator=g)
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=g))
    scale = torch.rand(8, 1, generator=g) + 0.1
    base = nt_xent_loss(z1, z2, 0.3)
    assert nt_xent_loss(z1 * scale, (z2 @ q) @ q.T * 3.0, 0.3).item() == pytest.approx(base.item(), rel=1e-5)


def test_gradient_reaches_both_views_and_bad_input_is_named():
    z1 = torch.randn(4, 3, requires_grad=True)
    z2 = torch.randn(4, 3, requires_grad=True)
    nt_xent_loss(z1, z2).backward()
    assert z1.grad.abs().sum() > 0 and z2.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="equal shape"):
        nt_xent_loss(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match="temperature"):
        nt_xent_loss(torch.randn(4, 3), torch.randn(4, 3), temperature=0.0)
