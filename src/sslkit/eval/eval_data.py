"""The data an evaluation runs on: the labelled ``train`` / ``test`` splits of a source, with a fingerprint."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from torch.utils.data import Dataset

from sslkit.config import ConfigError

__all__ = ["EvalData", "open_eval_data"]


@dataclass
class EvalData:
    """The labelled splits of a data source for frozen-feature evaluation (images in [0, 1], untransformed)."""

    source: str
    splits: dict  # name -> Dataset
    channels: int
    num_classes: Optional[int]
    class_names: Optional[list]
    mean: tuple
    std: tuple
    image_size: int
    options: dict
    fingerprint: str
    builtin: bool = False


def _folder_fingerprint(dataset: Dataset) -> str:
    """Digest of the image files behind a folder / path-list dataset (paths, sizes, modification times)."""
    base = dataset
    while hasattr(base, "dataset"):
        base = base.dataset
    digest = hashlib.sha256()
    for p in getattr(base, "fingerprint_files", None) or getattr(base, "paths", []):  # shards: the tar files
        try:
            st = os.stat(p)
            digest.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{p}\0missing\n".encode())
    digest.update(json.dumps(list(getattr(base, "labels", [])), default=str).encode())
    return digest.hexdigest()


def open_eval_data(data: str, image_size: Optional[int] = None, options: Optional[dict] = None) -> EvalData:
    """Open ``data`` ('shapes', 'digits', a folder or a path list) with ``train`` and ``test`` splits.

    Built-in sets use their fixed train/test splits; a labelled folder uses ``open_data``'s seeded 90/10
    hold-out (seed 0); an unlabelled folder has only ``train`` (all images).
    """
    from sslkit import __version__
    from sslkit.data.builtin import BUILTIN_DATASETS
    from sslkit.data.data_config import DataConfig
    from sslkit.data.sources import open_configured

    options = dict(options or {})
    builtin = data in BUILTIN_DATASETS
    # Default input side: the built-in sets' native 32 px; DINOv2's 224 px centre crop for image folders.
    size = int(image_size or options.pop("image_size", None) or (32 if builtin else 224))
    options.pop("image_size", None)
    allowed = {"num_samples", "background", "background_noise", "channels", "stats", "holdout_fraction", "seed",
               "skip_bad_files", "bad_files_log", "dicom_window"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ConfigError(f"Unknown data option(s) {unknown}; allowed: {sorted(allowed)}.")
    section = DataConfig(source=data, image_size=size,
                         **{k: v for k, v in options.items() if k not in ("seed", "bad_files_log")})
    splits = open_configured(section, bad_files_log=options.get("bad_files_log"), seed=options.get("seed", 0))
    # Where skipped files are listed does not change the features: not part of the fingerprint.
    fingerprinted = {k: v for k, v in options.items() if k != "bad_files_log"}
    named = {"train": splits.bank if splits.bank is not None else splits.train}
    if splits.queries is not None:
        named["test"] = splits.queries
    digest = hashlib.sha256(json.dumps({"source": data, "size": size, "options": fingerprinted}, sort_keys=True,
                                       default=str).encode())
    if builtin:
        digest.update(f"sslkit{__version__}".encode())  # rendered by code: a new version may draw differently
    else:
        digest.update(str(Path(data).resolve()).encode())
        digest.update(_folder_fingerprint(splits.train).encode())
    return EvalData(source=data, splits=named, channels=splits.channels, num_classes=splits.num_classes,
                    class_names=splits.class_names, mean=tuple(splits.mean), std=tuple(splits.std),
                    image_size=size, options=options, fingerprint=digest.hexdigest(), builtin=builtin)
