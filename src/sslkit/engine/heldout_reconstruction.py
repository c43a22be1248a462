"""MAE's own objective on held-out images: the masked-patch loss on images the run never trained on.

The kNN of an MAE's features says little after a short run (its loss trains the patch tokens, and on
easy data an autoencoder's features score like pixels); the reconstruction of hidden patches of
unseen images is what it learns first. ``pretrain`` reports it for the trained and the random-init
MAE side by side (``report.json`` key ``heldout_reconstruction_loss``).
"""

from __future__ import annotations

import random

import torch
from torch.utils.data import DataLoader, Dataset

from sslkit.data.masking import sample_random_masks
from sslkit.functional.mae import masked_patch_mse, patchify


@torch.no_grad()
def heldout_reconstruction_loss(mae: torch.nn.Module, images: Dataset, mask_ratio: float, norm_pix: bool = True,
                                seed: int = 0, batch_size: int = 256) -> float:
    """Mean masked-patch MSE of ``mae`` (an ``sslkit.methods.mae.MAE``) over ``images``.

    ``images`` follows the sslkit item protocol: items are dicts whose ``image`` is a normalised
    (C, H, W) tensor (the evaluation transform applied). The masks are drawn from ``random.Random(seed)`` in dataset order, so two models
    evaluated with the same seed see the same hidden patches. Averaged per hidden patch over the
    whole set (each batch weighted by its number of hidden patches).
    """
    backbone = mae.student["backbone"]
    was_training = mae.training
    mae.eval()
    rng = random.Random(seed)
    total, count = 0.0, 0
    for batch in DataLoader(images, batch_size=batch_size, shuffle=False):
        x = batch["image"]
        target = patchify(x, backbone.patch_size)
        masks = sample_random_masks(x.shape[0], target.shape[1], mask_ratio, rng)
        pred, _ = mae.reconstruct(x, masks)
        hidden = int(masks.sum())
        total += float(masked_patch_mse(pred, target, masks, norm_pix=norm_pix)) * hidden
        count += hidden
    mae.train(was_training)
    return total / max(count, 1)
