"""MAE: masked autoencoding — reconstruct the pixels of hidden patches from the visible ones.

He et al., "Masked Autoencoders Are Scalable Vision Learners", arXiv 2111.06377. The encoder (the
sslkit ViT) sees only the visible patches (``ViT.forward_visible``); ``MAEDecoder`` predicts every
patch; the loss is the MSE on the hidden patches (``functional.mae.masked_patch_mse``). Masks are
drawn at collate time (``MultiCropCollate(random_mask_ratio=0.75)``) so they are reproducible and
resume-exact like iBOT's.
"""

from __future__ import annotations

import torch
from torch import nn

from sslkit.functional.mae import masked_patch_mse, patchify
from sslkit.methods.base import SSLMethod
from sslkit.nn.mae_decoder import MAEDecoder
from sslkit.nn.vit import ViT


class MAE(SSLMethod):
    """``forward(batch)`` reads ``global_crops`` (B', C, H, W) and ``masks`` (B', N); every crop is
    one sample. Returns ``loss``, ``reconstruction_loss`` and ``embedding`` (encoder CLS on the
    visible patches, detached)."""

    def __init__(self, backbone: ViT, decoder: MAEDecoder, norm_pix_loss: bool = True):
        super().__init__()
        self.student = nn.ModuleDict({"backbone": backbone, "decoder": decoder})
        self.norm_pix_loss = norm_pix_loss

    def reconstruct(self, images: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Predicted patches (B, N, p²C) and the encoder outputs."""
        enc = self.student["backbone"].forward_visible(images, masks)
        return self.student["decoder"](enc["tokens"], masks, enc["grid"]), enc

    def forward(self, batch: dict) -> dict:
        images, masks = batch["global_crops"], batch["masks"]
        pred, enc = self.reconstruct(images, masks)
        target = patchify(images, self.student["backbone"].patch_size)
        loss = masked_patch_mse(pred, target, masks, norm_pix=self.norm_pix_loss)
        return {"loss": loss, "reconstruction_loss": loss.detach(), "embedding": enc["cls"].detach()}
