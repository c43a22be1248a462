"""The data of a fine-tuning run: a source opened with ``train`` / ``test`` splits, the training split cut
into a training and a validation part, and the loaders over the augmented / resized views.

Sources: everything ``sslkit evaluate`` opens (the built-in 'digits' / 'shapes' / 'glyphs', a labelled folder,
a .csv/.txt list; :func:`sslkit.eval.eval_data.open_eval_data`) and, for segmentation, an image + mask folder
(:mod:`sslkit.data.mask_folder`), whose test split is a seeded ``test_fraction`` hold-out. The built-in 'shapes'
and 'glyphs' carry foreground masks (2 classes: background, foreground).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from sslkit.data.errors import DataError
from sslkit.data.mask_folder import MaskFolderDataset, is_mask_folder
from sslkit.eval.eval_data import open_eval_data
from sslkit.eval.finetune.config import FinetuneConfig
from sslkit.eval.finetune.views import EvalSplit, TrainSplit
from sslkit.eval.linear import stratified_split

__all__ = ["TaskData", "Loaders", "loaders", "open_task_data", "random_split"]


@dataclass
class TaskData:
    """Untransformed ``train`` / ``test`` datasets plus what the run needs to know about them."""

    source: str
    train: Dataset
    test: Dataset
    channels: int
    num_classes: int
    class_names: Optional[list]
    mean: tuple
    std: tuple
    image_size: int
    builtin: bool
    split_rule: str


@dataclass
class Loaders:
    train: DataLoader
    val: DataLoader
    test: DataLoader
    n_train: int
    n_val: int
    n_test: int


def open_task_data(source: str, config: FinetuneConfig, image_size: Optional[int] = None) -> TaskData:
    """Open ``source`` for ``config.task`` (rendered at ``image_size`` for the built-in sets)."""
    if config.task == "segment" and is_mask_folder(source):
        return _mask_folder(source, config, image_size)
    options = {"num_samples": config.num_samples} if config.num_samples else {}
    opened = open_eval_data(source, image_size, options)
    if "test" not in opened.splits:
        raise DataError(f"Fine-tuning needs labelled data with a test split, but '{source}' is unlabelled; add "
                        "class sub-folders (or a 'label' column), or for segmentation images/ and masks/ folders.")
    train = opened.splits["train"]
    if config.task == "segment":
        if "mask" not in train[0]:
            raise DataError(f"Segmentation fine-tuning needs per-pixel masks, but '{source}' has none; use a folder "
                            "with images/ and masks/ or the built-in 'shapes' / 'glyphs' (foreground masks).")
        num_classes, names = 2, ["background", "foreground"]
    else:
        num_classes, names = opened.num_classes, opened.class_names
    return TaskData(source=source, train=train, test=opened.splits["test"], channels=opened.channels,
                    num_classes=int(num_classes), class_names=names, mean=tuple(opened.mean), std=tuple(opened.std),
                    image_size=opened.image_size, builtin=opened.builtin,
                    split_rule="built-in fixed train/test split" if opened.builtin
                    else "labelled folder: seeded 90/10 hold-out (seed 0) as in sslkit evaluate")


def _mask_folder(source: str, config: FinetuneConfig, image_size: Optional[int]) -> TaskData:
    dataset = MaskFolderDataset(source)
    if len(dataset) < 3:
        raise DataError(f"Segmentation folder {source} holds {len(dataset)} image(s); fine-tuning needs at least 3 "
                        "(training, validation and test images).")
    keep, test = random_split(len(dataset), config.test_fraction, config.seed)
    return TaskData(source=source, train=Subset(dataset, keep), test=Subset(dataset, test),
                    channels=dataset.channels, num_classes=dataset.num_classes, class_names=None, mean=dataset.mean,
                    std=dataset.std, image_size=int(image_size or 224), builtin=False,
                    split_rule=f"image+mask folder: seeded {config.test_fraction:g} test hold-out (seed {config.seed})")


def random_split(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(kept, held-out) sorted indices of ``range(n)``: a seeded ``fraction`` held out, at least one of each."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    held = min(max(1, round(n * fraction)), n - 1)
    return sorted(order[held:]), sorted(order[:held])


def _labels(dataset: Dataset) -> torch.Tensor:
    return torch.tensor([int(dataset[i]["label"]) for i in range(len(dataset))])


def loaders(data: TaskData, config: FinetuneConfig, size: int, mean: tuple, std: tuple, adapt) -> Loaders:
    """Training (augmented, shuffled, full batches), validation and test loaders of ``data``."""
    masks = config.task == "segment"
    if masks:
        keep, val = random_split(len(data.train), config.val_fraction, config.seed)
    else:
        keep_t, val_t = stratified_split(_labels(data.train), config.val_fraction, config.seed)
        keep, val = keep_t.tolist(), val_t.tolist()
    if len(keep) < config.batch_size:
        raise DataError(f"The training part of '{data.source}' has {len(keep)} images, fewer than batch_size "
                        f"{config.batch_size}; lower --batch-size.")
    if not val:
        raise DataError(f"No validation images could be held out of '{data.source}'; it needs at least two images "
                        "of some class.")
    train = TrainSplit(data.train, keep, size, mean, std, adapt, config.crop_min_scale, config.hflip, masks=masks)
    val_view = EvalSplit(data.train, size, mean, std, adapt, indices=val, masks=masks)
    test_view = EvalSplit(data.test, size, mean, std, adapt, masks=masks)
    eval_batch = max(config.batch_size, 128)
    return Loaders(
        # Full batches only: timm's Mixup pairs images, and BatchNorm in the multi-level head needs > 1.
        train=DataLoader(train, batch_size=config.batch_size, shuffle=True, drop_last=True,
                         generator=torch.Generator().manual_seed(config.seed)),
        val=DataLoader(val_view, batch_size=eval_batch), test=DataLoader(test_view, batch_size=eval_batch),
        n_train=len(keep), n_val=len(val), n_test=len(test_view))
