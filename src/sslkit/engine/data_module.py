"""The training DataLoader: a seeded, resumable stream of multi-crop batches (see data/stream.py)."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader

from sslkit.data.collate import MultiCropCollate
from sslkit.data.stream import AugmentedStream, StreamSampler


class StreamDataModule(L.LightningDataModule):
    """Serves steps ``global_step .. total_steps-1``: on resume it starts where the checkpoint stopped.

    Lightning restores the loop state (and so ``trainer.global_step``) before it asks for the
    training DataLoader, so reading the step here is enough to continue the stream exactly.
    """

    def __init__(self, stream: AugmentedStream, collate: MultiCropCollate, batch_size: int, total_steps: int,
                 num_workers: int = 0, seed: int = 0):
        super().__init__()
        self.stream, self.collate = stream, collate
        self.batch_size, self.total_steps = batch_size, total_steps
        self.num_workers, self.seed = num_workers, seed

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        start = (lambda: trainer.global_step) if trainer is not None else 0
        rank = trainer.global_rank if trainer is not None else 0
        world = trainer.world_size if trainer is not None else 1
        sampler = StreamSampler(self.batch_size, self.total_steps, start_step=start, rank=rank, world_size=world)
        return DataLoader(
            self.stream, batch_size=self.batch_size, sampler=sampler, collate_fn=self.collate,
            num_workers=self.num_workers, persistent_workers=False,
            # Its own generator: creating the iterator must not consume the training RNG.
            generator=torch.Generator().manual_seed(self.seed),
        )
