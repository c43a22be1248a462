from __future__ import annotations

import math

import pytest
import torch

from sslkit.data.noise_patch import (GaussianBlurPatch, GaussianNoisePatch, gaussian_blur_reflect, quantize_8bit,
                                     sample_patch)


def _image8(c: int = 3, h: int = 24, w: int = 32, seed: int = 0) -> torch.Tensor:
    """An 8-bit-quantised image away from 0 and 1, so clamping rarely hides the noise."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(64, 192, (c, h, w), generator=g).float() / 255.0


def _changed_box(before: torch.Tensor, after: torch.Tensor):
    changed = (before != after).any(dim=0)
    if not changed.any():
        return None, changed
    rows = changed.any(dim=1).nonzero().flatten()
    cols = changed.any(dim=0).nonzero().flatten()
    return (int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1), changed


@pytest.mark.parametrize("channels", [1, 3])
def test_exactly_one_square_changes(channels):
    transform = GaussianNoisePatch(max_scale=0.5)
    x = _image8(channels)
    for seed in range(40):
        out, p = transform.apply(x, torch.Generator().manual_seed(seed))
        assert out.shape == x.shape and 0.0 <= out.min() and out.max() <= 1.0
        assert 1 <= p.side <= min(x.shape[1:]) and 0 <= p.strength <= 0.5
        assert 0 <= p.top <= x.shape[1] - p.side and 0 <= p.left <= x.shape[2] - p.side
        inside = torch.zeros(x.shape[1:], dtype=torch.bool)
        inside[p.top:p.top + p.side, p.left:p.left + p.side] = True
        # nothing outside the square changes ...
        assert torch.equal(out[:, ~inside], x[:, ~inside])
        box, changed = _changed_box(x, out)
        if box is not None:  # ... and what changed lies in one axis-aligned square
            r0, r1, c0, c1 = box
            assert p.top <= r0 and r1 <= p.top + p.side and p.left <= c0 and c1 <= p.left + p.side
        # large, strong patches change most of their pixels (a test that the square is really the patch)
        if p.side >= 8 and p.strength > 0.1:
            assert changed[inside].float().mean() > 0.8


def test_values_are_8bit_after_requantisation():
    x = _image8()
    out = GaussianNoisePatch(0.5)(x, torch.Generator().manual_seed(3))
    assert torch.allclose(out * 255, torch.round(out * 255), atol=1e-4)
    raw = GaussianNoisePatch(0.5, quantize=False)(x, torch.Generator().manual_seed(3))
    assert not torch.allclose(raw * 255, torch.round(raw * 255), atol=1e-4)
    assert torch.allclose(quantize_8bit(raw), out, atol=1e-6)


def test_change_std_matches_the_drawn_scale_and_is_below_s_max():
    s_max = 0.2
    transform = GaussianNoisePatch(s_max)
    x = torch.full((3, 64, 64), 0.5)  # far from the clamp bounds: the change is the Gaussian itself
    ratios = []
    for seed in range(30):
        out, p = transform.apply(x, torch.Generator().manual_seed(seed))
        delta = (out - x)[:, p.top:p.top + p.side, p.left:p.left + p.side]
        assert delta.std(unbiased=False).item() <= s_max + 0.5 / 255
        if delta.numel() >= 300 and p.strength > 0.02:
            ratios.append(delta.std(unbiased=False).item() / p.strength)
    assert len(ratios) >= 5
    assert all(0.8 < r < 1.2 for r in ratios)


def test_sampled_sides_and_scales_are_uniform():
    g = torch.Generator().manual_seed(0)
    draws = [sample_patch(10, 7, (0.0, 0.5), g) for _ in range(7000)]
    sides = torch.tensor([d.side for d in draws])
    counts = torch.bincount(sides, minlength=8)[1:]
    assert counts.min() > 850 and counts.max() < 1150  # U{1..7}: 1000 each
    scales = torch.tensor([d.strength for d in draws])
    assert abs(scales.mean().item() - 0.25) < 0.01 and scales.max() <= 0.5
    corner_rows = torch.tensor([d.top for d in draws if d.side == 7])
    assert set(corner_rows.tolist()) == {0, 1, 2, 3}


def test_deterministic_under_a_seed():
    x = _image8()
    for transform in (GaussianNoisePatch(0.5), GaussianBlurPatch()):
        a = transform(x, torch.Generator().manual_seed(11))
        b = transform(x, torch.Generator().manual_seed(11))
        c = transform(x, torch.Generator().manual_seed(12))
        assert torch.equal(a, b)
        assert not torch.equal(a, c)


def test_zero_scale_is_identity_on_8bit_images():
    x = _image8()
    assert torch.equal(GaussianNoisePatch(0.0)(x, torch.Generator().manual_seed(0)), x)


def test_blur_variant_changes_one_square_and_smooths_it():
    x = _image8(3, 40, 40, seed=5)
    transform = GaussianBlurPatch((1.5, 2.0))
    for seed in range(10):
        out, p = transform.apply(x, torch.Generator().manual_seed(seed))
        inside = torch.zeros(40, 40, dtype=torch.bool)
        inside[p.top:p.top + p.side, p.left:p.left + p.side] = True
        assert torch.equal(out[:, ~inside], x[:, ~inside])
        assert 0 <= out.min() and out.max() <= 1 and 1.5 <= p.strength <= 2.0
        if p.side >= 6:  # blur lowers the local variance of white-ish noise
            patch_in = x[:, inside].view(3, p.side, p.side)
            patch_out = out[:, inside].view(3, p.side, p.side)
            assert patch_out.var() < 0.5 * patch_in.var()


def test_blur_matches_a_dense_reference_and_preserves_constants():
    const = torch.full((2, 5, 5), 0.3)
    assert torch.allclose(gaussian_blur_reflect(const, 1.7), const, atol=1e-6)
    one = torch.rand(1, 1, 1)
    assert torch.allclose(gaussian_blur_reflect(one, 2.0), one)
    # 1-D impulse on a long row: the response is the normalised Gaussian kernel
    row = torch.zeros(1, 1, 31)
    row[0, 0, 15] = 1.0
    sigma = 1.3
    out = gaussian_blur_reflect(row, sigma)[0, 0]
    r = round(3 * sigma)
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1).float() / sigma) ** 2)
    assert torch.allclose(out[15 - r:16 + r], k / k.sum(), atol=1e-6)
    assert math.isclose(out.sum().item(), 1.0, rel_tol=1e-5)


def test_rejects_bad_input():
    with pytest.raises(ValueError):
        GaussianNoisePatch(1.5)
    with pytest.raises(ValueError):
        GaussianNoisePatch()(torch.zeros(8, 8))
    with pytest.raises(ValueError):
        GaussianBlurPatch((0.0, 1.0))
