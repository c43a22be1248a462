"""What the fine-tuning loops read: images (and masks) of a split, augmented for training or resized for
evaluation, normalised for the model.

Training view: a random resized crop (area in [``crop_min_scale``, 1], aspect ratio in [3/4, 4/3]) at the
evaluation size and a horizontal flip, the fine-tuning augmentation of DeiT / BEiT without their colour and
RandAugment parts; a mask goes through the same crop and flip with nearest-neighbour sampling (torchvision's
``tv_tensors.Mask``). Evaluation view: ``sslkit.data.augment.EvalTransform`` (short side to the size, centre
crop); its mask is resized the same way with nearest-neighbour sampling (``sslkit.eval.segmentation``).
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from sslkit.data.augment import EvalTransform

__all__ = ["EvalSplit", "TrainSplit", "resize_mask"]


class TrainSplit(Dataset):
    """Items ``indices`` of ``dataset`` as (augmented normalised image, label) or (image, mask) pairs."""

    def __init__(self, dataset: Dataset, indices: Sequence[int], size: int, mean: tuple, std: tuple,
                 adapt: Callable[[torch.Tensor], torch.Tensor], crop_min_scale: float, hflip: float,
                 masks: bool = False):
        self.dataset, self.indices, self.adapt, self.masks = dataset, list(indices), adapt, masks
        self.mean, self.std = list(mean), list(std)
        self.augment = v2.Compose([v2.RandomResizedCrop(size, scale=(crop_min_scale, 1.0), antialias=True),
                                   v2.RandomHorizontalFlip(hflip)])

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        item = self.dataset[self.indices[index]]
        image = tv_tensors.Image(self.adapt(item["image"].float()))
        if self.masks:
            image, mask = self.augment(image, tv_tensors.Mask(torch.as_tensor(item["mask"]).long()))
            return self._normalised(image), mask.as_subclass(torch.Tensor).long()
        return self._normalised(self.augment(image)), int(item["label"])

    def _normalised(self, image: torch.Tensor) -> torch.Tensor:
        return TF.normalize(image.as_subclass(torch.Tensor).clamp(0.0, 1.0), self.mean, self.std)


class EvalSplit(Dataset):
    """Items ``indices`` of ``dataset`` (all by default) as (resized normalised image, label or mask)."""

    def __init__(self, dataset: Dataset, size: int, mean: tuple, std: tuple,
                 adapt: Callable[[torch.Tensor], torch.Tensor], indices: Optional[Sequence[int]] = None,
                 masks: bool = False):
        self.dataset, self.size, self.adapt, self.masks = dataset, size, adapt, masks
        self.indices = list(range(len(dataset))) if indices is None else list(indices)
        self.transform = EvalTransform(size, mean, std)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        item = self.dataset[self.indices[index]]
        image = self.transform(self.adapt(item["image"].float()))
        if self.masks:
            return image, resize_mask(torch.as_tensor(item["mask"]).long(), self.size)
        return image, int(item["label"])


def resize_mask(mask: torch.Tensor, size: int) -> torch.Tensor:
    """(H, W) class indices resized like ``EvalTransform`` resizes images (short side to ``size``, centre
    crop), with nearest-neighbour sampling so labels stay labels."""
    from sslkit.eval.segmentation import load_masks

    return load_masks([{"mask": mask}], size)[0]
