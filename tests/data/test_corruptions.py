from __future__ import annotations

import colorsys
import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from sslkit.data.corruptions import (CORRUPTION_GROUPS, CORRUPTIONS, corrupt, hsv_to_rgb, plasma_fractal,
                                     rgb_to_hsv)

NAMES = sorted(CORRUPTIONS)
RANDOM = {"gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "glass_blur", "motion_blur", "snow", "fog",
          "elastic_transform"}
# Severities whose published parameters order the distortion: PSNR falls from 1 to 5. The others are
# ordered by something PSNR does not measure: glass blur (sev 2 scrambles once, sev 1 twice), elastic
# (sev 1-2 are large smooth warps, 3-5 small local ones), pixelate (integer down-sampling ratios alias
# differently), saturate (sev 1-2 desaturate, 3-5 oversaturate).
PSNR_ORDERED = ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "defocus_blur", "motion_blur",
                "zoom_blur", "gaussian_blur", "snow", "fog", "brightness", "contrast", "jpeg_compression")


def _sample(size: int = 96, channels: int = 3, batch: int = 2) -> torch.Tensor:
    """A smooth random colour field plus a checker pattern: edges and flat areas, values inside (0, 1)."""
    g = torch.Generator().manual_seed(0)
    low = torch.rand(1, channels, 8, 8, generator=g)
    img = torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    img = 0.1 + 0.7 * img.clamp(0, 1) + 0.15 * (((xx // (size // 8)) + (yy // (size // 8))) % 2).float()
    return img.clamp(0, 1).repeat(batch, 1, 1, 1)


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(1.0 / max((a - b).pow(2).mean().item(), 1e-12))


def test_registry_lists_the_15_imagenet_c_corruptions_plus_saturate():
    assert len(CORRUPTIONS) == 17
    assert set(CORRUPTIONS) == {n for group in CORRUPTION_GROUPS.values() for n in group}


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", NAMES)
def test_shape_range_determinism_and_identity(name, channels):
    x = _sample(40, channels)[:, :, :, :36]  # non-square
    for severity in (1, 5):
        a = CORRUPTIONS[name](x, severity, torch.Generator().manual_seed(1))
        b = CORRUPTIONS[name](x, severity, torch.Generator().manual_seed(1))
        assert a.shape == x.shape and a.dtype == x.dtype
        assert a.min() >= 0 and a.max() <= 1
        assert torch.equal(a, b)
        if name in RANDOM:
            c = CORRUPTIONS[name](x, severity, torch.Generator().manual_seed(2))
            assert not torch.equal(a, c)
    assert torch.equal(CORRUPTIONS[name](x, 0), x)
    with pytest.raises(ValueError):
        CORRUPTIONS[name](x, 6)


@pytest.mark.parametrize("name", PSNR_ORDERED)
def test_distortion_grows_with_severity(name):
    x = _sample(96)
    psnr = [_psnr(CORRUPTIONS[name](x, s, torch.Generator().manual_seed(0)), x) for s in range(1, 6)]
    tolerance = 0.5 if name == "fog" else 0.05  # fog's severities 3 and 4 share the strength c = 2.5
    assert all(later <= earlier + tolerance for earlier, later in zip(psnr, psnr[1:])), psnr
    assert psnr[-1] < psnr[0] - 1.0, psnr


@pytest.mark.parametrize("name", NAMES)
def test_every_severity_distorts(name):
    x = _sample(96)
    for s in range(1, 6):
        # 50 dB: Gaussian blur at severity 1 is sigma = 1 px at 224 px, 0.43 px here -- faint, but not nothing
        assert _psnr(CORRUPTIONS[name](x, s, torch.Generator().manual_seed(0)), x) < 50


def test_noise_statistics_match_their_definitions():
    x = torch.full((4, 3, 64, 64), 0.5)
    g = torch.Generator().manual_seed(0)
    assert (CORRUPTIONS["gaussian_noise"](x, 2, g) - x).std().item() == pytest.approx(0.12, rel=0.03)
    assert (CORRUPTIONS["speckle_noise"](x, 1, g) - x).std().item() == pytest.approx(0.5 * 0.15, rel=0.03)
    shot = CORRUPTIONS["shot_noise"](x, 3, g)  # Poisson(12 * 0.5) / 12: mean 0.5, variance 0.5 / 12
    assert shot.mean().item() == pytest.approx(0.5, abs=0.01)
    assert shot.var().item() == pytest.approx(0.5 / 12, rel=0.05)
    impulse = CORRUPTIONS["impulse_noise"](x, 4, g)
    hit = impulse != 0.5
    assert hit.float().mean().item() == pytest.approx(0.17, abs=0.01)
    assert (impulse[hit] == 1).float().mean().item() == pytest.approx(0.5, abs=0.03)


def test_contrast_brightness_and_hsv_against_closed_forms():
    x = _sample(16)
    mean = x.mean(dim=(2, 3), keepdim=True)
    assert torch.allclose(CORRUPTIONS["contrast"](x, 3), ((x - mean) * 0.2 + mean).clamp(0, 1), atol=1e-6)
    pixels = torch.rand(3, 50, generator=torch.Generator().manual_seed(0))
    hsv = rgb_to_hsv(pixels[None, :, :, None])[0, :, :, 0]
    for i in range(50):
        expected = colorsys.rgb_to_hsv(*pixels[:, i].tolist())
        assert hsv[:, i].tolist() == pytest.approx(list(expected), abs=1e-5)
    assert torch.allclose(hsv_to_rgb(rgb_to_hsv(x)), x, atol=1e-5)
    bright = CORRUPTIONS["brightness"](x, 2)
    h, s, v = colorsys.rgb_to_hsv(*x[0, :, 3, 5].tolist())
    assert bright[0, :, 3, 5].tolist() == pytest.approx(list(colorsys.hsv_to_rgb(h, s, min(v + 0.2, 1))), abs=1e-5)
    assert torch.allclose(CORRUPTIONS["brightness"](x[:, :1], 5), (x[:, :1] + 0.5).clamp(0, 1))


def test_jpeg_is_a_pil_round_trip():
    x = _sample(32)
    out = CORRUPTIONS["jpeg_compression"](x, 4)
    array = (x[1] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=10)
    expected = torch.from_numpy(np.array(Image.open(io.BytesIO(buffer.getvalue())))).permute(2, 0, 1).float() / 255
    assert torch.equal(out[1], expected)


def test_blurs_preserve_constants_and_pixelate_makes_blocks():
    const = torch.full((1, 3, 48, 48), 0.4)
    for name in ("gaussian_blur", "defocus_blur", "zoom_blur", "motion_blur", "glass_blur"):
        assert torch.allclose(CORRUPTIONS[name](const, 5, torch.Generator().manual_seed(0)), const, atol=1e-5), name
    x = _sample(40)
    out = CORRUPTIONS["pixelate"](x, 5)  # 40 * 0.25 = 10 blocks of 4 px
    assert torch.equal(out, out[:, :, ::4, ::4].repeat_interleave(4, 2).repeat_interleave(4, 3))
    assert torch.allclose(out[:, :, ::4, ::4], torch.nn.functional.avg_pool2d(x, 4), atol=1e-6)


def test_plasma_fractal_and_corrupt_entry_point():
    p = plasma_fractal(64, 2.0, torch.Generator().manual_seed(0))
    assert p.shape == (64, 64) and p.min() == 0 and p.max() == 1
    # smoother with a larger decay: neighbouring differences shrink
    rough = plasma_fractal(64, 1.4, torch.Generator().manual_seed(0))
    assert (p.diff(dim=1).abs().mean() < rough.diff(dim=1).abs().mean())
    x = _sample(24)
    assert torch.equal(corrupt(x[0], "fog", 2, torch.Generator().manual_seed(3)),
                       CORRUPTIONS["fog"](x[:1], 2, torch.Generator().manual_seed(3))[0])
    with pytest.raises(ValueError):
        corrupt(x, "frost", 1)
