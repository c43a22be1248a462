"""iBOT block masks for the global crops (BEiT-style block generator).

Reference: arXiv 2304.07193 (iBOT patch objective), Bao et al. "BEiT" (arXiv 2106.08254)
for the block generator, and facebookresearch/dinov2 ``dinov2/data/masking.py`` /
``dinov2/data/collate.py`` for the per-batch mask ratios.

Randomness comes from a ``random.Random`` instance (or the ``random`` module itself when
none is given, which ``lightning.seed_everything`` and DataLoader workers seed). It is the
natural fit for the many scalar draws of the generator (uniform, randint, shuffle) and
mirrors the reference, which uses Python's ``random``. Pass ``random.Random(seed)`` for
reproducible masks.
"""

from __future__ import annotations

import math
import random
from typing import Protocol

import torch

__all__ = ["sample_block_mask", "sample_ibot_masks", "sample_random_masks"]


class _ScalarRNG(Protocol):  # random.Random or the random module
    def uniform(self, a: float, b: float) -> float: ...
    def randint(self, a: int, b: int) -> int: ...
    def shuffle(self, x: list) -> None: ...


def _add_one_block(
    mask: torch.Tensor,
    cap: int,
    rng: _ScalarRNG,
    min_area: float,
    log_aspect: tuple[float, float],
) -> int:
    """Try up to 10 rectangles; mask the first that adds between 1 and ``cap`` new cells.

    Mutates ``mask`` (H, W) in place and returns the number of newly masked cells (0 if
    every try was rejected).
    """
    height, width = mask.shape
    for _ in range(10):
        area = rng.uniform(min_area, cap)
        aspect = math.exp(rng.uniform(*log_aspect))
        h = int(round(math.sqrt(area * aspect)))
        w = int(round(math.sqrt(area / aspect)))
        if h >= height or w >= width:
            continue
        top = rng.randint(0, height - h)
        left = rng.randint(0, width - w)
        block = mask[top : top + h, left : left + w]
        newly_masked = h * w - int(block.sum())
        if 0 < newly_masked <= cap:
            block.fill_(True)
            return newly_masked
    return 0


def sample_block_mask(
    grid_hw: tuple[int, int],
    num_masked_target: int,
    generator: _ScalarRNG | None = None,
    min_area: float = 4,
    aspect: tuple[float, float] = (0.3, 1 / 0.3),
    max_fraction: float = 0.5,
) -> torch.Tensor:
    """One crop's block mask with at most ``num_masked_target`` masked patches.

    While fewer than the target are masked: ``cap = min(target - masked, max_block)``
    with ``max_block = floor(max_fraction * H * W)``; up to 10 tries draw
    ``area ~ U(min_area, cap)``, ``aspect = exp(U(ln a_lo, ln a_hi))``,
    ``h = round(sqrt(area aspect))``, ``w = round(sqrt(area / aspect))`` with ``h < H``,
    ``w < W`` and a uniform top-left corner; a rectangle is accepted when it masks
    between 1 and ``cap`` new patches. Sampling stops when a round adds nothing.

    Args:
        grid_hw: patch grid ``(H, W)``.
        num_masked_target: target number of masked patches.
        generator: ``random.Random`` (default: the global ``random`` module).
        min_area: smallest block area in patches.
        aspect: ``(min, max)`` block aspect ratio ``h / w``.
        max_fraction: largest block as a fraction of ``H * W``.

    Returns:
        ``(H * W,)`` bool mask, row-major.
    """
    height, width = grid_hw
    if height < 1 or width < 1:
        raise ValueError(f"grid_hw must be a positive (H, W) patch grid, got {grid_hw}.")
    rng = random if generator is None else generator
    # The reference computes the cap as 0.5 * N with floor division; floor keeps it an int.
    max_block = int(math.floor(max_fraction * height * width))
    log_aspect = (math.log(aspect[0]), math.log(aspect[1]))
    mask = torch.zeros(height, width, dtype=torch.bool)
    masked = 0
    while masked < num_masked_target:
        cap = min(num_masked_target - masked, max_block)
        added = _add_one_block(mask, cap, rng, min_area, log_aspect)
        if added == 0:
            break
        masked += added
    return mask.flatten()


def sample_ibot_masks(
    n_crops: int,
    grid_hw: tuple[int, int],
    mask_probability: float = 0.5,
    ratio_range: tuple[float, float] = (0.1, 0.5),
    generator: _ScalarRNG | None = None,
) -> torch.Tensor:
    """Masks for a batch's ``n_crops = 2B`` global crops.

    ``n_m = floor(mask_probability * n_crops)`` crops are masked; with edges
    ``r = linspace(r_lo, r_hi, n_m + 1)``, masked crop ``i`` targets
    ``floor(N * U(r_i, r_{i+1}))`` patches, so the batch spans the whole ratio range.
    The other crops get all-False masks, and the list is shuffled over crops.

    Args:
        n_crops: number of global crops (rows).
        grid_hw: patch grid ``(H, W)``, ``N = H * W``.
        mask_probability: fraction of crops that are masked.
        ratio_range: ``(r_lo, r_hi)`` fraction of masked patches.
        generator: ``random.Random`` (default: the global ``random`` module).

    Returns:
        ``(n_crops, N)`` bool masks.
    """
    if n_crops < 0:
        raise ValueError(f"n_crops must be non-negative, got {n_crops}.")
    if not 0.0 <= mask_probability <= 1.0:
        raise ValueError(f"mask_probability must lie in [0, 1], got {mask_probability}.")
    lo, hi = ratio_range
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"ratio_range must satisfy 0 <= low <= high <= 1, got {ratio_range}.")
    rng = random if generator is None else generator
    height, width = grid_hw
    n_patches = height * width
    n_masked = int(math.floor(mask_probability * n_crops))
    edges = [lo + (hi - lo) * i / n_masked for i in range(n_masked + 1)] if n_masked else []
    masks = [
        sample_block_mask(grid_hw, int(n_patches * rng.uniform(edges[i], edges[i + 1])), rng)
        for i in range(n_masked)
    ]
    masks += [torch.zeros(n_patches, dtype=torch.bool) for _ in range(n_crops - n_masked)]
    rng.shuffle(masks)
    if not masks:
        return torch.zeros(0, n_patches, dtype=torch.bool)
    return torch.stack(masks)


def sample_random_masks(n: int, num_patches: int, ratio: float, generator: random.Random) -> torch.Tensor:
    """MAE masks: (n, num_patches) bool with exactly ``round(ratio * num_patches)`` True per row,
    chosen uniformly at random (He et al., arXiv 2111.06377, Sec. 3 "random sampling").

    A fixed count per row lets the encoder gather the visible tokens into a dense (n, N_visible, D)
    batch. At least one patch stays visible and at least one is masked.
    """
    if not 0 < ratio < 1:
        raise ValueError(f"MAE mask ratio must lie strictly between 0 and 1, got {ratio}.")
    n_masked = min(max(1, round(ratio * num_patches)), num_patches - 1)
    masks = torch.zeros(n, num_patches, dtype=torch.bool)
    for row in range(n):
        masks[row, generator.sample(range(num_patches), n_masked)] = True
    return masks
