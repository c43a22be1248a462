"""DINOv2 multi-crop augmentation and the matching evaluation transform, on tensors.

Both take a (C, H, W) float image in [0, 1] — what every sslkit dataset returns; the multi-crop also
takes an 8-bit file's uint8 pixels, which pretraining's stream hands it — and work on tensors throughout
(no PIL round trip): crops and resizes use torchvision.transforms.v2.functional; the photometric ops are
batched re-statements of torchvision's, applied to all crops of one size at once (tests check they agree).
Randomness comes from torch's global generator, so ``torch.manual_seed`` makes
them reproducible (DataLoader workers reseed it per worker).

Example::

    aug = MultiCropAugmentation(global_size=32, local_size=16, mean=ds.mean, std=ds.std)
    views = aug(ds[0]["image"])   # {"global": [2 x (3, 32, 32)], "local": [8 x (3, 16, 16)]}
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from sslkit.data.errors import DataError

__all__ = ["MultiCropAugmentation", "EvalTransform"]

_BLUR_KERNEL = 9
_SOLARIZE_THRESHOLD = 0.5  # = 128 on the 8-bit scale of the reference
_RATIO = (3 / 4, 4 / 3)  # RandomResizedCrop's aspect-ratio range (width / height)


def _blur_kernel(crop_size: int) -> int:
    """The reference kernel 9, capped at the largest odd size ≤ the crop (reflect padding needs it)."""
    largest_odd = crop_size if crop_size % 2 == 1 else crop_size - 1
    return max(1, min(_BLUR_KERNEL, largest_odd))


def _check_stats(mean: Sequence[float], std: Sequence[float], channels: int, who: str) -> None:
    if channels not in (1, 3):
        raise DataError(f"{who}: channels must be 1 or 3, got {channels!r}.")
    if len(mean) != channels or len(std) != channels:
        raise DataError(
            f"{who}: mean and std need {channels} value(s) each for {channels}-channel images, "
            f"got {len(mean)} and {len(std)}; pass the dataset's mean/std."
        )


# ---------------------------------------------------------------- per-crop batched ops
#
# Each op takes a batch of crops x: (N, C, H, W) in [0, 1] and one parameter per crop,
# and computes what the torchvision.transforms.v2 functional op of the same name
# computes for each crop (tests compare them). Batching the crops of one size is what
# makes ten views per image cheap: Python overhead is paid per batch, not per crop.

_GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights
_HUE_CHANNEL_OFFSETS = (5.0, 3.0, 1.0)  # n for R, G, B in the HSV -> RGB ramp


def _gray(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 1, H, W) luma."""
    r, g, b = x.unbind(dim=1)
    return (_GRAY_WEIGHTS[0] * r + _GRAY_WEIGHTS[1] * g + _GRAY_WEIGHTS[2] * b).unsqueeze(1)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    factor = factor.view(-1, 1, 1, 1)
    return (factor * x + (1 - factor) * other).clamp_(0.0, 1.0)


def _adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """x: (N, C, H, W), factor: (N,) — as ``TF.adjust_brightness`` per crop."""
    return (x * factor.view(-1, 1, 1, 1)).clamp_(0.0, 1.0)


def _adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """x: (N, C, H, W), factor: (N,) — blend with each crop's mean luma, as ``TF.adjust_contrast``."""
    luma = _gray(x) if x.shape[1] == 3 else x
    return _blend(x, luma.mean(dim=(1, 2, 3), keepdim=True), factor)


def _adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """x: (N, 3, H, W), factor: (N,) — blend with the per-pixel luma, as ``TF.adjust_saturation``."""
    return _blend(x, _gray(x), factor)


