import math

import pytest
import torch
import torch.nn.functional as F

from sslkit.functional.koleo import koleo_loss


def test_antipodal_points_give_minus_ln_2():
    x = torch.tensor([[3.0, 0.0, 0.0], [-0.5, 0.0, 0.0]])  # norms differ: normalised inside
    assert koleo_loss(x).item() == pytest.approx(-math.log(2.0), abs=1e-6)


def test_three_points_hand_computed():
    # Unit vectors at 0, 60 and 180 degrees: nearest distances 1, 1 and sqrt(3)
    # (chords 2 sin(30deg), 2 sin(30deg), 2 sin(60deg)); loss = -(0 + 0 + ln sqrt 3) / 3.
    angles = torch.tensor([0.0, 60.0, 180.0], dtype=torch.float64) * math.pi / 180
    norms = torch.tensor([[1.0], [2.0], [5.0]], dtype=torch.float64)  # normalised away inside
    x = torch.stack([torch.cos(angles), torch.sin(angles)], dim=1) * norms
    assert koleo_loss(x).item() == pytest.approx(-math.log(3.0) / 6.0, abs=1e-7)


def test_matches_reference_formulation_on_generic_inputs():
    # The reference excludes self with -1 on the diagonal; on generic data the two agree.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 8, generator=g)
    x_hat = F.normalize(x, dim=-1, eps=1e-8)
    dots = x_hat @ x_hat.t()
    dots.fill_diagonal_(-1.0)
    nearest = dots.argmax(1)
    expected = -torch.log(F.pairwise_distance(x_hat, x_hat[nearest], eps=1e-8) + 1e-8).mean()
    assert koleo_loss(x).item() == pytest.approx(expected.item(), rel=1e-6)


def test_float32_output_and_gradient():
    x = torch.randn(8, 4, dtype=torch.float16).float().half().requires_grad_(True)
    loss = koleo_loss(x)
    assert loss.dtype == torch.float32
    loss.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_spreading_lowers_the_loss():
    clustered = torch.tensor([[1.0, 0.0], [0.99, 0.1], [1.0, -0.1], [0.98, 0.05]])
    spread = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    assert koleo_loss(spread) < koleo_loss(clustered)


def test_needs_two_rows():
    with pytest.raises(ValueError, match="B >= 2"):
        koleo_loss(torch.randn(1, 4))
