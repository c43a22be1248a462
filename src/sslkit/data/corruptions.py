"""ImageNet-C-style corruptions in torch, for any image size and 1- or 3-channel images.

Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and Perturbations",
arXiv 1903.12261. Every corruption that needs no external image file is here (frost and the spatter
textures are not): noise (Gaussian, shot, impulse, speckle), blur (defocus, glass, motion, zoom, Gaussian),
weather (snow, fog, brightness), digital (contrast, elastic, pixelate, JPEG, saturate), each at severities
1-5 with the published ImageNet-C parameters. The corruptions were written from the paper's equations and the
published parameter tables; no code was copied.

Image size: the published parameters are for 224 px images. Lengths in pixels (blur sigmas and radii, glass
displacements, motion lengths, elastic field sizes) are multiplied by ``r = min(H, W) / 224``; per-pixel
quantities (noise strengths, JPEG quality, contrast/brightness/saturation factors, zoom factors, pixelate
ratios) are used as published.

Every function has the signature ``corruption(images, severity, generator=None) -> images``:
``images`` (B, C, H, W) float in [0, 1] with C in {1, 3}; ``severity`` in 0..5 (0 = identity);
all randomness comes from ``generator``, so a seeded generator reproduces the corruption. Output: a new
(B, C, H, W) float tensor in [0, 1].

Example::

    from sslkit.data.corruptions import CORRUPTIONS, corrupt
    foggy = corrupt(images, "fog", severity=3, generator=torch.Generator().manual_seed(0))
"""

from __future__ import annotations

import io
import math
from typing import Callable, Optional

import torch
import torch.nn.functional as F

__all__ = ["CORRUPTIONS", "CORRUPTIONS_VERSION", "CORRUPTION_GROUPS", "SEVERITIES", "corrupt", "rgb_to_hsv", "hsv_to_rgb", "plasma_fractal"]

SEVERITIES = (1, 2, 3, 4, 5)
CORRUPTIONS_VERSION = 1  # bump when a corruption's output changes: cached corrupted features are then ignored
REFERENCE_SIZE = 224  # the image side the ImageNet-C parameters were published for

Generator = Optional[torch.Generator]


# --------------------------------------------------------------------------------------------- helpers


def _check(images: torch.Tensor, severity: int, name: str) -> None:
    if images.ndim != 4 or images.shape[1] not in (1, 3) or not images.is_floating_point():
        raise ValueError(f"{name}: expected float images (B, C, H, W) with C = 1 or 3, got {tuple(images.shape)} "
                         f"{images.dtype}.")
    if isinstance(severity, bool) or int(severity) != severity or not 0 <= severity <= 5:
        raise ValueError(f"{name}: severity must be an integer in 0..5, got {severity!r}.")


def _scale(images: torch.Tensor) -> float:
    """r = min(H, W) / 224: how pixel lengths of the published parameters shrink with the image."""
    return min(images.shape[-2:]) / REFERENCE_SIZE


def _uniform(shape, low: float, high: float, generator: Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator)


def _reflect_index(n: int, pad: int, mirror_edge: bool) -> torch.Tensor:
    """Source indices of an axis of length n padded by ``pad`` per side, for any pad. ``mirror_edge``:
    d c b a | a b c d (scipy/skimage 'reflect'); otherwise d c b | a b c d (OpenCV's default REFLECT_101)."""
    idx = torch.arange(-pad, n + pad)
    if n == 1:
        return torch.zeros_like(idx)
    if mirror_edge:
        period = 2 * n
        idx = idx.remainder(period)
        return torch.where(idx >= n, period - 1 - idx, idx)
    period = 2 * (n - 1)
    idx = idx.remainder(period)
    return torch.where(idx > n - 1, period - idx, idx)


def _gaussian_kernel1d(sigma: float, truncate: float = 4.0) -> torch.Tensor:
    radius = max(1, int(truncate * sigma + 0.5))
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).float()


