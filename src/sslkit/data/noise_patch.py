"""Gaussian noise patching (FastDINOv2 stage 2, arXiv 2507.03779) and its patch-wise blur ablation.

One square patch of the decoded image x ∈ [0, 1]^{C×H×W} is corrupted before any cropping
(spec ``specs/fast-dinov2.md`` step 2):

1. side a ~ U{1, …, min(H, W)};
2. top-left corner uniform over the valid positions;
3. scale s ~ U[0, s_max];
4. x[:, patch] += ε, ε ~ N(0, s²) i.i.d. per pixel and channel;
5. clamp to [0, 1] and re-quantise to 8 bit.

s_max is a parameter: 0.5 is the spec's stage-2 value, 0.2 is what the reference's data-loader workers
actually use (see the spec's "quirk"). The blur variant replaces step 3–4 by a Gaussian blur of the patch
with σ ~ U[0.1, 2.0] (the reference's ``AddPatchGaussianBlur``, randomised patch size and sigma).

Both transforms draw every random number from the ``torch.Generator`` passed in, so a seeded generator
reproduces the same patch on any machine.

Example::

    patch = GaussianNoisePatch(max_scale=0.5)
    noisy = patch(image, generator=torch.Generator().manual_seed(0))   # image: (C, H, W) in [0, 1]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

__all__ = ["PatchParams", "GaussianNoisePatch", "GaussianBlurPatch", "gaussian_blur_reflect", "sample_patch", "quantize_8bit"]


@dataclass(frozen=True)
class PatchParams:
    """Where the patch lies and how strong it is: rows top:top+side, columns left:left+side."""

    top: int
    left: int
    side: int
    strength: float  # noise std s, or blur sigma


def _check_image(image: torch.Tensor, who: str) -> None:
    if image.ndim != 3 or not image.is_floating_point():
        raise ValueError(f"{who} expects a float (C, H, W) image in [0, 1], got {tuple(image.shape)} "
                         f"{image.dtype}.")


def sample_patch(height: int, width: int, strength_range: tuple[float, float],
                 generator: Optional[torch.Generator] = None) -> PatchParams:
    """Draw side a ~ U{1..min(H, W)}, a corner uniform over the valid positions, strength ~ U[lo, hi]."""
    side = int(torch.randint(1, min(height, width) + 1, (1,), generator=generator))
    top = int(torch.randint(0, height - side + 1, (1,), generator=generator))
    left = int(torch.randint(0, width - side + 1, (1,), generator=generator))
    lo, hi = strength_range
    strength = lo + (hi - lo) * float(torch.rand((), generator=generator, dtype=torch.float64))
    return PatchParams(top, left, side, strength)


def quantize_8bit(x: torch.Tensor) -> torch.Tensor:
    """Round to the nearest multiple of 1/255. The reference goes through ``ToPILImage``, which truncates
    (``mul(255).byte()``); rounding is used here because truncation biases every pixel down by half a level
    and would alter pixels outside the patch through float error (k/255·255 = k − ε → k − 1)."""
    return torch.round(x * 255.0) / 255.0


class GaussianNoisePatch:
    """Additive Gaussian noise on one random square patch (FastDINOv2's "Gaussian noise patching").

    Args:
        max_scale: s_max; the noise std is s ~ U[0, s_max]. 0.5 = spec stage 2; 0.2 = reference worker path.
        quantize: re-quantise the changed patch to 8 bit (spec step 5). Pixels outside the patch are never
            touched, so an 8-bit input stays 8-bit everywhere and exactly one square changes.

    ``__call__(image, generator=None)``: image (C, H, W) float in [0, 1] → new (C, H, W) tensor (the input is
    not modified). ``apply(image, generator)`` also returns the :class:`PatchParams` that were drawn.
    """

    def __init__(self, max_scale: float = 0.5, quantize: bool = True):
        if not 0.0 <= max_scale <= 1.0:
            raise ValueError(f"GaussianNoisePatch: max_scale must lie in [0, 1], got {max_scale}.")
        self.max_scale = float(max_scale)
        self.quantize = quantize

    def apply(self, image: torch.Tensor, generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, PatchParams]:
        _check_image(image, "GaussianNoisePatch")
        c, h, w = image.shape
        params = sample_patch(h, w, (0.0, self.max_scale), generator)
        t, l, a = params.top, params.left, params.side
        out = image.clone()
        noise = torch.randn((c, a, a), generator=generator, dtype=image.dtype) * params.strength
        patch = (out[:, t:t + a, l:l + a] + noise.to(image.device)).clamp_(0.0, 1.0)
        out[:, t:t + a, l:l + a] = quantize_8bit(patch) if self.quantize else patch
        return out, params

    def __call__(self, image: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        return self.apply(image, generator)[0]

    def __repr__(self) -> str:
        return f"GaussianNoisePatch(max_scale={self.max_scale}, quantize={self.quantize})"


def _reflect101_index(n: int, pad: int) -> torch.Tensor:
    """Source indices of a length-n axis padded by ``pad`` on both sides, mirrored without repeating the edge
    (OpenCV's BORDER_REFLECT_101, which the reference's ``cv2.GaussianBlur`` uses) for any pad, even > n."""
    idx = torch.arange(-pad, n + pad)
    if n == 1:
        return torch.zeros_like(idx)
    period = 2 * (n - 1)
    idx = idx.remainder(period)
    return torch.where(idx > n - 1, period - idx, idx)


def gaussian_blur_reflect(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (C, H, W) with reflect-101 borders; kernel radius round(3σ) (OpenCV's
    size rule for 8-bit images, ksize = 2·round(3σ)+1)."""
    radius = max(1, int(round(3.0 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(image.dtype)
    c, h, w = image.shape
    rows = image[:, _reflect101_index(h, radius), :]  # (C, H+2r, W)
    out = F.conv2d(rows[:, None], kernel.view(1, 1, -1, 1))[:, 0]
    cols = out[:, :, _reflect101_index(w, radius)]
    return F.conv2d(cols[:, None], kernel.view(1, 1, 1, -1))[:, 0]


class GaussianBlurPatch:
    """Ablation of the spec (not default): Gaussian blur of one random square patch, σ ~ U[sigma_range].

    The patch is blurred on its own (its borders mirrored, not its surroundings), then pasted back, as the
    reference ``AddPatchGaussianBlur`` does with ``cv2.GaussianBlur`` on the cropped patch.
    Same call signature as :class:`GaussianNoisePatch`.
    """

    def __init__(self, sigma_range: tuple[float, float] = (0.1, 2.0), quantize: bool = True):
        lo, hi = sigma_range
        if not 0.0 < lo <= hi:
            raise ValueError(f"GaussianBlurPatch: sigma_range must satisfy 0 < low <= high, got {sigma_range}.")
        self.sigma_range = (float(lo), float(hi))
        self.quantize = quantize

    def apply(self, image: torch.Tensor, generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, PatchParams]:
        _check_image(image, "GaussianBlurPatch")
        _, h, w = image.shape
        params = sample_patch(h, w, self.sigma_range, generator)
        t, l, a = params.top, params.left, params.side
        out = image.clone()
        patch = gaussian_blur_reflect(out[:, t:t + a, l:l + a], params.strength).clamp_(0.0, 1.0)
        out[:, t:t + a, l:l + a] = quantize_8bit(patch) if self.quantize else patch
        return out, params

    def __call__(self, image: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        return self.apply(image, generator)[0]

    def __repr__(self) -> str:
        return f"GaussianBlurPatch(sigma_range={self.sigma_range}, quantize={self.quantize})"
