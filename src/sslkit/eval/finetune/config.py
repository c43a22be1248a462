"""The settings of a fine-tuning run (``sslkit finetune``), each value checked when the config is built.

Defaults follow the domain-pretraining paper's fine-tuning of DINOv2 (arXiv 2506.19552: AdamW, layer-wise lr
decay 0.65, mixup 0.8, cutmix 1.0, label smoothing 0.1, cosine schedule with warm-up), which are the BEiT /
DeiT fine-tuning settings (arXiv 2106.08254, 2012.12877).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional

from sslkit.config import ConfigError

__all__ = ["FinetuneConfig", "HEADS", "TASKS"]

TASKS = ("classify", "segment")
HEADS = ("linear", "multilevel")


@dataclass
class FinetuneConfig:
    """Everything that decides a fine-tuning run's numbers; all of it is written into ``report.json``.

    task: ``classify`` (a linear head on the class token / pooled features) or ``segment`` (a head on patch
        tokens, logits up-sampled to the mask).
    epochs, batch_size, lr, weight_decay: AdamW; ``lr`` is the head's (and last block's) peak learning rate.
    layer_decay: block i of a depth-L ViT learns at lr·layer_decay^(L+1−i) (1 = no decay).
    warmup_epochs: linear warm-up, then a half cosine to 0 over the remaining steps.
    mixup, cutmix, label_smoothing: timm's ``Mixup`` (classification only); mixup = cutmix = 0 turns it off.
    patience: stop when the validation score (accuracy / mIoU) has not improved for this many epochs.
    val_fraction: share of the training split held out for validation (stratified for classification).
    test_fraction: share of an image+mask folder held out as the test split (it has no test split of its own).
    crop_min_scale, hflip: the training augmentation, a random resized crop with area in [crop_min_scale, 1] at
        the evaluation size, then a horizontal flip with probability ``hflip``.
    head, levels: segmentation head, ``linear`` (last block's patch tokens) or ``multilevel`` (the last
        ``levels`` blocks' patch tokens concatenated).
    """

    task: str = "classify"
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    layer_decay: float = 0.65
    warmup_epochs: float = 1.0
    mixup: float = 0.8
    cutmix: float = 1.0
    label_smoothing: float = 0.1
    patience: int = 5
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    crop_min_scale: float = 0.25
    hflip: float = 0.5
    head: str = "linear"
    levels: int = 4
    image_size: Optional[int] = None
    num_samples: Optional[int] = None
    device: str = "cpu"
    seed: int = 0

    def __post_init__(self) -> None:
        problem = _first_problem(self)
        if problem:
            raise ConfigError(f"finetune {problem}.")

    @property
    def mixes(self) -> bool:
        """Whether timm's Mixup runs (it needs mixup or cutmix above 0, and then an even batch)."""
        return self.task == "classify" and (self.mixup > 0 or self.cutmix > 0)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _first_problem(c: FinetuneConfig) -> Optional[str]:
    """The first bad value as 'KEY must be ..., got VALUE' (None when every value is fine)."""
    if c.task not in TASKS:
        return f"task must be one of {list(TASKS)}, got {c.task!r}"
    if c.head not in HEADS:
        return f"head must be one of {list(HEADS)}, got {c.head!r}"
    for name in ("epochs", "batch_size", "patience", "levels"):
        value = getattr(c, name)
        if not _integer(value) or value < 1:
            return f"{name} must be an integer >= 1, got {value!r}"
    for name in ("lr", "weight_decay", "layer_decay", "warmup_epochs", "mixup", "cutmix", "label_smoothing",
                 "val_fraction", "test_fraction", "crop_min_scale", "hflip"):
        if not _number(getattr(c, name)):
            return f"{name} must be a finite number, got {getattr(c, name)!r}"
    checks = (
        (c.lr > 0, "lr", "> 0"),
        (c.weight_decay >= 0, "weight_decay", ">= 0"),
        (0 < c.layer_decay <= 1, "layer_decay", "in (0, 1] (1 = no decay)"),
        (0 <= c.warmup_epochs < c.epochs, "warmup_epochs", f"in [0, epochs={c.epochs})"),
        (c.mixup >= 0, "mixup", ">= 0 (0 = off)"),
        (c.cutmix >= 0, "cutmix", ">= 0 (0 = off)"),
        (0 <= c.label_smoothing < 1, "label_smoothing", "in [0, 1)"),
        (0 < c.val_fraction < 1, "val_fraction", "in (0, 1)"),
        (0 < c.test_fraction < 1, "test_fraction", "in (0, 1)"),
        (0 < c.crop_min_scale <= 1, "crop_min_scale", "in (0, 1]"),
        (0 <= c.hflip <= 1, "hflip", "a probability in [0, 1]"),
    )
    for ok, name, rule in checks:
        if not ok:
            return f"{name} must be {rule}, got {getattr(c, name)!r}"
    if c.mixes and c.batch_size % 2:
        return f"batch_size must be even when mixup or cutmix is on (timm's Mixup pairs images), got {c.batch_size}"
    if c.image_size is not None and (not _integer(c.image_size) or c.image_size < 1):
        return f"image_size must be a positive integer, got {c.image_size!r}"
    if c.num_samples is not None and (not _integer(c.num_samples) or c.num_samples < 1):
        return f"num_samples must be a positive integer, got {c.num_samples!r}"
    if not _integer(c.seed):
        return f"seed must be an integer, got {c.seed!r}"
    return None
