"""Images with per-pixel class masks from a folder: ``ROOT/images/`` and ``ROOT/masks/``.

Layout::

    ROOT/images/case01.png   ROOT/masks/case01.png
    ROOT/images/case02.jpg   ROOT/masks/case02.png
    ...

Every image (any extension ``sslkit.data.folder`` reads, sub-folders allowed) has a mask with the same
relative path and stem under ``masks/``, stored as a single-channel integer PNG (PIL modes ``L``, ``P``,
``I``, ``I;16``) whose pixel values are the class indices 0..C-1 and whose size equals the image's. A missing
mask, an extra mask, a colour mask or a size mismatch is one :class:`~sslkit.data.errors.DataError` naming
the file.

Items follow the sslkit protocol plus the mask: ``{"image": (C, H, W) float32 in [0, 1], "mask": (H, W)
int64, "label": -1, "path": str}``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sslkit.data.errors import DataError
from sslkit.data.folder import (DEFAULT_EXTENSIONS, GRAY_MEAN, GRAY_STD, IMAGENET_MEAN, IMAGENET_STD, channels_of,
                                load_image)

__all__ = ["MaskFolderDataset", "is_mask_folder", "read_mask"]

_INTEGER_MODES = ("1", "L", "P", "I", "I;16", "I;16B", "I;16L")


def is_mask_folder(source: str | os.PathLike) -> bool:
    """True when ``source`` is a directory holding both ``images/`` and ``masks/``."""
    root = Path(source)
    return (root / "images").is_dir() and (root / "masks").is_dir()


def read_mask(path: str | os.PathLike) -> torch.Tensor:
    """(H, W) int64 class indices from a single-channel integer image; DataError naming the file otherwise."""
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            array = np.asarray(image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise DataError(f"Cannot decode mask {os.fspath(path)} ({error}); replace the file.", path=str(path)) from error
    if mode not in _INTEGER_MODES:
        raise DataError(f"Mask {os.fspath(path)} is a {mode} image; save masks as single-channel integer PNGs "
                        "whose pixel values are the class indices (PIL mode L, P or I;16).", path=str(path))
    return torch.from_numpy(array.astype(np.int64))


class MaskFolderDataset(torch.utils.data.Dataset):
    """Image + mask pairs of ``root`` (see the module docstring); ``num_classes`` = 1 + the largest mask value."""

    def __init__(self, root: str | os.PathLike, channels: str | int = "auto"):
        self.root = Path(root)
        if not is_mask_folder(self.root):
            raise DataError(f"Segmentation folder {self.root} needs the sub-folders images/ and masks/ "
                            "(masks: integer PNGs with the images' names).")
        images = _listed(self.root / "images", DEFAULT_EXTENSIONS)
        masks = _listed(self.root / "masks", ("png",))
        if not images:
            raise DataError(f"{self.root / 'images'} holds no images; put the training images there.")
        self.paths, self.mask_paths = _paired(self.root, images, masks)
        self.channels = channels if channels != "auto" else channels_of(Path(self.paths[0]))
        if self.channels not in (1, 3):
            raise DataError(f"{self.root}: channels must be 'auto', 1 or 3, got {channels!r}.")
        self.mean = IMAGENET_MEAN if self.channels == 3 else GRAY_MEAN
        self.std = IMAGENET_STD if self.channels == 3 else GRAY_STD
        self.num_classes = 1 + max(int(read_mask(p).max()) for p in self.mask_paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        image = load_image(self.paths[index], self.channels)
        mask = read_mask(self.mask_paths[index])
        if tuple(mask.shape) != tuple(image.shape[-2:]):
            raise DataError(f"Mask {self.mask_paths[index]} is {mask.shape[1]}x{mask.shape[0]} pixels but its image "
                            f"{self.paths[index]} is {image.shape[-1]}x{image.shape[-2]}; masks must match their "
                            "images' size.", path=self.mask_paths[index])
        return {"image": image, "mask": mask, "label": -1, "path": self.paths[index]}


def _listed(folder: Path, extensions: tuple) -> dict[str, Path]:
    """{relative path without extension: file} of the image files under ``folder`` (hidden entries skipped)."""
    found = {}
    for directory, subdirs, files in os.walk(folder, followlinks=True):
        subdirs[:] = [d for d in subdirs if not d.startswith(".")]
        for name in files:
            path = Path(directory) / name
            if not name.startswith(".") and path.suffix.lower().lstrip(".") in extensions:
                found[path.relative_to(folder).with_suffix("").as_posix()] = path
    return found


def _paired(root: Path, images: dict, masks: dict) -> tuple[list[str], list[str]]:
    """Image and mask paths in one sorted order; a DataError names the first image without a mask (or mask
    without an image)."""
    missing = sorted(set(images) - set(masks))
    if missing:
        raise DataError(f"Image {images[missing[0]]} has no mask {root / 'masks' / missing[0]}.png "
                        f"({len(missing)} image(s) without a mask); add the masks or remove those images.")
    orphans = sorted(set(masks) - set(images))
    if orphans:
        raise DataError(f"Mask {masks[orphans[0]]} has no image of the same name under {root / 'images'} "
                        f"({len(orphans)} such mask(s)); rename or remove them.")
    keys = sorted(images)
    return [str(images[k]) for k in keys], [str(masks[k]) for k in keys]