def _separable(x: torch.Tensor, ky: torch.Tensor, kx: torch.Tensor, mirror_edge: bool = True) -> torch.Tensor:
    """Correlate (B, C, H, W) with ky along H and kx along W, borders reflected (any kernel length)."""
    b, c, h, w = x.shape
    ry, rx = ky.numel() // 2, kx.numel() // 2
    flat = x.reshape(b * c, 1, h, w)
    flat = flat[:, :, _reflect_index(h, ry, mirror_edge), :]
    flat = F.conv2d(flat, ky.view(1, 1, -1, 1).to(x.dtype))
    flat = flat[:, :, :, _reflect_index(w, rx, mirror_edge)]
    flat = F.conv2d(flat, kx.view(1, 1, 1, -1).to(x.dtype))
    return flat.reshape(b, c, h, w)


def _gaussian_blur(x: torch.Tensor, sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """skimage.filters.gaussian's default: reflect borders, kernel truncated at 4 sigma."""
    if sigma <= 0:
        return x.clone()
    k = _gaussian_kernel1d(sigma, truncate)
    return _separable(x, k, k)


def _filter2d(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Correlate every channel with a (k, k) kernel, OpenCV REFLECT_101 borders (cv2.filter2D's default)."""
    b, c, h, w = x.shape
    r = kernel.shape[-1] // 2
    flat = x.reshape(b * c, 1, h, w)
    flat = flat[:, :, _reflect_index(h, r, False), :][:, :, :, _reflect_index(w, r, False)]
    return F.conv2d(flat, kernel[None, None].to(x.dtype)).reshape(b, c, h, w)


def _grey(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) luma (ITU-R 601, OpenCV's RGB2GRAY); grey images are returned as they are."""
    if x.shape[1] == 1:
        return x
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype).view(1, 3, 1, 1)
    return (x * weights).sum(1, keepdim=True)


def rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> HSV, each in [0, 1] (hue as a fraction of a turn)."""
    r, g, b = rgb.unbind(1)
    maxc, _ = rgb.max(1)
    minc, _ = rgb.min(1)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    hue = torch.where(maxc == r, ((g - b) / safe).remainder(6.0),
                      torch.where(maxc == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0)) / 6.0
    hue = torch.where(delta > 0, hue, torch.zeros_like(hue))
    sat = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc))
    return torch.stack([hue, sat, maxc], 1)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_hsv`."""
    h, s, v = hsv.unbind(1)
    k = torch.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6], 1)  # channel order r, g, b
    return v[:, None] - v[:, None] * s[:, None] * (torch.minimum(k, 4 - k).clamp(0, 1))


def _zoom_centre(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Zoom into the centre by ``factor`` >= 1 keeping the size (bilinear), like ImageNet-C's clipped_zoom."""
    b = x.shape[0]
    theta = torch.zeros(b, 2, 3, dtype=x.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / factor
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _shift_replicate(x: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """(..., H, W) shifted by (dx, dy) pixels, the uncovered border repeating the edge row/column."""
    h, w = x.shape[-2:]
    rows = (torch.arange(h) - dy).clamp(0, h - 1)
    cols = (torch.arange(w) - dx).clamp(0, w - 1)
    return x[..., rows, :][..., :, cols]


def _motion_blur_one(x: torch.Tensor, radius: float, sigma: float, angle_deg: float) -> torch.Tensor:
    """One-sided motion blur of (C, H, W): a weighted sum of the image shifted along a line at ``angle``.

    The weights are a half Gaussian exp(−i²/2σ²), i = 0..width−1, width = 2·radius + 1 (ImageNet-C's Wand
    ``motion_blur`` and the imagecorruptions re-implementation)."""
    width = max(1, int(2 * round(radius) + 1))
    sigma = max(sigma, 1e-3)
    i = torch.arange(width, dtype=torch.float64)
    weights = torch.exp(-(i ** 2) / (2 * sigma ** 2))
    weights = (weights / weights.sum()).tolist()
    sin, cos = math.sin(math.radians(angle_deg)), math.cos(math.radians(angle_deg))
    out = torch.zeros_like(x)
    h, w = x.shape[-2:]
    for step, weight in enumerate(weights):
        dy = -math.ceil(step * sin - 0.5)
        dx = -math.ceil(step * cos - 0.5)
        if abs(dy) >= h or abs(dx) >= w:
            break  # the motion left the image
        out = out + weight * _shift_replicate(x, dx, dy)
    return out


def _per_image(fn: Callable[[torch.Tensor, int], torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    return torch.stack([fn(img, i) for i, img in enumerate(images)])


def plasma_fractal(size: int, wibble_decay: float, generator: Generator = None) -> torch.Tensor:
    """(size, size) diamond-square plasma fractal in [0, 1] (``size`` a power of 2), ImageNet-C's fog texture.

    Starting from one corner value, each pass fills square centres with the mean of their 4 corners and
    diamond centres with the mean of their 4 neighbours (wrapping around), each plus uniform noise of
    amplitude ``wibble``, which is divided by ``wibble_decay`` after every halving of the step.
    """
    if size & (size - 1):
        raise ValueError(f"plasma_fractal: size must be a power of 2, got {size}.")
    grid = torch.zeros(size, size, dtype=torch.float64)
    step, wibble = size, 100.0

    def noise(shape):
        return wibble * (2 * torch.rand(shape, generator=generator, dtype=torch.float64) - 1)

    while step >= 2:
        half = step // 2
        corners = grid[0::step, 0::step]
        mean = (corners + torch.roll(corners, -1, 0) + torch.roll(corners, -1, 1)
                + torch.roll(torch.roll(corners, -1, 0), -1, 1)) / 4
        grid[half::step, half::step] = mean + noise(mean.shape)
        # diamonds: the points between two corners, on corner rows and on corner columns
        corners = grid[0::step, 0::step]
        centres = grid[half::step, half::step]
        on_rows = (corners + torch.roll(corners, -1, 1) + centres + torch.roll(centres, 1, 0)) / 4
        on_cols = (corners + torch.roll(corners, -1, 0) + centres + torch.roll(centres, 1, 1)) / 4
        grid[0::step, half::step] = on_rows + noise(on_rows.shape)
        grid[half::step, 0::step] = on_cols + noise(on_cols.shape)
        step, wibble = half, wibble / wibble_decay
    grid = grid - grid.min()
    return (grid / grid.max().clamp_min(1e-12)).float()


# --------------------------------------------------------------------------------------------- noise


def gaussian_noise(images: torch.Tensor, severity: int, generator: Generator = None) -> torch.Tensor:
    """x + N(0, c²), c = 0.08, 0.12, 0.18, 0.26, 0.38."""
    _check(images, severity, "gaussian_noise")
    if severity == 0:
        return images.clone()
    c = (0.08, 0.12, 0.18, 0.26, 0.38)[severity - 1]
    return (images + c * torch.randn(images.shape, generator=generator)).clamp(0, 1)


def shot_noise(images: torch.Tensor, severity: int, generator: Generator = None) -> torch.Tensor:
    """Poisson(c·x)/c, c = 60, 25, 12, 5, 3 (photons per unit intensity)."""
    _check(images, severity, "shot_noise")
    if severity == 0:
        return images.clone()
    c = (60, 25, 12, 5, 3)[severity - 1]
    return (torch.poisson(images.clamp(0, 1).double() * c, generator=generator) / c).float().clamp(0, 1)


def impulse_noise(images: torch.Tensor, severity: int, generator: Generator = None) -> torch.Tensor:
    """Salt-and-pepper: a fraction c = 0.03, 0.06, 0.09, 0.17, 0.27 of the values (per pixel and channel)
    set to 0 or 1 with equal probability (skimage ``random_noise(mode='s&p')``)."""
    _check(images, severity, "impulse_noise")
    if severity == 0:
        return images.clone()
    c = (0.03, 0.06, 0.09, 0.17, 0.27)[severity - 1]
    hit = torch.rand(images.shape, generator=generator) < c
    salt = torch.rand(images.shape, generator=generator) < 0.5
    return torch.where(hit, salt.to(images.dtype), images)


def speckle_noise(images: torch.Tensor, severity: int, generator: Generator = None) -> torch.Tensor:
    """x + x·N(0, c²), c = 0.15, 0.2, 0.35, 0.45, 0.6."""
    _check(images, severity, "speckle_noise")
    if severity == 0:
        return images.clone()
    c = (0.15, 0.2, 0.35, 0.45, 0.6)[severity - 1]
    return (images + images * c * torch.randn(images.shape, generator=generator)).clamp(0, 1)


# --------------------------------------------------------------------------------------------- blur


def gaussian_blur(images: torch.Tensor, severity: int, generator: Generator = None) -> torch.Tensor:
    """Gaussian blur, σ = (1, 2, 3, 4, 6)·r px."""
    _check(images, severity, "gaussian_blur")
    if severity == 0:
        return images.clone()
    sigma = (1, 2, 3, 4, 6)[severity - 1] * _scale(images)
    return _gaussian_blur(images, sigma).clamp(0, 1)


def _disk_kernel(radius: float, alias_sigma: float) -> torch.Tensor:
    """Normalised disk of ``radius`` px, softened by a Gaussian of ``alias_sigma`` (a 3×3 window up to radius 8,
    5×5 above, as ImageNet-C's ``disk``)."""
    half = max(8, int(math.ceil(radius)))
    coords = torch.arange(-half, half + 1, dtype=torch.float64)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    disk = ((xx ** 2 + yy ** 2) <= radius ** 2).double()
    disk = disk / disk.sum()
    if alias_sigma > 0:
        taps = 3 if radius <= 8 else 5
        t = torch.arange(taps, dtype=torch.float64) - taps // 2
        g = torch.exp(-0.5 * (t / alias_sigma) ** 2)
        g = g / g.sum()
        disk = _separable(disk[None, None], g.float(), g.float(), mirror_edge=False)[0, 0].double()
    # trim the all-zero border so the convolution stays cheap on small images
    nz = disk.abs() > 1e-12
    rows, cols = nz.any(1).nonzero().flatten(), nz.any(0).nonzero().flatten()
    r = int(max(half - rows.min(), rows.max() - half, half - cols.min(), cols.max() - half))
    return disk[half - r:half + r + 1, half - r:half + r + 1].float()


def defocus_blur(images: torch.Tensor, severity: int, generator: Generator = None) -> torch.Tensor:
    """Disk blur of radius (3, 4, 6, 8, 10)·r px, anti-aliased by σ = (0.1, 0.5, 0.5, 0.5, 0.5)·r."""
    _check(images, severity, "defocus_blur")
    if severity == 0:
        return images.clone()
    radius, alias = ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5))[severity - 1]
    r = _scale(images)
    return _filter2d(images, _disk_kernel(radius * r, alias * r)).clamp(0, 1)


def glass_blur(images: torch.Tensor, severity: int, generator: Generator = None) -> torch.Tensor:
    """Blur (σ·r), locally scramble pixels ``iterations`` times within ±``delta``·r px, blur again.
    (σ, delta, iterations) = (0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2).

    ImageNet-C swaps each interior pixel with a random neighbour in a sequential Python loop; here every
    pixel of the interior reads a random neighbour at once (a gather), which scrambles the same
    neighbourhoods in one vectorised step and keeps the cost linear in the image size. The intermediate
    image is re-quantised to 8 bit, as in the reference.
    """
    _check(images, severity, "glass_blur")
    if severity == 0:
        return images.clone()
    sigma, delta, iterations = ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2))[severity - 1]
    r = _scale(images)
    sigma, delta = sigma * r, max(1, int(round(delta * r)))
    x = torch.round(_gaussian_blur(images, sigma).clamp(0, 1) * 255) / 255
    b, c, h, w = x.shape
    rows = torch.arange(h).view(1, h, 1).expand(b, h, w)
    cols = torch.arange(w).view(1, 1, w).expand(b, h, w)
    interior = (rows > delta) & (rows <= h - delta - 1) & (cols > delta) & (cols <= w - delta - 1)
    batch = torch.arange(b).view(b, 1, 1).expand(b, h, w)
    for _ in range(iterations):
        dy = torch.randint(-delta, delta, (b, h, w), generator=generator)
        dx = torch.randint(-delta, delta, (b, h, w), generator=generator)
        src_r = torch.where(interior, (rows + dy).clamp(0, h - 1), rows)
        src_c = torch.where(interior, (cols + dx).clamp(0, w - 1), cols)
        x = x.permute(0, 2, 3, 1)[batch, src_r, src_c].permute(0, 3, 1, 2)
    return _gaussian_blur(x, sigma).clamp(0, 1)


def motion_blur(images: torch.Tensor, severity: int, generator: Generator = None) -> torch.Tensor:
    """Motion blur along a random direction in U[−45°, 45°] (one per image), (radius, σ) =
    (10, 3), (15, 5), (15, 8), (15, 12), (20, 15), scaled by r."""
    _check(images, severity, "motion_blur")
    if severity == 0:
        return images.clone()
    radius, sigma = ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15))[severity - 1]
    r = _scale(images)
    angles = _uniform((images.shape[0],), -45.0, 45.0, generator).tolist()
    return _per_image(lambda img, i: _motion_blur_one(img, radius * r, sigma * r, angles[i]), images).clamp(0, 1)


