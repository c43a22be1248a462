"""Per-channel pixel mean and standard deviation of a dataset, streamed.

Example::

    mean, std = compute_mean_std(ImageFolderDataset("scans/"), max_samples=10_000)
"""

from __future__ import annotations

import copy

import torch

from sslkit.data.errors import DataError

__all__ = ["compute_mean_std"]


def _images_only(batch: list[dict]) -> list[torch.Tensor]:
    # A list, not a stacked tensor: images may differ in size.
    return [item["image"] for item in batch]


def _untransformed(dataset):
    """A shallow copy of ``dataset`` with ``transform`` off, so statistics are of raw [0, 1] pixels.

    ``torch.utils.data.Subset`` wrappers are looked through, so a held-out split works too.
    """
    if isinstance(dataset, torch.utils.data.Subset):
        return torch.utils.data.Subset(_untransformed(dataset.dataset), dataset.indices)
    if getattr(dataset, "transform", None) is None:
        return dataset
    raw = copy.copy(dataset)  # shares caches and file lists; the caller's object is untouched
    raw.transform = None
    return raw


def compute_mean_std(
    dataset,
    max_samples: int | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    seed: int = 0,
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std over every pixel of the untransformed images.

    Args:
        dataset: any sslkit-protocol dataset; items' ``"image"`` is (C, H, W) in [0, 1].
            Its ``transform`` (if any) is bypassed. Images may have different sizes.
        max_samples: use a random subset of this many images (chosen with ``seed``);
            None uses all.
    Returns:
        (mean, std): tuples of length C.

    Images are streamed; each contributes its per-channel mean and sum of squared
    deviations, merged in float64 with Chan et al.'s pairwise update, which stays
    accurate where the naive E[x²] − E[x]² would cancel.
    """
    n = len(dataset)
    if n == 0:
        raise DataError("compute_mean_std: the dataset is empty; point it at a folder or list with images.")
    indices = list(range(n))
    if max_samples is not None and max_samples < n:
        generator = torch.Generator().manual_seed(seed)
        indices = sorted(torch.randperm(n, generator=generator)[:max_samples].tolist())
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(_untransformed(dataset), indices),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_images_only,
    )
    count = 0
    mean = m2 = None  # (C,) float64 running mean and sum of squared deviations
    for images in loader:
        for image in images:
            pixels = image.reshape(image.shape[0], -1).to(torch.float64)  # (C, H*W)
            k = pixels.shape[1]
            image_mean = pixels.mean(dim=1)
            image_m2 = ((pixels - image_mean[:, None]) ** 2).sum(dim=1)
            if mean is None:
                mean, m2, count = image_mean, image_m2, k
                continue
            if image_mean.shape != mean.shape:
                raise DataError(
                    f"compute_mean_std: images have {mean.shape[0]} and {image_mean.shape[0]} channels; "
                    "build the dataset with a fixed channel count."
                )
            total = count + k
            delta = image_mean - mean
            mean = mean + delta * (k / total)
            m2 = m2 + image_m2 + delta**2 * (count * k / total)
            count = total
    std = torch.sqrt(m2 / count)
    return tuple(mean.tolist()), tuple(std.tolist())
