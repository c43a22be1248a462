"""Masked-autoencoder pieces: patchify and the masked pixel loss.

He et al., "Masked Autoencoders Are Scalable Vision Learners", arXiv 2111.06377, Sec. 3: the loss is
the mean squared error between the reconstructed and original pixels of the *masked* patches only,
optionally with each target patch normalised by its own mean and variance ("norm_pix_loss", ε =
1e-6 as the official facebookresearch/mae ``models_mae.py``).
"""

from __future__ import annotations

import torch

__all__ = ["patchify", "unpatchify", "masked_patch_mse"]


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, p·p·C), patches row-major, each flattened as (p, p, C)."""
    b, c, h, w = images.shape
    p = patch_size
    if h % p or w % p:
        raise ValueError(f"patchify: image size {h}x{w} is not a multiple of the patch size {p}.")
    x = images.reshape(b, c, h // p, p, w // p, p)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify(patches: torch.Tensor, patch_size: int, grid: tuple[int, int], channels: int) -> torch.Tensor:
    """Inverse of :func:`patchify`: (B, N, p·p·C) -> (B, C, H, W)."""
    b = patches.shape[0]
    gh, gw = grid
    p = patch_size
    x = patches.reshape(b, gh, gw, p, p, channels)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(b, channels, gh * p, gw * p)


def masked_patch_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                     norm_pix: bool = True, eps: float = 1e-6) -> torch.Tensor:
    """Mean over masked patches of the per-patch mean squared error.

    Args:
        pred: (B, N, P) reconstructed patches; target: (B, N, P) pixel patches (``patchify``).
        mask: (B, N) bool, True where the patch was hidden from the encoder.
        norm_pix: normalise each target patch to zero mean, unit variance (unbiased variance,
            as the reference's ``var``) before comparing.
    """
    if pred.shape != target.shape or mask.shape != pred.shape[:2]:
        raise ValueError(f"masked_patch_mse: pred {tuple(pred.shape)}, target {tuple(target.shape)} and "
                         f"mask {tuple(mask.shape)} do not match.")
    target = target.to(pred.dtype)
    if norm_pix:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + eps).sqrt()
    per_patch = (pred - target).pow(2).mean(dim=-1)  # (B, N)
    weight = mask.to(per_patch.dtype)
    return (per_patch * weight).sum() / weight.sum().clamp_min(1.0)
