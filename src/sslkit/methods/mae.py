"""MAE: masked autoencoding — reconstruct the pixels of hidden patches from the visible ones.

He et al., "Masked Autoencoders Are Scalable Vision Learners", arXiv 2111.06377. The encoder (the
sslkit ViT) sees only the visible patches (``ViT.forward_visible``); ``MAEDecoder`` predicts every
patch; the loss is the MSE on the hidden patches (``functional.mae.masked_patch_mse``). Masks are
drawn at collate time (``MultiCropCollate(random_mask_ratio=0.75)``) so they are reproducible and
resume-exact like iBOT's.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from sslkit.data.collate import MultiCropCollate
from sslkit.data.masking import sample_random_masks
from sslkit.functional.mae import masked_patch_mse, patchify
from sslkit.methods.base import SSLMethod, pooled_backbone_problem
from sslkit.methods.registry import MethodSpec, register
from sslkit.nn.bounds import MAX_DEPTH, MAX_EMBED_DIM
from sslkit.nn.mae_decoder import MAEDecoder
from sslkit.nn.vit import ViT


@dataclass
class MAEConfig:
    """Recipe section ``mae:``: masked autoencoder (He et al., arXiv 2111.06377); decoder sized for small
    backbones."""

    mask_ratio: float = 0.75
    norm_pix_loss: bool = True
    decoder_dim: int = 128  # the reference pairs ViT-B with 512 x 8 blocks; this is a light default
    decoder_depth: int = 2
    decoder_num_heads: int = 4
    # The reference (facebookresearch/mae models_mae.py) passes the class token through the decoder; False
    # keeps it out (stable-pretraining's methods.MAE), so reconstruction never trains the CLS output directly.
    decoder_prefix_tokens: bool = True


class MAE(SSLMethod):
    """``forward(batch)`` reads ``global_crops`` (B', C, H, W) and ``masks`` (B', N); every crop is
    one sample. Returns ``loss``, ``reconstruction_loss`` and ``embedding`` (encoder CLS on the
    visible patches, detached)."""

    def __init__(self, backbone: ViT, decoder: MAEDecoder, norm_pix_loss: bool = True, mask_ratio: float = 0.75):
        super().__init__()
        self.student = nn.ModuleDict({"backbone": backbone, "decoder": decoder})
        self.norm_pix_loss = norm_pix_loss
        self.mask_ratio = mask_ratio  # what the collate hides; the held-out metric hides the same share

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

    def heldout_metrics(self, images: Dataset, seed: int = 0) -> dict[str, float]:
        """MAE's own objective on images it never trained on (see :func:`heldout_reconstruction_loss`)."""
        return {"heldout_reconstruction_loss": heldout_reconstruction_loss(self, images, self.mask_ratio,
                                                                           self.norm_pix_loss, seed=seed)}


@torch.no_grad()
def heldout_reconstruction_loss(mae: MAE, images: Dataset, mask_ratio: float, norm_pix: bool = True,
                                seed: int = 0, batch_size: int = 256) -> float:
    """Mean masked-patch MSE of ``mae`` over ``images``: the masked-patch loss on held-out images.

    The kNN of an MAE's features says little after a short run (its loss trains the patch tokens, and on
    easy data an autoencoder's features score like pixels); the reconstruction of hidden patches of
    unseen images is what it learns first. ``images`` follows the sslkit item protocol: items are dicts
    whose ``image`` is a normalised (C, H, W) tensor (the evaluation transform applied). The masks are
    drawn from ``random.Random(seed)`` in dataset order, so two models evaluated with the same seed see
    the same hidden patches. Averaged per hidden patch over the whole set (each batch weighted by its
    number of hidden patches).
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


def build(cfg, backbone: ViT, in_chans: int) -> MAE:
    a = cfg.mae
    decoder = MAEDecoder(backbone.embed_dim, backbone.patch_size, in_chans, dim=a.decoder_dim, depth=a.decoder_depth,
                         num_heads=a.decoder_num_heads, num_prefix_tokens=backbone.num_prefix_tokens,
                         decode_prefix_tokens=a.decoder_prefix_tokens)
    return MAE(backbone, decoder, norm_pix_loss=a.norm_pix_loss, mask_ratio=a.mask_ratio)


def check(cfg, need) -> None:
    c = cfg.crops
    need(c.n_local == 0, f"method 'mae' uses no local crops: set crops.n_local=0 (got {c.n_local}).")
    need(0 < cfg.mae.mask_ratio < 1, f"Config key 'mae.mask_ratio' must lie in (0, 1), got {cfg.mae.mask_ratio}.")


SPEC = register(MethodSpec(
    name="mae", config=MAEConfig, build=build, check=check,
    collate=lambda cfg: MultiCropCollate(cfg.model.patch_size, seed=cfg.trainer.seed,
                                         random_mask_ratio=cfg.mae.mask_ratio),
    ranges={"mask_ratio": "(0, 1)", "decoder_dim": f"[1, {MAX_EMBED_DIM}]", "decoder_depth": f"[1, {MAX_DEPTH}]",
            "decoder_num_heads": f"[1, {MAX_EMBED_DIM}]"},
    patch_token_problem=lambda cfg: pooled_backbone_problem(cfg, "MAE reconstructs patches"),
    runs_on_pooled_backbones=False,
    embedding_views=lambda cfg: cfg.crops.n_global,
    wrap_units=(MAEDecoder,),
    evaluated="encoder",
))
