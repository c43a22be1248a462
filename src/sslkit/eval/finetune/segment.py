"""Segmentation fine-tuning: per-pixel cross-entropy on up-sampled logits and the set-level confusion matrix
behind mIoU (:func:`sslkit.eval.segmentation.iou_from_confusion`, summed over the whole split as in
mmsegmentation)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from sslkit.eval.segmentation import confusion_matrix, iou_from_confusion

__all__ = ["miou_of", "pixel_loss", "segmentation_confusion"]


def pixel_loss(model: nn.Module, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Mean per-pixel cross-entropy of ``model(images)`` (B, C, H, W) against ``masks`` (B, H, W)."""
    return F.cross_entropy(model(images), masks)


@torch.no_grad()
def segmentation_confusion(model: nn.Module, loader: DataLoader, num_classes: int) -> torch.Tensor:
    """(C, C) pixel counts over ``loader``, rows = true class, columns = predicted class."""
    model.eval()
    device = next(model.parameters()).device
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    for images, masks in loader:
        confusion += confusion_matrix(model(images.to(device)).argmax(1).cpu(), masks, num_classes)
    return confusion


def miou_of(confusion: torch.Tensor) -> float:
    """Mean IoU over the classes that occur in the prediction or the target."""
    iou = iou_from_confusion(confusion)
    return float(iou[~torch.isnan(iou)].mean())