def zoom_blur(images: torch.Tensor, severity: int, generator: Generator = None) -> torch.Tensor:
    """Mean of the image and its centre zooms by factors 1, 1+s, ..., up to z_max:
    (step, z_max) = (0.01, 1.10), (0.01, 1.15), (0.02, 1.20), (0.02, 1.24), (0.03, 1.30) (relative, not scaled)."""
    _check(images, severity, "zoom_blur")
    if severity == 0:
        return images.clone()
    stop, step = ((1.11, 0.01), (1.16, 0.01), (1.21, 0.02), (1.26, 0.02), (1.31, 0.03))[severity - 1]
    factors = torch.arange(1.0, stop, step, dtype=torch.float64).tolist()
    out = images.clone()
    for z in factors:
        out = out + _zoom_centre(images, z)
    return (out / (len(factors) + 1)).clamp(0, 1)


# --------------------------------------------------------------------------------------------- weather


def snow(images: torch.Tensor, severity: int, generator: Generator = None) -> torch.Tensor:
    """Snow: a thresholded, zoomed Gaussian layer streaked by motion blur (angle U[−135°, −45°]), added twice
    (once rotated 180°) to a brightened, partly desaturated image.
    (loc, scale, zoom, threshold, blur radius, blur σ, blend) =
    (0.1, 0.3, 3, 0.5, 10, 4, 0.8), (0.2, 0.3, 2, 0.5, 12, 4, 0.7), (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
    (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65), (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55); radius and σ scaled by r."""
    _check(images, severity, "snow")
    if severity == 0:
        return images.clone()
    loc, scale, zoom, threshold, radius, sigma, blend = (
        (0.1, 0.3, 3, 0.5, 10, 4, 0.8), (0.2, 0.3, 2, 0.5, 12, 4, 0.7), (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
        (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65), (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55))[severity - 1]
    r = _scale(images)
    b, _, h, w = images.shape
    layer = loc + scale * torch.randn((b, 1, h, w), generator=generator)
    layer = _zoom_centre(layer, zoom)
    layer = torch.where(layer < threshold, torch.zeros_like(layer), layer).clamp(0, 1)
    angles = _uniform((b,), -135.0, -45.0, generator).tolist()
    layer = _per_image(lambda img, i: _motion_blur_one(img, radius * r, sigma * r, angles[i]), layer)
    layer = torch.round(layer.clamp(0, 1) * 255) / 255
    x = blend * images + (1 - blend) * torch.maximum(images, _grey(images) * 1.5 + 0.5)
    return (x + layer + torch.rot90(layer, 2, dims=(-2, -1))).clamp(0, 1)


def fog(images: torch.Tensor, severity: int, generator: Generator = None) -> torch.Tensor:
    """x + c·plasma, rescaled by max(x)/(max(x) + c); (c, wibble decay) = (1.5, 2), (2, 2), (2.5, 1.7),
    (2.5, 1.5), (3, 1.4). The plasma map is the next power of 2 above the image side × 256/224 (ImageNet-C
    draws a 256 map for 224 images), so the clouds keep their size relative to the image."""
    _check(images, severity, "fog")
    if severity == 0:
        return images.clone()
    c, decay = ((1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4))[severity - 1]
    b, _, h, w = images.shape
    size = 1 << max(1, math.ceil(math.log2(max(h, w) * 256 / REFERENCE_SIZE)))
    plasma = torch.stack([plasma_fractal(size, decay, generator)[:h, :w] for _ in range(b)])[:, None]
    peak = images.amax(dim=(1, 2, 3), keepdim=True)
    return ((images + c * plasma) * peak / (peak + c)).clamp(0, 1)


def brightness(images: torch.Tensor, severity: int, generator: Generator = None) -> torch.Tensor:
    """HSV value + c, c = 0.1, 0.2, 0.3, 0.4, 0.5 (grey images: x + c)."""
    _check(images, severity, "brightness")
    if severity == 0:
        return images.clone()
    c = (0.1, 0.2, 0.3, 0.4, 0.5)[severity - 1]
    if images.shape[1] == 1:
        return (images + c).clamp(0, 1)
    hsv = rgb_to_hsv(images)
    hsv[:, 2] = (hsv[:, 2] + c).clamp(0, 1)
    return hsv_to_rgb(hsv).clamp(0, 1)


# --------------------------------------------------------------------------------------------- digital


def contrast(images: torch.Tensor, severity: int, generator: Generator = None) -> torch.Tensor:
    """(x − μ)·c + μ with μ the per-channel image mean, c = 0.4, 0.3, 0.2, 0.1, 0.05."""
    _check(images, severity, "contrast")
    if severity == 0:
        return images.clone()
    c = (0.4, 0.3, 0.2, 0.1, 0.05)[severity - 1]
    mean = images.mean(dim=(2, 3), keepdim=True)
    return ((images - mean) * c + mean).clamp(0, 1)


def elastic_transform(images: torch.Tensor, severity: int, generator: Generator = None) -> torch.Tensor:
    """A random affine warp (3 anchor points moved by U[−a, a]) followed by a smooth random displacement field
    (U[−1, 1] noise blurred by σ, times α); (α, σ, a) / 244 = (2, 0.7, 0.1), (2, 0.08, 0.2), (0.05, 0.01, 0.02),
    (0.07, 0.01, 0.02), (0.12, 0.01, 0.02) of the image side (ImageNet-C's 244-based table, taken relative to
    the 224 px side). Both warps are composed into one bilinear resampling with mirrored borders (the
    reference resamples twice)."""
    _check(images, severity, "elastic_transform")
    if severity == 0:
        return images.clone()
    alpha, sigma, affine = ((2, 0.7, 0.1), (2, 0.08, 0.2), (0.05, 0.01, 0.02), (0.07, 0.01, 0.02),
                            (0.12, 0.01, 0.02))[severity - 1]
    b, _, h, w = images.shape
    unit = 244 * _scale(images)
    alpha, sigma, affine = alpha * unit, sigma * unit, affine * unit
    # affine: solve for the map taking the moved anchors back to the original ones (output -> source)
    cy, cx, sq = h // 2, w // 2, min(h, w) // 3
    anchors = torch.tensor([[cx + sq, cy + sq], [cx + sq, cy - sq], [cx - sq, cy - sq]], dtype=torch.float64)
    moved = anchors + _uniform((b, 3, 2), -affine, affine, generator).double()
    ones = torch.ones(b, 3, 1, dtype=torch.float64)
    # source = [moved, 1] @ M with M (3, 2): exact for 3 non-collinear points
    inverse = torch.linalg.solve(torch.cat([moved, ones], 2), anchors.expand(b, 3, 2))
    noise = _uniform((b, 2, h, w), -1.0, 1.0, generator)
    field = _gaussian_blur(noise, sigma, truncate=3.0) * alpha  # (B, 2, H, W): dx, dy in pixels
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    px = xs[None] + field[:, 0].double()
    py = ys[None] + field[:, 1].double()
    points = torch.stack([px, py, torch.ones_like(px)], -1)  # (B, H, W, 3)
    src = points @ inverse[:, None]  # (B, H, W, 2) source pixel coordinates (x, y)
    grid = torch.stack([(2 * src[..., 0] + 1) / w - 1, (2 * src[..., 1] + 1) / h - 1], -1).to(images.dtype)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False).clamp(0, 1)


