from __future__ import annotations

import math

import pytest
import torch

from sslkit.functional.lowpass import lowpass_cutoff_schedule, lowpass_fourier, radial_frequency


def _images(seed: int = 0, shape=(2, 3, 16, 20)) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("cutoff", [0.0, 0.3, 0.9])
@pytest.mark.parametrize("edge", [0.0, 0.2])
def test_constant_image_passes(cutoff, edge):
    x = torch.full((1, 3, 12, 17), 0.37)
    assert torch.allclose(lowpass_fourier(x, cutoff, edge), x, atol=1e-6)


@pytest.mark.parametrize("size", [(8, 8), (16, 10)])
def test_checkerboard_is_removed(size):
    h, w = size
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    board = ((yy + xx) % 2).float()[None, None]  # mean 0.5 + the (Nyquist, Nyquist) component
    out = lowpass_fourier(board, cutoff=0.9)
    assert torch.allclose(out, torch.full_like(board, 0.5), atol=1e-6)
    # an axis-Nyquist stripe pattern sits at radius 1/sqrt(2): kept above, removed below
    stripes = (xx % 2).float()[None, None]
    assert torch.allclose(lowpass_fourier(stripes, 0.75), stripes, atol=1e-6)
    assert torch.allclose(lowpass_fourier(stripes, 0.65), torch.full_like(stripes, 0.5), atol=1e-6)


@pytest.mark.parametrize("edge", [0.0, 0.15])
def test_energy_non_increasing_in_cutoff(edge):
    x = _images(1)
    energies = [lowpass_fourier(x, c, edge).double().pow(2).sum().item() for c in (0.0, 0.1, 0.3, 0.5, 0.8, 1.0)]
    for lower, higher in zip(energies, energies[1:]):
        assert lower <= higher + 1e-9
    assert energies[-1] == pytest.approx(x.double().pow(2).sum().item(), rel=1e-9)
    assert energies[0] < 0.9 * energies[-1]


def test_identity_at_cutoff_one_and_zero_keeps_channel_means():
    x = _images(2)
    assert torch.equal(lowpass_fourier(x, 1.0), x)
    # the filter with cutoff just below 1 keeps all but the corner bins: close to, not equal to, identity
    near = lowpass_fourier(x, 0.999)
    assert 0 < (near - x).abs().max() < 0.5
    dc = lowpass_fourier(x, 0.0)
    assert torch.allclose(dc, x.mean(dim=(-2, -1), keepdim=True).expand_as(x), atol=1e-6)


def test_matches_dense_fft_mask_and_is_idempotent_with_hard_edge():
    x = _images(3, (1, 1, 9, 12))
    cutoff = 0.4
    fy = torch.fft.fftfreq(9, dtype=torch.float64)
    fx = torch.fft.fftfreq(12, dtype=torch.float64)
    radius = torch.sqrt(fy[:, None] ** 2 + fx[None] ** 2) / math.sqrt(0.5)
    dense = torch.fft.ifft2(torch.fft.fft2(x.double()) * (radius <= cutoff)).real.float()
    out = lowpass_fourier(x, cutoff)
    assert torch.allclose(out, dense, atol=1e-6)
    assert torch.allclose(lowpass_fourier(out, cutoff), out, atol=1e-6)
    assert radial_frequency(8, 8)[4, 4].item() == pytest.approx(1.0)


def test_cutoff_schedule():
    assert lowpass_cutoff_schedule(0.0, 0.2, 1.0) == pytest.approx(0.2)
    assert lowpass_cutoff_schedule(0.5, 0.2, 1.0) == pytest.approx(0.6)
    assert lowpass_cutoff_schedule(0.5, 0.2, 1.0, "cosine") == pytest.approx(0.6)
    assert lowpass_cutoff_schedule(0.25, 0.2, 1.0, "cosine") < lowpass_cutoff_schedule(0.25, 0.2, 1.0)
    assert lowpass_cutoff_schedule(0.74, 0.2, 1.0, "step") == 0.2
    assert lowpass_cutoff_schedule(0.75, 0.2, 1.0, "step") == 1.0
    with pytest.raises(ValueError):
        lowpass_cutoff_schedule(0.5, shape="exp")
