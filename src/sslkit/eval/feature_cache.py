"""Frozen features of a model on one split of a dataset, cached on disk.

:func:`compute_features` turns (spec, data, split, pooling) into ``(features, labels)`` and stores the result
as safetensors under a key that hashes the model weights, the data, the transform and the pooling, so a second
evaluation of the same thing reads the file instead of running the network. A features file
(:mod:`sslkit.eval.features_file`) is read as it is.

Example::

    x, y = compute_features("runs/tiny-shapes", "shapes", split="test", pooling="cls+mean")
    x, y = compute_features("timm:resnet18", "digits", split="train", pooling="mean")
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from sslkit.atomic_files import save_safetensors_atomic
from sslkit.data.errors import DataError
from sslkit.eval.encoders import POOLINGS, Encoder, ModelLike, load_encoder, pool_tokens
from sslkit.eval.errors import ModelSpecError
from sslkit.eval.eval_data import EvalData, open_eval_data
from sslkit.eval.eval_view import ChannelAdapter, EvalView, ImageCorruption
from sslkit.eval.features_file import FeatureSet, features_from_file, is_features_file

__all__ = ["CACHE_FORMAT", "compute_features", "default_cache_dir", "feature_set"]

# Bump when the meaning of cached features changes (pooling code, transform): old cache files are then ignored.
CACHE_FORMAT = 1


def default_cache_dir() -> Path:
    """``$SSLKIT_CACHE_DIR`` or ``~/.cache/sslkit/features``."""
    env = os.environ.get("SSLKIT_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sslkit" / "features"


def _cache_key(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _read_cache(path: Path) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        return None
    try:
        tensors = load_file(str(path))
        return tensors["features"], tensors["labels"]
    except (SafetensorError, OSError, KeyError):
        return None  # a damaged cache entry is recomputed, never trusted


def _run_encoder(encoder: Encoder, dataset: Dataset, pooling: str, n_last_blocks: int, batch_size: int,
                 num_workers: int, device: str, progress: bool, description: str) -> tuple[torch.Tensor, torch.Tensor]:
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        generator=torch.Generator().manual_seed(0))
    feats, labels = [], []
    bar = None
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                       transient=True)
        task = bar.add_task(description, total=len(dataset))
        bar.start()
    try:
        for images, y in loader:
            out = pool_tokens(encoder.tokens(images.to(device), n_last_blocks), pooling, encoder.name)
            feats.append(out.float().cpu())
            labels.append(y.long())
            if bar is not None:
                bar.advance(task, images.shape[0])
    finally:
        if bar is not None:
            bar.stop()
    if not feats:
        raise DataError(f"{description}: the split is empty; there is nothing to evaluate.")
    return torch.cat(feats), torch.cat(labels)


def feature_set(spec: ModelLike, data: Union[str, EvalData], split: str = "test", pooling: str = "cls", *,
                n_last_blocks: int = 1, image_size: Optional[int] = None, data_options: Optional[dict] = None,
                batch_size: int = 128, num_workers: int = 0, device: str = "cpu",
                cache_dir: Union[str, os.PathLike, None, bool] = True, progress: bool = False,
                encoder: Optional[Encoder] = None, corruption: Optional[ImageCorruption] = None) -> FeatureSet:
    """Features of ``spec`` on one split of ``data`` with their provenance (see :func:`compute_features`).

    ``corruption``: corrupt every image first (robustness evaluation); it is part of the cache key."""
    if pooling not in POOLINGS:
        raise ModelSpecError(f"Unknown pooling {pooling!r}; choose one of {list(POOLINGS)}.")
    if is_features_file(spec):
        return features_from_file(Path(spec), split)
    started = time.perf_counter()
    if encoder is None:
        if isinstance(spec, str) and spec.startswith("timm:") and "@" not in spec and not isinstance(data, EvalData):
            # A randomly initialised timm model is built for the data's channel count: open the data first.
            data = open_eval_data(data, image_size, data_options)
        encoder = load_encoder(spec, in_chans=data.channels if isinstance(data, EvalData) else None, device=device)
    # Built-in sets are rendered at the size an sslkit model was trained at; other models get the set's
    # default rendering, resized by the transform to the input size they need (e.g. 224 for a timm ViT).
    render_size = image_size or (encoder.image_size if encoder.kind == "sslkit" else None)
    if not isinstance(data, EvalData):
        data = open_eval_data(data, render_size, data_options)
    elif data.builtin and render_size and data.image_size != render_size:
        data = open_eval_data(data.source, render_size, data.options)
    size = int(image_size or encoder.image_size or data.image_size)
    if split not in data.splits:
        raise DataError(f"Data '{data.source}' has no {split!r} split (it has {sorted(data.splits)}); "
                        "an unlabelled folder has only 'train'.")
    dataset = data.splits[split]
    adapter = ChannelAdapter(data.channels, encoder.in_chans, encoder.name)
    chans = 3 if adapter.repeat else data.channels
    if encoder.mean is not None:
        mean, std = tuple(encoder.mean), tuple(encoder.std)
    else:
        mean, std = tuple(data.mean), tuple(data.std)
        if adapter.repeat:
            mean, std = mean * 3, std * 3
    if len(mean) != chans:
        raise ModelSpecError(f"{encoder.name} normalises {len(mean)} channels but receives {chans}; "
                             "evaluate it on data with matching channels.")
    from sslkit.data.augment import EvalTransform

    transform = EvalTransform(size, mean, std)
    key_parts = {"format": CACHE_FORMAT, "model": encoder.fingerprint, "data": data.fingerprint, "split": split,
                 "transform": {"name": "resize-centre-crop", "size": size, "mean": mean, "std": std,
                               "repeat_grey": adapter.repeat},
                 "pooling": pooling, "n_last_blocks": n_last_blocks}
    if corruption is not None:  # absent otherwise, so clean features keep their existing cache keys
        key_parts["transform"]["corruption"] = corruption.cache_part()
    key = _cache_key(key_parts)
    info = {"model": encoder.name, "model_kind": encoder.kind, "model_description": encoder.description,
            "data": data.source, "split": split, "pooling": pooling, "n_last_blocks": n_last_blocks,
            "image_size": size, "mean": list(mean), "std": list(std), "cache_key": key}
    if corruption is not None:
        info["corruption"] = {"name": corruption.name, "severity": int(corruption.severity), "seed": corruption.seed}
    cache_path = None
    if cache_dir not in (None, False):
        cache_path = (default_cache_dir() if cache_dir is True else Path(cache_dir)) / f"{key}.safetensors"
        cached = _read_cache(cache_path)
        if cached is not None:
            features, labels = cached
            info.update(n=int(features.shape[0]), dim=int(features.shape[-1]), cache="hit",
                        cache_file=str(cache_path), seconds=time.perf_counter() - started)
            return FeatureSet(features, labels, info)
    view = EvalView(dataset, adapter, transform, corruption)
    was_training = isinstance(encoder.module, nn.Module) and encoder.module.training
    if isinstance(encoder.module, nn.Module):
        encoder.module.eval()
    try:
        features, labels = _run_encoder(encoder, view, pooling, n_last_blocks, batch_size, num_workers, device,
                                        progress, f"{encoder.name} · {data.source}/{split}"
                                        + (f" · {corruption.name}@{corruption.severity}" if corruption else ""))
    finally:
        if was_training:
            encoder.module.train()
    if not torch.isfinite(features).all():
        raise ModelSpecError(f"{encoder.name} produced non-finite features on {data.source}/{split}; "
                             "check the weights.")
    if cache_path is not None:
        save_safetensors_atomic(cache_path, {"features": features, "labels": labels},
                                metadata={"sslkit_features": json.dumps(key_parts, default=str)})
    info.update(n=int(features.shape[0]), dim=int(features.shape[-1]), cache="miss" if cache_path else "off",
                cache_file=str(cache_path) if cache_path else None, seconds=time.perf_counter() - started)
    return FeatureSet(features, labels, info)


def compute_features(spec: ModelLike, data: Union[str, EvalData], split: str = "test", pooling: str = "cls", *,
                     n_last_blocks: int = 1, image_size: Optional[int] = None, data_options: Optional[dict] = None,
                     batch_size: int = 128, num_workers: int = 0, device: str = "cpu",
                     cache_dir: Union[str, os.PathLike, None, bool] = True,
                     progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Frozen features of a model on one split of a dataset.

    Args:
        spec: sslkit run directory (or ``backbone.safetensors``), ``timm:<name>`` (random init, seed 0),
            ``timm:<name>@/path/weights.safetensors``, a features ``.safetensors`` file (``data`` then unused),
            an ``nn.Module`` or a callable (images (B, C, H, W) → (B, D) or (B, N, D)), or an :class:`Encoder`.
        data: ``'shapes'``, ``'digits'``, an image folder, a .csv/.txt path list, or an opened ``EvalData``.
        split: ``'train'`` or ``'test'`` (a labelled folder: the 90 % / 10 % hold-out; a plain features file
            answers ``'test'``/``'all'`` with its one set).
        pooling: ``'cls'``, ``'mean'`` (patch tokens), ``'cls+mean'`` (DINOv2 linear eval) or ``'patch'``.
        n_last_blocks: for ViTs, concatenate the class tokens of the last n blocks (DINOv2 uses 4 for ViT-S/B).
        image_size: input side (default: the model's native size, else the data's size, else 32).
        data_options: extra ``open_data`` options (``num_samples``, ``background``, ``channels``, ``stats``).
        cache_dir: directory of the feature cache; ``True`` = :func:`default_cache_dir`, ``None``/``False`` = off.

    Returns:
        ``features`` (n, D) float32 — (n, N, D) for ``'patch'`` — and ``labels`` (n,) int64, −1 where unlabelled.
    """
    result = feature_set(spec, data, split, pooling, n_last_blocks=n_last_blocks, image_size=image_size,
                         data_options=data_options, batch_size=batch_size, num_workers=num_workers, device=device,
                         cache_dir=cache_dir, progress=progress)
    return result.features, result.labels
