"""Fourier low-pass filtering of image batches, and a cutoff schedule for a frequency curriculum.

FastDINOv2 (arXiv 2507.03779) obtains its low-frequency stage by plain down-sampling (112/48 px crops); this
module is the alternative the issue asks for: a true, radial low-pass in the 2-D Fourier domain whose cutoff can
be raised over training with :func:`lowpass_cutoff_schedule`.

Frequency units: the radius of a frequency (f_y, f_x) (cycles per pixel) is measured relative to the
*corner* frequency (Nyquist on both axes, |(1/2, 1/2)| = 1/sqrt(2)), so ``cutoff = 1`` keeps every
frequency the grid can represent and the filter is then exactly the identity. Along one axis, the Nyquist
frequency sits at radius 1/sqrt(2) ≈ 0.707 in these units.
"""

from __future__ import annotations

import math

import torch

__all__ = ["radial_frequency", "lowpass_gain", "lowpass_fourier", "lowpass_cutoff_schedule"]


def radial_frequency(height: int, width: int, device=None) -> torch.Tensor:
    """(H, W//2+1) radius of each ``rfft2`` bin, 0 at DC and 1 at the corner (Nyquist, Nyquist)."""
    fy = torch.fft.fftfreq(height, device=device, dtype=torch.float64)
    fx = torch.fft.rfftfreq(width, device=device, dtype=torch.float64)
    # |f| over |(1/2, 1/2)|: odd sizes never reach 1/2, which only makes every radius < 1.
    return torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2) / math.sqrt(0.5)


def lowpass_gain(radius: torch.Tensor, cutoff: float, edge: float = 0.0) -> torch.Tensor:
    """Gain in [0, 1] of a radial low-pass: 1 up to ``cutoff``, then (``edge > 0``) a raised-cosine roll-off
    that reaches 0 at ``cutoff + edge``; a hard edge (``edge = 0``) keeps ``radius <= cutoff`` only.

    The roll-off starts *at* the cutoff so that every frequency below the cutoff passes unchanged and
    ``cutoff = 1`` is the identity whatever the edge width.
    """
    if edge <= 0:
        return (radius <= cutoff + 1e-12).to(radius.dtype)
    t = ((radius - cutoff) / edge).clamp(0.0, 1.0)
    return 0.5 * (1.0 + torch.cos(math.pi * t))


def lowpass_fourier(images: torch.Tensor, cutoff: float, edge: float = 0.0) -> torch.Tensor:
    """Radial Fourier low-pass of an image batch.

    Args:
        images: (..., H, W) real tensor, e.g. (B, C, H, W) or (C, H, W); any value range.
        cutoff: in [0, 1], radius kept relative to the corner frequency (module docstring); 0 keeps only
            the mean of each image channel, 1 returns ``images`` unchanged.
        edge: width of the raised-cosine roll-off above the cutoff (same units); 0 = ideal (hard) filter,
            which rings; a smooth edge trades sharpness of the cut for less ringing.

    Returns:
        (..., H, W) filtered images, same dtype. The gain is in [0, 1] and symmetric in frequency, so the
        output is real, the mean is preserved and the energy never increases (Parseval).
    """
    if not 0.0 <= cutoff:
        raise ValueError(f"lowpass_fourier: cutoff must be >= 0, got {cutoff}.")
    if edge < 0:
        raise ValueError(f"lowpass_fourier: edge must be >= 0, got {edge}.")
    if cutoff >= 1.0:
        return images.clone()  # every representable frequency has radius <= 1: nothing to remove
    h, w = images.shape[-2:]
    work = images.to(torch.float64)
    spectrum = torch.fft.rfft2(work)
    gain = lowpass_gain(radial_frequency(h, w, device=images.device), cutoff, edge)
    filtered = torch.fft.irfft2(spectrum * gain, s=(h, w))
    return filtered.to(images.dtype)


def lowpass_cutoff_schedule(progress: float, start: float = 0.25, end: float = 1.0,
                            shape: str = "linear") -> float:
    """Cutoff at training progress ``progress`` in [0, 1], rising from ``start`` to ``end``.

    ``shape``: ``'linear'``, ``'cosine'`` (half-cosine ease-in/out) or ``'step'`` (``start`` for the
    first 75 % then ``end``, the Fourier analogue of FastDINOv2's two-stage 112 px -> 224 px curriculum).
    """
    p = min(max(float(progress), 0.0), 1.0)
    if shape == "linear":
        return start + (end - start) * p
    if shape == "cosine":
        return start + (end - start) * 0.5 * (1.0 - math.cos(math.pi * p))
    if shape == "step":
        return start if p < 0.75 else end
    raise ValueError(f"lowpass_cutoff_schedule: shape must be 'linear', 'cosine' or 'step', got {shape!r}.")
