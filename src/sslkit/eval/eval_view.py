"""What the feature pass of an evaluation reads: each image adapted to the model's channels, optionally
corrupted (ImageNet-C style, for robustness), then resized and normalised."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch.utils.data import Dataset

from sslkit.config import ConfigError
from sslkit.eval.errors import ModelSpecError

__all__ = ["ChannelAdapter", "EvalView", "ImageCorruption"]


class ChannelAdapter:
    """Grey images to a 3-channel model: repeat the channel (before normalisation, so the model's RGB stats apply)."""

    def __init__(self, data_chans: int, model_chans: Optional[int], model_name: str):
        if model_chans is not None and data_chans != model_chans and not (data_chans == 1 and model_chans == 3):
            raise ModelSpecError(f"{model_name} takes {model_chans}-channel images but the data has {data_chans} "
                                 "channels; evaluate it on data with matching channels.")
        self.repeat = model_chans == 3 and data_chans == 1

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return image.repeat(3, 1, 1) if self.repeat else image


class EvalView(Dataset):
    """Items as (normalised image, label) for the feature pass."""

    def __init__(self, dataset: Dataset, adapter: ChannelAdapter, transform: Callable,
                 corruption: Optional["ImageCorruption"] = None):
        self.dataset, self.adapter, self.transform = dataset, adapter, transform
        self.corruption = corruption

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        item = self.dataset[index]
        label = item.get("label")
        image = item["image"]
        if self.corruption is not None:  # on the data's own channels, before resizing and normalising
            image = self.corruption(image, index)
        return self.transform(self.adapter(image)), -1 if label is None else int(label)


@dataclass(frozen=True)
class ImageCorruption:
    """An ImageNet-C-style corruption (``sslkit.data.corruptions``) applied to every evaluation image.

    Image ``i`` is corrupted with a generator seeded from (``seed``, ``i``), so the corrupted set is the same
    whatever the batch size, worker count or order. ``severity`` 0 is the identity.
    """

    name: str
    severity: int
    seed: int = 0

    def __post_init__(self) -> None:
        from sslkit.data.corruptions import CORRUPTIONS

        if self.name not in CORRUPTIONS:
            raise ConfigError(f"Unknown corruption {self.name!r}; choose from {sorted(CORRUPTIONS)}.")
        if not 0 <= int(self.severity) <= 5:
            raise ConfigError(f"Corruption severity must be 0..5, got {self.severity}.")

    def __call__(self, image: torch.Tensor, index: int) -> torch.Tensor:
        from sslkit.data.corruptions import corrupt

        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + int(index))
        return corrupt(image.float().clamp(0, 1), self.name, int(self.severity), generator)

    def cache_part(self) -> dict:
        from sslkit.data.corruptions import CORRUPTIONS_VERSION

        return {"name": self.name, "severity": int(self.severity), "seed": self.seed, "version": CORRUPTIONS_VERSION}
