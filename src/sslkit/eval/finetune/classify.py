"""Classification fine-tuning: the batch loss (timm's Mixup / CutMix with label smoothing and
``SoftTargetCrossEntropy``, or plain smoothed cross-entropy when both are off) and the predictions."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from sslkit.eval.finetune.config import FinetuneConfig

__all__ = ["accuracy", "classification_loss", "mixup_of", "predict"]


def mixup_of(config: FinetuneConfig, num_classes: int):
    """timm's ``Mixup`` (per batch: mixup with Beta(α, α) or, half the time when both are on, cutmix with
    Beta(β, β); targets one-hot, smoothed, mixed), or None when mixup and cutmix are off."""
    if not config.mixes:
        return None
    from timm.data import Mixup

    return Mixup(mixup_alpha=config.mixup, cutmix_alpha=config.cutmix, label_smoothing=config.label_smoothing,
                 num_classes=num_classes)


def classification_loss(config: FinetuneConfig, num_classes: int) -> Callable:
    """``batch_loss(model, images, labels)`` for :func:`sslkit.eval.finetune.training.fit`."""
    mixup = mixup_of(config, num_classes)
    if mixup is None:
        return lambda model, images, labels: F.cross_entropy(model(images), labels,
                                                             label_smoothing=config.label_smoothing)
    from timm.loss import SoftTargetCrossEntropy

    soft_cross_entropy = SoftTargetCrossEntropy()

    def loss(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        mixed, targets = mixup(images, labels)
        return soft_cross_entropy(model(mixed), targets)

    return loss


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted classes, labels) over ``loader`` with the model in eval mode, on the model's device."""
    model.eval()
    device = next(model.parameters()).device
    preds, labels = [], []
    for images, y in loader:
        preds.append(model(images.to(device)).argmax(1).cpu())
        labels.append(y)
    return torch.cat(preds), torch.cat(labels)


def accuracy(model: nn.Module, loader: DataLoader) -> float:
    pred, labels = predict(model, loader)
    return float((pred == labels).double().mean())
