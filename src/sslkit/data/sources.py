"""Open what ``--data`` names: a built-in dataset, an image folder, a list of paths, or tar shards.

Returns untransformed datasets (items hold the image as a float tensor in [0, 1]) split into the
part used for pretraining, the labelled memory bank and the held-out queries of the kNN monitor,
plus the facts the rest of the run needs (channels, classes, normalisation statistics).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
from torch.utils.data import Dataset, Subset

from sslkit.data.builtin import BUILTIN_DATASETS, load_builtin
from sslkit.data.data_config import DataConfig
from sslkit.data.errors import DataError
from sslkit.data.folder import ImageFolderDataset, PathListDataset
from sslkit.data.shards import ShardDataset, shard_files
from sslkit.data.stats import compute_mean_std

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class DataSplits:
    """``train`` is pretrained on; ``bank``/``queries`` (labelled data only) feed the kNN monitor."""

    train: Dataset
    bank: Optional[Dataset]
    queries: Optional[Dataset]
    channels: int
    num_classes: Optional[int]
    class_names: Optional[list]
    mean: tuple
    std: tuple
    description: str


class TransformedDataset(Dataset):
    """Apply ``transform`` to ``item["image"]`` of another dataset of the sslkit item protocol."""

    def __init__(self, dataset: Dataset, transform: Callable):
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        item = dict(self.dataset[index])
        item["image"] = self.transform(item["image"])
        return item


def _holdout_split(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=gen).tolist()
    n_hold = int(round(n * fraction))
    return sorted(perm[n_hold:]), sorted(perm[:n_hold])


def open_configured(data: DataConfig, *, source: Optional[str] = None, holdout_fraction: Optional[float] = None,
                    skip_bad_files: Optional[bool] = None, bad_files_log: Optional[Path] = None,
                    seed: int = 0) -> DataSplits:
    """Open images as a recipe's ``data`` section says: the one path by which pretraining, its curriculum
    stages and paired copies, and ``evaluate`` open data.

    ``source``, ``holdout_fraction`` and ``skip_bad_files`` replace the section's values where given (a
    curriculum stage reads another source whole; a paired copy is read strictly and skips in pairs, see
    :class:`sslkit.data.paired.PairedDataset`). Unreadable files skipped under ``skip_bad_files`` are listed
    in ``bad_files_log`` (JSON lines; ``read_bad_files``).
    """
    return open_data(source if source is not None else data.source, image_size=data.image_size,
                     num_samples=data.num_samples, background=data.background,
                     background_noise=data.background_noise, channels=data.channels, stats=data.stats,
                     holdout_fraction=data.holdout_fraction if holdout_fraction is None else holdout_fraction,
                     skip_bad_files=data.skip_bad_files if skip_bad_files is None else skip_bad_files,
                     bad_files_log=bad_files_log, seed=seed, dicom_window=data.dicom_window)


def open_data(source: str, *, image_size: int = 32, num_samples: Optional[int] = None, background: Optional[str] = None,
              background_noise: float = 0.0, channels="auto",
              stats: str = "dataset", holdout_fraction: float = 0.1, skip_bad_files: bool = False,
              bad_files_log: Optional[Path] = None, seed: int = 0,
              dicom_window: Optional[tuple[float, float]] = None) -> DataSplits:
    """Open ``source`` ('shapes', 'glyphs', 'digits', a folder, a .csv/.txt list, or tar shards: a brace pattern
    such as 'DIR/shard-{000000..000099}.tar', one .tar, or a folder written by ``sslkit data pack``) for
    pretraining."""
    if source in BUILTIN_DATASETS:
        kwargs = {"size": image_size}
        if background_noise:
            kwargs["background_noise"] = background_noise
        if source in ("shapes", "glyphs"):
            if background is not None:
                kwargs["background"] = background
            if num_samples is not None:
                kwargs["num_samples"] = num_samples
        if source == "digits" and channels != "auto":
            kwargs["channels"] = int(channels)
        train = load_builtin(source, "train", **kwargs)
        test_kwargs = {k: v for k, v in kwargs.items() if k != "num_samples"}
        test = load_builtin(source, "test", **test_kwargs)
        if channels != "auto" and train.channels != int(channels):
            raise DataError(f"Built-in dataset '{source}' has {train.channels} channels; drop data.channels or set it to {train.channels}.")
        splits = DataSplits(train=train, bank=train, queries=test, channels=train.channels,
                            num_classes=train.num_classes, class_names=train.class_names,
                            mean=tuple(train.mean), std=tuple(train.std),
                            description=f"built-in '{source}' ({len(train)} train / {len(test)} test images)")
    else:
        path = Path(source)
        common = {"channels": channels, "skip_bad_files": skip_bad_files, "bad_files_log": bad_files_log,
                  "dicom_window": dicom_window}
        shards = shard_files(source)
        if shards is not None:
            full = ShardDataset(shards, **common)
        elif path.is_dir():
            full = ImageFolderDataset(path, **common)
        elif path.suffix.lower() in (".csv", ".txt") and path.is_file():
            full = PathListDataset(path, **common)
        elif path.exists():
            raise DataError(f"Data source '{source}' is neither a folder of images nor a .csv/.txt list of paths.")
        else:
            raise DataError(f"Data source '{source}' does not exist; pass 'shapes', 'digits', an image folder, "
                            f"a .csv/.txt list of image paths or tar shards ('DIR/shard-{{000000..000099}}.tar').")
        labelled = full.num_classes is not None and holdout_fraction > 0 and len(full) >= 10
        if labelled:
            train_idx, hold_idx = _holdout_split(len(full), holdout_fraction, seed)
            train, bank, queries = Subset(full, train_idx), Subset(full, train_idx), Subset(full, hold_idx)
        else:
            train, bank, queries = full, None, None
        kind = "labelled" if full.num_classes is not None else "unlabelled"
        splits = DataSplits(train=train, bank=bank, queries=queries, channels=full.channels,
                            num_classes=full.num_classes, class_names=full.class_names,
                            mean=tuple(full.mean), std=tuple(full.std),
                            description=f"{kind} images from '{source}' ({len(train)} for pretraining"
                                        + (f", {len(queries)} held out for kNN" if queries is not None else "") + ")")
    if stats == "imagenet":
        if splits.channels != 3:
            raise DataError("Config key 'data.stats' = 'imagenet' needs 3-channel images; use 'dataset' or 'compute'.")
        splits.mean, splits.std = IMAGENET_MEAN, IMAGENET_STD
    elif stats == "compute":
        splits.mean, splits.std = compute_mean_std(splits.train, max_samples=5000)
    return splits
