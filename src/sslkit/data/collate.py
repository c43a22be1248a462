"""Multi-crop batches for joint-embedding pretraining: crop-major stacking plus iBOT masks.

Crop-major order, as the reference (facebookresearch/dinov2 ``dinov2/data/collate.py``):
``global_crops = [g1 of all B; g2 of all B; ...]`` so chunk ``i`` of the batch is crop ``i``.
The iBOT masks are drawn here, at collate time, from a generator seeded by the batch's stream
position, so a batch is the same whether it is built in the main process or a worker, and after a
resume.
"""

from __future__ import annotations

import random

import torch

from sslkit.data.masking import sample_ibot_masks, sample_random_masks


class MultiCropCollate:
    """Collate items ``{"image": {"global": [...], "local": [...]}, "label", "position"}``.

    Returns ``global_crops`` (n_g*B, C, G, G), ``local_crops`` (n_l*B, C, L, L) (absent when there
    are no local crops), ``masks`` (n_g*B, (G/p)²) bool (iBOT blocks, or MAE's uniform random patches with
    ``random_mask_ratio`` set), ``labels`` (B,), ``positions`` (B,).
    """

    def __init__(self, patch_size: int, mask_probability: float = 0.5,
                 mask_ratio: tuple[float, float] = (0.1, 0.5), seed: int = 0,
                 random_mask_ratio: float | None = None):
        self.random_mask_ratio = random_mask_ratio
        self.patch_size = patch_size
        self.mask_probability = mask_probability
        self.mask_ratio = tuple(mask_ratio)
        self.seed = seed

    def __call__(self, items: list[dict]) -> dict:
        n_global = len(items[0]["image"]["global"])
        n_local = len(items[0]["image"]["local"])
        global_crops = torch.stack([it["image"]["global"][i] for i in range(n_global) for it in items])
        batch = {
            "global_crops": global_crops,
            "labels": torch.as_tensor([int(it.get("label", -1)) for it in items], dtype=torch.long),
            "positions": torch.as_tensor([int(it.get("position", 0)) for it in items], dtype=torch.long),
        }
        if "clean_global" in items[0]:  # denoised twins of the global crops (teacher guidance)
            batch["clean_global_crops"] = torch.stack([it["clean_global"][i] for i in range(n_global) for it in items])
        if n_local:
            batch["local_crops"] = torch.stack([it["image"]["local"][i] for i in range(n_local) for it in items])
        grid = (global_crops.shape[-2] // self.patch_size, global_crops.shape[-1] // self.patch_size)
        generator = random.Random(self.seed * 1_000_003 + int(batch["positions"][0]))
        if self.random_mask_ratio is not None:  # MAE: the same number of hidden patches on every crop
            batch["masks"] = sample_random_masks(global_crops.shape[0], grid[0] * grid[1], self.random_mask_ratio,
                                                 generator)
        else:
            batch["masks"] = sample_ibot_masks(global_crops.shape[0], grid, mask_probability=self.mask_probability,
                                               ratio_range=self.mask_ratio, generator=generator)
        return batch
