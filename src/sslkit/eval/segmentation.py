"""Linear segmentation probe on frozen patch tokens, scored by mIoU.

A 1×1 linear head maps each patch token to class logits; the logit grid is bilinearly up-sampled to the mask
resolution and trained with per-pixel cross-entropy (domain-pretraining.md step 7c, without the multi-block
concatenation: the last block's tokens). Up-sampling the logits instead of the tokens is the same function —
bilinear interpolation and a 1×1 linear map are both linear, and interpolation weights sum to one so the bias
passes through — but costs C instead of D channels. Tokens are standardised with the training split's
per-dimension mean and std (BatchNorm without affine parameters, as in the spec's head).

Example::

    result = segmentation_probe(train_tokens, train_masks, test_tokens, test_masks, num_classes=2)
    result.miou, result.iou
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from sslkit.data.errors import DataError
from sslkit.training_loop import TrainingLoop

__all__ = ["SegmentationConfig", "SegmentationResult", "confusion_matrix", "iou_from_confusion", "load_masks",
           "mean_iou", "segmentation_probe"]


@dataclass
class SegmentationConfig:
    """AdamW on a linear head; ``epochs`` passes over the training images, ``batch_size`` images per step."""

    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-2
    weight_decay: float = 1e-4
    standardize: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.weight_decay < 0:
            raise ValueError("segmentation epochs/batch_size must be >= 1, lr > 0 and weight_decay >= 0.")


@dataclass
class SegmentationResult:
    miou: float
    iou: list  # per class; NaN for a class absent from both prediction and target
    pixel_accuracy: float
    config: SegmentationConfig
    num_classes: int
    grid: tuple
    mask_size: tuple
    n_train: int
    n_test: int
    seconds: float

    def to_dict(self) -> dict:
        return {"miou": self.miou, "iou": [None if math.isnan(v) else v for v in self.iou],
                "pixel_accuracy": self.pixel_accuracy, "config": dataclasses.asdict(self.config),
                "num_classes": self.num_classes, "grid": list(self.grid), "mask_size": list(self.mask_size),
                "n_train": self.n_train, "n_test": self.n_test, "seconds": self.seconds}


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C, C) int64 counts, rows = target class, columns = predicted class, over all pixels."""
    pred, target = pred.reshape(-1).long(), target.reshape(-1).long()
    if pred.shape != target.shape:
        raise ValueError(f"prediction and target sizes differ: {pred.numel()} vs {target.numel()}.")
    return torch.bincount(target * num_classes + pred, minlength=num_classes**2).reshape(num_classes, num_classes)


def iou_from_confusion(confusion: torch.Tensor) -> torch.Tensor:
    """Per-class IoU = TP / (TP + FP + FN) from a confusion matrix; NaN where the union is empty."""
    tp = confusion.diag().double()
    union = confusion.sum(0).double() + confusion.sum(1).double() - tp
    return torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, float("nan")))