def pixelate(images: torch.Tensor, severity: int, generator: Generator = None) -> torch.Tensor:
    """Box-downsample to c·side, then blow back up with nearest neighbours; c = 0.6, 0.5, 0.4, 0.3, 0.25."""
    _check(images, severity, "pixelate")
    if severity == 0:
        return images.clone()
    c = (0.6, 0.5, 0.4, 0.3, 0.25)[severity - 1]
    h, w = images.shape[-2:]
    small = F.interpolate(images, size=(max(1, int(h * c)), max(1, int(w * c))), mode="area")
    return F.interpolate(small, size=(h, w), mode="nearest").clamp(0, 1)


def jpeg_compression(images: torch.Tensor, severity: int, generator: Generator = None) -> torch.Tensor:
    """JPEG round trip through PIL at quality 25, 18, 15, 10, 7 (8-bit; grey images as mode 'L')."""
    from PIL import Image

    _check(images, severity, "jpeg_compression")
    if severity == 0:
        return images.clone()
    quality = (25, 18, 15, 10, 7)[severity - 1]
    out = []
    for img in images:
        array = (img.clamp(0, 1) * 255).round().to(torch.uint8)
        pil = Image.fromarray(array[0].numpy(), mode="L") if img.shape[0] == 1 else \
            Image.fromarray(array.permute(1, 2, 0).contiguous().numpy(), mode="RGB")
        buffer = io.BytesIO()
        pil.save(buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        decoded = torch.from_numpy(__import__("numpy").array(Image.open(buffer))).float() / 255
        out.append(decoded[None] if img.shape[0] == 1 else decoded.permute(2, 0, 1))
    return torch.stack(out).to(images.dtype)


def saturate(images: torch.Tensor, severity: int, generator: Generator = None) -> torch.Tensor:
    """HSV saturation · a + b, (a, b) = (0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2).
    Grey images have no saturation to change and are returned unchanged."""
    _check(images, severity, "saturate")
    if severity == 0 or images.shape[1] == 1:
        return images.clone()
    a, b = ((0.3, 0.0), (0.1, 0.0), (2.0, 0.0), (5.0, 0.1), (20.0, 0.2))[severity - 1]
    hsv = rgb_to_hsv(images)
    hsv[:, 1] = (hsv[:, 1] * a + b).clamp(0, 1)
    return hsv_to_rgb(hsv).clamp(0, 1)


# --------------------------------------------------------------------------------------------- registry

CORRUPTION_GROUPS: dict[str, tuple[str, ...]] = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "gaussian_blur"),
    "weather": ("snow", "fog", "brightness"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression", "saturate"),
}

CORRUPTIONS: dict[str, Callable[..., torch.Tensor]] = {
    name: globals()[name] for group in CORRUPTION_GROUPS.values() for name in group
}


def corrupt(images: torch.Tensor, name: str, severity: int, generator: Generator = None) -> torch.Tensor:
    """Apply corruption ``name`` (a key of :data:`CORRUPTIONS`) at ``severity`` to (B, C, H, W) or (C, H, W)."""
    if name not in CORRUPTIONS:
        raise ValueError(f"Unknown corruption {name!r}; choose from {sorted(CORRUPTIONS)}.")
    single = images.ndim == 3
    out = CORRUPTIONS[name](images[None] if single else images, severity, generator)
    return out[0] if single else out