def _adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """x: (N, 3, H, W), shift: (N,) in [-0.5, 0.5] turns — rotate hue in HSV, as ``TF.adjust_hue``.

    Uses value·saturation = chroma, so HSV -> RGB is value − chroma·ramp(k) per channel
    with k = (n + 6·hue) mod 6, n = 5, 3, 1 for R, G, B: few ops, no saturation division.
    The hue sector is chosen as torchvision does (R if it is the maximum, else G, else B) with
    ``amax``/``amin`` and comparisons: ``max(dim=1)`` with its argmax is ~40x slower on CPU.
    """
    r, g, b = x.unbind(dim=1)  # (N, H, W) each
    value = x.amax(dim=1)
    chroma = value - x.amin(dim=1)
    # Hue sector numerators for max = R, G, B; grey pixels have chroma 0 and numerator 0.
    numerator = torch.where(value == r, g - b, torch.where(value == g, (b - r).add_(chroma, alpha=2),
                                                             (r - g).add_(chroma, alpha=4)))
    hue6 = numerator.div_(chroma.clamp_min(1e-12)).add_(6 * shift.view(-1, 1, 1).to(x.dtype))  # in [-4, 8)
    hue6 = torch.remainder(hue6, 6.0)
    out = torch.empty_like(x)
    for channel, offset in enumerate(_HUE_CHANNEL_OFFSETS):
        k = torch.remainder(hue6 + offset, 6.0)
        ramp = torch.minimum(k, 4 - k).clamp_(0.0, 1.0)
        torch.sub(value, chroma * ramp, out=out[:, channel])
    return out.clamp_(0.0, 1.0)


