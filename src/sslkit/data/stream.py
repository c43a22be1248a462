"""A resumable, seeded stream of augmented samples for pretraining.

Training reads an endless stream: position ``p`` is sample ``p % n`` of the ``p // n``-th seeded
permutation of the dataset, augmented with an RNG seeded by ``(seed, p)``. Everything a step sees is
therefore a pure function of the seed and the step number, which is what makes ``--resume`` land on
exactly the batches an uninterrupted run would have seen, whatever the number of DataLoader workers.
(The reference uses an infinite sampler too: facebookresearch/dinov2 ``dinov2/data/samplers.py``.)
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.utils.data import Dataset, Sampler, Subset


def _mix(seed: int, value: int) -> int:
    """A 63-bit seed for (seed, value) pairs; consecutive values give unrelated generators."""
    x = (seed * 0x9E3779B97F4A7C15 + value * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB) & ((1 << 64) - 1)
    x ^= x >> 31
    x = (x * 0xD6E8FEB86659FD93) & ((1 << 64) - 1)
    x ^= x >> 32
    return x & ((1 << 63) - 1)


class AugmentedStream(Dataset):
    """Index by stream position; returns ``{"image": transform(image), "label", "position"}``."""

    def __init__(self, dataset: Dataset, transform: Callable, seed: int = 0):
        self.dataset = dataset
        self.transform = transform
        self.seed = seed
        self._epoch = -1
        self._perm: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.dataset)

    def dataset_index(self, position: int) -> int:
        n = len(self.dataset)
        epoch = position // n
        if epoch != self._epoch:
            gen = torch.Generator().manual_seed(_mix(self.seed, epoch))
            self._perm = torch.randperm(n, generator=gen)
            self._epoch = epoch
        return int(self._perm[position % n])

    def __getitem__(self, position: int) -> dict:
        item = self._read(self.dataset_index(position))
        # The transforms draw from torch's global RNG; fork it so augmentation depends only on
        # (seed, position) and never disturbs the training RNG (drop-path).
        # torch.default_generator.manual_seed is torch.manual_seed without the accelerator generators (which
        # fork_rng(devices=[]) leaves alone anyway): the same CPU draws, without ~1 ms of lazy-init bookkeeping.
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(_mix(self.seed + 1, position))
            image = self.transform(item["image"])
            out = {"image": image, "label": int(item.get("label", -1)), "position": position}
            if "clean_image" in item:  # a noisy/denoised pair: the same draws crop both alike
                torch.default_generator.manual_seed(_mix(self.seed + 1, position))
                out["clean_global"] = self.transform.global_views(item["clean_image"])
        return out


    def _read(self, index: int) -> dict:
        """``dataset[index]``; from image files an 8-bit file's pixels stay uint8 when the transform takes
        them (``accepts_uint8``: MultiCropAugmentation cuts its crops before converting them to float), and a
        JPEG is decoded at the reduced size the transform allows (``decode_reduction``), if any."""
        if getattr(self.transform, "accepts_uint8", False):
            files, inner = _image_files_and_index(self.dataset, index)
            if files is not None:
                return files.item(inner, keep_uint8=True, reduction=getattr(self.transform, "decode_reduction", None))
        return self.dataset[index]


def _image_files_and_index(dataset: Dataset, index: int) -> tuple[Dataset | None, int]:
    """(the image-file dataset under any ``Subset`` wrappers, the index in it), or (None, index)."""
    while isinstance(dataset, Subset):
        dataset, index = dataset.dataset, int(dataset.indices[index])
    return (dataset, index) if callable(getattr(dataset, "item", None)) else (None, index)


class StreamSampler(Sampler[int]):
    """Stream positions for steps ``start_step .. total_steps-1`` of one rank.

    The global batch of step ``s`` is positions ``[s·B·W, (s+1)·B·W)``; rank ``r`` takes its
    ``r``-th block of ``B``. So 2 ranks × B/2 see exactly the samples of 1 rank × B.

    ``start_step`` may be a callable read at each ``iter()``: the trainer's step counter, so a
    loader built once still starts where a restored run stands. ``len()`` is always the whole run
    (Lightning counts a resumed epoch's batches from the checkpoint's batch index).
    """

    def __init__(self, batch_size: int, total_steps: int, start_step: int | Callable[[], int] = 0,
                 rank: int = 0, world_size: int = 1):
        self.batch_size = batch_size
        self.total_steps = total_steps
        self.start_step = start_step
        self.rank = rank
        self.world_size = world_size

    def __len__(self) -> int:
        return self.total_steps * self.batch_size

    def __iter__(self):
        b, w = self.batch_size, self.world_size
        start = self.start_step() if callable(self.start_step) else self.start_step
        for step in range(start, self.total_steps):
            first = step * b * w + self.rank * b
            yield from range(first, first + b)


class CurriculumStream(Dataset):
    """A stream whose augmentation (and data) change with the stream position: one
    :class:`AugmentedStream` per curriculum stage, stage ``k`` serving positions
    ``[starts[k], starts[k+1])``.

    Because the stage is a function of the position, a resumed run (or a DataLoader worker) serves
    exactly the crops the uninterrupted run would have, on either side of a stage boundary.
    """

    def __init__(self, streams: list[AugmentedStream], starts: list[int]):
        if len(streams) != len(starts) or not streams or starts[0] != 0 or sorted(starts) != list(starts):
            raise ValueError("CurriculumStream needs one stream per stage and increasing start positions from 0.")
        self.streams, self.starts = list(streams), list(starts)

    def __len__(self) -> int:
        return len(self.streams[0])

    def stage_of(self, position: int) -> int:
        index = 0
        for k, start in enumerate(self.starts):
            if position >= start:
                index = k
        return index

    def __getitem__(self, position: int) -> dict:
        return self.streams[self.stage_of(position)][position]
