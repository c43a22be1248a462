"""The networks a fine-tuning run trains end to end: a backbone plus a task head.

* :class:`Classifier`: a linear layer on the class token (sslkit / timm ViTs) or the model's own pooled
  features (timm CNNs, user modules).
* :class:`Segmenter` with a ``linear`` head: a 1×1 convolution (a linear map per patch token) on the last
  block's patch tokens, logits up-sampled bilinearly to the mask, as the frozen probe
  (:mod:`sslkit.eval.segmentation`) does.
* :class:`Segmenter` with a ``multilevel`` head: the patch tokens of the last ``levels`` blocks concatenated
  (DINOv2's "ms"/"linear4" segmentation heads, facebookresearch/dinov2 ``dinov2/eval/segmentation``, which
  put BatchNorm and a 1×1 convolution on them), here BatchNorm, a 3×3 convolution to 64 channels, GELU and a
  1×1 convolution to the classes, then the same up-sampling. CNN feature maps of different resolutions are
  resized to the first (finest) one before they are concatenated.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sslkit.config import ConfigError

__all__ = ["Classifier", "Segmenter", "feature_maps", "pooled_features"]

MULTILEVEL_WIDTH = 64


def pooled_features(backbone: nn.Module, kind: str, images: torch.Tensor) -> torch.Tensor:
    """(B, D) image features: an sslkit ViT's class token, a timm model's pre-logits, a module's output."""
    if kind == "sslkit":
        return backbone.forward_features(images)["cls"]
    if kind == "timm":
        return backbone.forward_head(backbone.forward_features(images), pre_logits=True).flatten(1)
    out = backbone(images)
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        raise ConfigError(f"{type(backbone).__name__} must return features (B, D) to be fine-tuned for "
                          "classification.")
    return out


def feature_maps(backbone: nn.Module, kind: str, images: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """The last ``levels`` blocks' patch tokens as (B, D, h, w) maps (for ViTs after the final norm)."""
    if kind == "sslkit" and levels == 1:
        out = backbone.forward_features(images)
        b, n, d = out["patch"].shape
        return [out["patch"].transpose(1, 2).reshape(b, d, *out["grid"])]
    if kind not in ("sslkit", "timm") or not hasattr(backbone, "forward_intermediates"):
        raise ConfigError(f"Segmentation fine-tuning needs a ViT or a timm model with feature maps; "
                          f"{type(backbone).__name__} has none.")
    extra = {"norm": True} if hasattr(backbone, "blocks") else {}
    return list(backbone.forward_intermediates(images, indices=levels, output_fmt="NCHW",
                                               intermediates_only=True, **extra))


class Classifier(nn.Module):
    """``backbone`` → pooled features (D) → ``nn.Linear(D, num_classes)``."""

    def __init__(self, backbone: nn.Module, kind: str, num_classes: int, dim: int):
        super().__init__()
        self.backbone, self.kind = backbone, kind
        self.head = nn.Linear(dim, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(pooled_features(self.backbone, self.kind, images))


class Segmenter(nn.Module):
    """``backbone`` → patch-token maps → head → logits (B, C, H, W) at the input resolution."""

    def __init__(self, backbone: nn.Module, kind: str, num_classes: int, dims: list[int], head: str):
        super().__init__()
        self.backbone, self.kind, self.levels = backbone, kind, len(dims)
        if head == "linear":
            self.head = nn.Conv2d(dims[-1], num_classes, kernel_size=1)
        else:
            self.head = nn.Sequential(nn.BatchNorm2d(sum(dims)),
                                      nn.Conv2d(sum(dims), MULTILEVEL_WIDTH, kernel_size=3, padding=1), nn.GELU(),
                                      nn.Conv2d(MULTILEVEL_WIDTH, num_classes, kernel_size=1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        maps = feature_maps(self.backbone, self.kind, images, self.levels)
        if self.levels > 1:
            grid = maps[0].shape[-2:]
            maps = [m if m.shape[-2:] == grid else F.interpolate(m, size=grid, mode="bilinear", align_corners=False)
                    for m in maps]
        logits = self.head(torch.cat(maps, dim=1))
        return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)