def _grayscale(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 3, H, W) luma repeated, as ``TF.rgb_to_grayscale(num_output_channels=3)``."""
    return _gray(x).expand_as(x).clone()


def _gaussian_blur(x: torch.Tensor, kernel_size: int, sigma: torch.Tensor) -> torch.Tensor:
    """x: (N, C, H, W), sigma: (N,) — Gaussian blur with reflect padding, as ``TF.gaussian_blur``.

    The blur is separable: one depthwise convolution along the rows and one along the columns, every
    (crop, channel) plane its own group with its crop's kernel. On 96–224 px crops this is 2–3x faster than
    building each crop's blur as a dense matrix and multiplying (it touches k taps per pixel, not S).
    """
    n, c, height, width = x.shape
    half = (kernel_size - 1) / 2
    offsets = torch.linspace(-half, half, kernel_size, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (offsets / sigma.view(-1, 1).to(x.dtype)) ** 2)
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # (N*C, k)
    pad = kernel_size // 2
    planes = F.pad(x.reshape(1, n * c, height, width), (pad, pad, pad, pad), mode="reflect")
    planes = F.conv2d(planes, kernel.view(n * c, 1, 1, kernel_size), groups=n * c)
    planes = F.conv2d(planes, kernel.view(n * c, 1, kernel_size, 1), groups=n * c)
    return planes.view(n, c, height, width)


def _solarize(x: torch.Tensor, threshold: float = _SOLARIZE_THRESHOLD) -> torch.Tensor:
    """Invert pixels ≥ threshold, as ``TF.solarize`` on [0, 1] floats."""
    return torch.where(x >= threshold, 1.0 - x, x)


def _sample_crop_boxes(
    n: int, height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float] = (3 / 4, 4 / 3)
) -> list[tuple[int, int, int, int]]:
    """``n`` RandomResizedCrop boxes (top, left, h, w) by torchvision's rule: up to 10 tries of
    area ~ U(scale)·HW and log-uniform aspect ratio, else a centre crop with the ratio clamped.

    All random numbers are drawn up front from torch's generator (so ``torch.manual_seed``
    governs them), then the per-crop logic runs on plain Python floats, which is far
    cheaper than indexing tensors element by element.
    """
    area = height * width
    tries = 10
    targets = (area * torch.empty(n, tries).uniform_(scale[0], scale[1])).tolist()
    aspects = torch.exp(torch.empty(n, tries).uniform_(math.log(ratio[0]), math.log(ratio[1]))).tolist()
    corners = torch.rand(n, 2).tolist()
    boxes = []
    for target_row, aspect_row, (u_top, u_left) in zip(targets, aspects, corners):
        for target, aspect in zip(target_row, aspect_row):
            w = round(math.sqrt(target * aspect))
            h = round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                boxes.append((int(u_top * (height - h + 1)), int(u_left * (width - w + 1)), h, w))
                break
        else:
            in_ratio = width / height
            if in_ratio < ratio[0]:
                w, h = width, int(round(width / ratio[0]))
            elif in_ratio > ratio[1]:
                h, w = height, int(round(height * ratio[1]))
            else:
                w, h = width, height
            boxes.append(((height - h) // 2, (width - w) // 2, h, w))
    return boxes


def _on_subset(x: torch.Tensor, chosen: list[bool], op, param: torch.Tensor | None = None) -> torch.Tensor:
    """Apply ``op`` to the crops x[chosen] (with their per-crop ``param``), writing them back into ``x``.

    ``chosen`` is a Python list so the empty/full checks cost no tensor ops; full
    batches skip the gather/scatter. ``x`` is the caller's own batch: it is updated in place (copying the
    whole batch for every op of every crop subset was a sixth of the augmentation's time).
    """
    index = [i for i, c in enumerate(chosen) if c]
    if not index:
        return x
    if len(index) == len(chosen):
        return op(x) if param is None else op(x, param)
    first, last = index[0], index[-1] + 1
    if last - first == len(index):  # a run of neighbours (one crop, say): a view, no gather
        x[first:last] = op(x[first:last]) if param is None else op(x[first:last], param[first:last])
        return x
    index_t = torch.tensor(index)
    out = op(x[index_t]) if param is None else op(x[index_t], param[index_t])
    return x.index_copy_(0, index_t, out)


class _CropGroup:
    """Crops of one output size, augmented together; crop j has its own blur/solarize probability."""

    def __init__(self, size: int, scale: tuple[float, float], blur_p: list[float], solarize_p: list[float]):
        self.size, self.scale = size, scale
        self.blur_p = torch.tensor(blur_p)
        self.solarize_p = torch.tensor(solarize_p)
        self.kernel = _blur_kernel(size)


def _as_input(image: torch.Tensor) -> torch.Tensor:
    """uint8 stays uint8 (0-255); anything else becomes float32 in [0, 1] as before."""
    return image if image.dtype == torch.uint8 else image.float()


class MultiCropAugmentation:
    """DINOv2 multi-crop views of one image (dinov2.md step 1).

    Per crop, in order:
      1. RandomResizedCrop (global: ``global_scale``, local: ``local_scale``; ratio 3/4–4/3;
         bicubic, antialias), then clamp to [0, 1] (bicubic overshoots);
      2. flip with probability ``flip`` (horizontal, or vertical with ``flip_axis="vertical"``
         as in the domain-pretraining recipe);
      3. ColorJitter(``jitter_strength`` = brightness, contrast, saturation, hue; the four
         in a random order) with probability ``color_jitter``, then grayscale with
         probability ``grayscale``;
      4. Gaussian blur, kernel 9 (capped at the largest odd size ≤ the crop), σ ~ U(``blur_sigma``):
         p ``global_blur_p`` = (1.0, 0.1) on globals 1 and 2 (SimCLR: 0.5 on both), global 2 followed by
         solarize(0.5) with p ``solarize``, p 0.5 on locals;
      5. clamp to [0, 1], normalise with ``mean``/``std``.
    Global crops beyond the second use global 2's pipeline. ``blur=False`` turns step 4 off. Every random draw is
    independent per crop, from torch's global generator.

    ``channels=1``: saturation, hue and grayscale do not apply to one channel and are
    skipped; brightness and contrast still act. A strength or probability of 0 disables
    that op (e.g. ``jitter_strength=(0.4, 0.4, 0.2, 0.0)`` for no hue jitter).

    Crops are cut with ``torchvision.transforms.v2.functional.resized_crop``; the
    photometric ops are applied to all crops of one size at once with per-crop
    parameters, computing what the torchvision ops compute crop by crop.

    Input: (C, H, W) float in [0, 1], or uint8 in [0, 255] (what ``load_image(..., keep_uint8=True)`` gives
    for 8-bit files; crops are then cut as uint8 and converted afterwards, see ``accepts_uint8``). Output:
    ``{"global": [n_global x (C, G, G)], "local": [n_local x (C, L, L)]}``, normalised.
    """

    # AugmentedStream hands this transform undivided uint8 pixels of 8-bit files (data/stream.py).
    accepts_uint8 = True

    def __init__(
        self,
        global_size: int,
        local_size: int,
        n_global: int = 2,
        n_local: int = 8,
        global_scale: tuple[float, float] = (0.32, 1.0),
        local_scale: tuple[float, float] = (0.05, 0.32),
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
        channels: int = 3,
        color_jitter: float = 0.8,
        grayscale: float = 0.2,
        blur_sigma: tuple[float, float] = (0.1, 2.0),
        solarize: float = 0.2,
        flip: float = 0.5,
        flip_axis: str = "horizontal",
        jitter_strength: tuple[float, float, float, float] = (0.4, 0.4, 0.2, 0.1),
        blur: bool = True,
        global_blur_p: tuple[float, float] = (1.0, 0.1),
    ):
        _check_stats(mean, std, channels, "MultiCropAugmentation")
        if n_global < 1 or n_local < 0:
            raise DataError(
                f"MultiCropAugmentation: need n_global >= 1 and n_local >= 0, got {n_global} and {n_local}."
            )
        if flip_axis not in ("horizontal", "vertical"):
            raise DataError(
                f"MultiCropAugmentation: flip_axis must be 'horizontal' or 'vertical', got {flip_axis!r}."
            )
        self.global_size, self.local_size = global_size, local_size
        self.n_global, self.n_local = n_global, n_local
        self.channels = channels
        self.color_jitter, self.grayscale, self.flip = color_jitter, grayscale, flip
        self.flip_dim = -1 if flip_axis == "horizontal" else -2
        self.blur_sigma = blur_sigma
        brightness, contrast, saturation, hue = jitter_strength
        if channels == 1:
            saturation, hue = 0.0, 0.0
        # (op, low, high) for each jitter op that is on; factors ~ U(low, high) as in ColorJitter.
        self.jitter_ops = [
            (op, low, high)
            for op, low, high, on in (
                (_adjust_brightness, max(0.0, 1 - brightness), 1 + brightness, brightness > 0),
                (_adjust_contrast, max(0.0, 1 - contrast), 1 + contrast, contrast > 0),
                (_adjust_saturation, max(0.0, 1 - saturation), 1 + saturation, saturation > 0),
                (_adjust_hue, -hue, hue, hue > 0),
            )
            if on
        ]
        self.mean = torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1)
        on = 1.0 if blur else 0.0
        self.groups = [
            _CropGroup(global_size, global_scale,
                       blur_p=[global_blur_p[0] * on] + [global_blur_p[1] * on] * (n_global - 1),
                       solarize_p=[0.0] + [solarize] * (n_global - 1)),
            _CropGroup(local_size, local_scale, blur_p=[0.5 * on] * n_local, solarize_p=[0.0] * n_local),
        ]

    def _crops(self, image: torch.Tensor, group: _CropGroup) -> torch.Tensor:
        """(C, H, W) -> (N, C, S, S) augmented, normalised crops of one group."""
        n = len(group.blur_p)
        _, height, width = image.shape
        boxes = _sample_crop_boxes(n, height, width, group.scale)
        x = torch.stack([
            TF.resized_crop(image, top, left, h, w, [group.size, group.size],
                            interpolation=v2.InterpolationMode.BICUBIC, antialias=True)
            for top, left, h, w in boxes
        ])
        # A uint8 image is cut and resized as uint8 (half the cost of float; the result saturates at 0 and 255
        # and is rounded to 1/255) and only the small crops become floats.
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.clamp_(0.0, 1.0)
        # All random draws happen up front, in a fixed order, from torch's generator.
        flip = torch.rand(n) < self.flip
        apply = torch.rand(n) < self.color_jitter
        factors = torch.stack([torch.empty(n).uniform_(low, high) for _, low, high in self.jitter_ops]) \
            if self.jitter_ops else torch.empty(0, n)  # (n_ops, N)
        order = torch.argsort(torch.rand(n, len(self.jitter_ops)), dim=1)  # a permutation per crop
        gray = torch.rand(n) < self.grayscale
        blur = torch.rand(n) < group.blur_p
        sigma = torch.empty(n).uniform_(*self.blur_sigma)
        solar = torch.rand(n) < group.solarize_p

        x = _on_subset(x, flip.tolist(), lambda crops: crops.flip(self.flip_dim))
        # Jitter step by step: at each step a crop applies the op its permutation names.
        plan = torch.where(apply.view(-1, 1), order, torch.full_like(order, -1)).tolist()  # (N, n_ops)
        for step in range(len(self.jitter_ops)):
            for op_id, (op, _, _) in enumerate(self.jitter_ops):
                x = _on_subset(x, [row[step] == op_id for row in plan], op, factors[op_id])
        if self.channels == 3 and self.grayscale > 0:
            x = _on_subset(x, gray.tolist(), _grayscale)
        if group.kernel > 1:
            x = _on_subset(x, blur.tolist(), lambda crops, s: _gaussian_blur(crops, group.kernel, s), sigma)
        x = _on_subset(x, solar.tolist(), _solarize)
        return (x.clamp_(0.0, 1.0) - self.mean) / self.std

    def decode_reduction(self, width: int, height: int) -> int:
        """The largest r in (1, 2, 4, 8) by which a ``width`` x ``height`` image may be shrunk before cropping
        (JPEG draft decoding) such that even the smallest crop any group can draw still covers at least its
        output size in pixels, i.e. no crop is enlarged that the full image would have let shrink.

        The crop boxes are drawn on the reduced image by the same rule and the same random numbers; the rule is
        scale-free (area fraction, aspect ratio, relative position), so each box is the full-size box scaled by
        1/r up to integer rounding, and the distribution of crops is unchanged. For 500x375 photos and DINOv2's
        224/96 crops r is 1 (the smallest global crop is 212 px on its short side); for a 4000x3000 photo, 4.
        """
        allowed = min(math.sqrt(group.scale[0] * width * height * _RATIO[0]) / group.size for group in self.groups
                      if len(group.blur_p))
        return next(r for r in (8, 4, 2, 1) if r <= allowed or r == 1)

    def global_views(self, image: torch.Tensor) -> list[torch.Tensor]:
        """The global crops only. Their random draws come first in :meth:`__call__`, so under the same
        RNG state they equal ``self(image)["global"]`` — which pairs the crops of a noisy image and
        its denoised copy (noisy-dinov2.md step 5: shared crop box, flip, jitter, blur, solarize)."""
        return list(self._crops(_as_input(image), self.groups[0]).unbind(0))

    def __call__(self, image: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        if image.ndim != 3 or image.shape[0] != self.channels:
            raise DataError(
                f"MultiCropAugmentation expects a ({self.channels}, H, W) image, got shape "
                f"{tuple(image.shape)}; set channels= to match the dataset."
            )
        image = _as_input(image)
        global_group, local_group = self.groups
        views = {"global": self.global_views(image), "local": []}
        if self.n_local:
            views["local"] = list(self._crops(image, local_group).unbind(0))
        return views


class EvalTransform:
    """Deterministic evaluation view: resize the short side to ``size`` (bicubic, antialias),
    centre-crop ``size`` x ``size``, clamp to [0, 1], normalise.

    Input (C, H, W) float in [0, 1]; output (C, size, size). For square inputs the crop
    is a no-op, so this is a plain resize.
    """

    def __init__(self, size: int, mean: Sequence[float], std: Sequence[float]):
        self.size = size
        self.mean, self.std = list(mean), list(std)
        if len(self.mean) != len(self.std):
            raise DataError(f"EvalTransform: mean has {len(self.mean)} values but std has {len(self.std)}.")

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if image.ndim != 3 or image.shape[0] != len(self.mean):
            raise DataError(
                f"EvalTransform expects a ({len(self.mean)}, H, W) image, got shape {tuple(image.shape)}; "
                "pass the dataset's mean/std."
            )
        image = TF.resize(image.float(), self.size, interpolation=v2.InterpolationMode.BICUBIC, antialias=True)
        image = TF.center_crop(image, [self.size, self.size]).clamp_(0.0, 1.0)
        return TF.normalize(image, self.mean, self.std)