def mean_iou(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> float:
    """mIoU over the classes that occur in ``pred`` or ``target``, with intersections and unions summed over
    the whole set (not averaged per image), as in mmsegmentation."""
    iou = iou_from_confusion(confusion_matrix(pred, target, num_classes))
    return float(iou[~torch.isnan(iou)].mean())


def load_masks(dataset, size: int) -> torch.Tensor:
    """(n, size, size) int64 masks from dataset items' ``mask``, resized like images by ``EvalTransform``
    (short side to ``size``, centre crop) but with nearest-neighbour sampling so labels stay labels."""
    masks = []
    for i in range(len(dataset)):
        item = dataset[i]
        if "mask" not in item:
            raise DataError("Segmentation needs a per-pixel 'mask' in every item, but this dataset has none; "
                            "use data with masks (the built-in 'shapes' has foreground masks).")
        m = torch.as_tensor(item["mask"]).long()
        h, w = m.shape[-2:]
        if (h, w) != (size, size):
            scale = size / min(h, w)
            new = (max(size, round(h * scale)), max(size, round(w * scale)))
            m = F.interpolate(m[None, None].float(), size=new, mode="nearest")[0, 0].long()
            top, left = (new[0] - size) // 2, (new[1] - size) // 2
            m = m[top : top + size, left : left + size]
        masks.append(m)
    return torch.stack(masks)


def _logits(tokens: torch.Tensor, head: torch.nn.Linear, grid: tuple, size: tuple) -> torch.Tensor:
    b = tokens.shape[0]
    patch_logits = head(tokens).transpose(1, 2).reshape(b, -1, *grid)  # (B, C, h, w)
    return F.interpolate(patch_logits, size=size, mode="bilinear", align_corners=False)


def segmentation_probe(train_tokens: torch.Tensor, train_masks: torch.Tensor, test_tokens: torch.Tensor,
                       test_masks: torch.Tensor, num_classes: Optional[int] = None,
                       config: Optional[SegmentationConfig] = None, grid: Optional[tuple] = None) -> SegmentationResult:
    """Train a linear head on patch tokens and report test mIoU.

    Args:
        train_tokens: (n, N, D) patch tokens in row-major grid order; train_masks: (n, H, W) class indices.
        test_tokens, test_masks: the test split.
        num_classes: C (default: 1 + the largest mask value).
        grid: (h, w) with h·w = N (default: square).
    """
    config = config or SegmentationConfig()
    if train_tokens.ndim != 3 or test_tokens.ndim != 3:
        raise DataError(f"The segmentation probe needs patch tokens (n, N, D), got {tuple(train_tokens.shape)}; "
                        "extract features with pooling 'patch'.")
    if train_tokens.shape[0] != train_masks.shape[0] or test_tokens.shape[0] != test_masks.shape[0]:
        raise DataError("The segmentation probe got a different number of token sets and masks.")
    n_patches = train_tokens.shape[1]
    if grid is None:
        side = int(round(math.sqrt(n_patches)))
        if side * side != n_patches:
            raise DataError(f"{n_patches} patch tokens do not form a square grid; pass grid=(h, w).")
        grid = (side, side)
    classes = int(num_classes or max(int(train_masks.max()), int(test_masks.max())) + 1)
    size = tuple(train_masks.shape[-2:])
    start = time.perf_counter()
    x_tr, x_te = train_tokens.float(), test_tokens.float()
    if config.standardize:
        flat = x_tr.reshape(-1, x_tr.shape[-1])
        mean, std = flat.mean(0), flat.std(0).clamp_min(1e-6)
        x_tr, x_te = (x_tr - mean) / std, (x_te - mean) / std
    n = x_tr.shape[0]
    batches_per_epoch = max(1, math.ceil(n / config.batch_size))
    total = config.epochs * batches_per_epoch
    targets = train_masks.long()
    with TrainingLoop("segmentation probe", steps=total, seed=config.seed, hint="lower the probe's lr") as loop, \
            torch.enable_grad():
        head = torch.nn.Linear(x_tr.shape[-1], classes)
        optimizer = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
        for epoch in range(1, config.epochs + 1):
            order = torch.randperm(n, generator=loop.generator)
            for b in range(batches_per_epoch):
                idx = order[b * config.batch_size : (b + 1) * config.batch_size]
                loss = F.cross_entropy(_logits(x_tr[idx], head, grid, size), targets[idx])
                loop.check(loss, f"epoch {epoch}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                loop.advance()
    confusion = torch.zeros(classes, classes, dtype=torch.long)
    with torch.no_grad():
        for s in range(0, x_te.shape[0], 256):
            pred = _logits(x_te[s : s + 256], head, grid, tuple(test_masks.shape[-2:])).argmax(1)
            confusion += confusion_matrix(pred, test_masks[s : s + 256], classes)
    iou = iou_from_confusion(confusion)
    return SegmentationResult(miou=float(iou[~torch.isnan(iou)].mean()), iou=iou.tolist(),
                              pixel_accuracy=float(confusion.diag().sum() / confusion.sum()), config=config,
                              num_classes=classes, grid=grid, mask_size=size, n_train=n,
                              n_test=int(x_te.shape[0]), seconds=time.perf_counter() - start)
