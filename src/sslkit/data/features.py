"""Batched feature extraction from a frozen model over a dataset of the sslkit item protocol.

Used by the engine (the kNN monitor and its raw-pixel baseline) and by evaluation; it sits in the data layer
so that both may import it (``sslkit.eval.features`` re-exports it).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.utils.data import DataLoader, Dataset


@torch.no_grad()
def extract_features(model: Callable[[torch.Tensor], torch.Tensor], dataset: Dataset, batch_size: int = 256,
                     num_workers: int = 0, progress: bool = False, description: str = "features") -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``model`` (images (B, C, H, W) -> features (B, D)) over ``dataset``.

    Returns ``features`` (n, D) float32 and ``labels`` (n,) long (−1 where unlabelled). Modules are
    put in eval mode for the pass and restored afterwards.
    """
    was_training = isinstance(model, torch.nn.Module) and model.training
    if isinstance(model, torch.nn.Module):
        model.eval()
    # An own generator: building the iterator must not draw from the global RNG, so that
    # evaluating mid-training leaves the training random stream (and exact resume) intact.
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        generator=torch.Generator().manual_seed(0))
    feats, labels = [], []
    iterator = loader
    if progress:
        from rich.progress import track
        iterator = track(loader, description=description, transient=True)
    try:
        for batch in iterator:
            out = model(batch["image"])
            feats.append(out.float().flatten(1))
            labels.append(torch.as_tensor(batch["label"]).long())
    finally:
        if was_training:
            model.train()
    return torch.cat(feats), torch.cat(labels)


def raw_pixels(images: torch.Tensor) -> torch.Tensor:
    """The trivial 'model': flattened (normalised) pixels, the baseline a representation must beat."""
    return images.flatten(1)
