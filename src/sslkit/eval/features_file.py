"""Features files: precomputed features that ``compute_features`` / ``sslkit evaluate`` read instead of a model.

A features file is a ``.safetensors`` file holding ``features`` (n, D) [+ ``labels`` (n,)], or per split
``train.features`` / ``train.labels`` / ``test.features`` / ... ; :func:`save_features_file` writes one.
:class:`FeatureSet` is what a split of features is, whether it comes from such a file or from a model
(:mod:`sslkit.eval.feature_cache`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import torch

from sslkit.atomic_files import save_safetensors_atomic
from sslkit.eval.errors import ModelSpecError

__all__ = ["FeatureSet", "features_from_file", "is_features_file", "safetensors_keys", "save_features_file"]


@dataclass
class FeatureSet:
    """Frozen features of one split.

    Attributes:
        features: (n, D) float32, or (n, N, D) for pooling ``patch``.
        labels: (n,) int64, −1 where unlabelled.
        info: how they were made (model, data, split, transform, pooling, cache hit, seconds).
    """

    features: torch.Tensor
    labels: torch.Tensor
    info: dict


def is_features_file(spec: Any) -> bool:
    """True if ``spec`` names a ``.safetensors`` file holding a ``features`` tensor (plain or per split)."""
    if not isinstance(spec, (str, os.PathLike)) or str(spec).startswith("timm:"):
        return False
    path = Path(spec)
    if path.suffix != ".safetensors" or not path.is_file():
        return False
    return any(k == "features" or k.endswith(".features") for k in safetensors_keys(path))


def safetensors_keys(path: Path) -> list[str]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return list(f.keys())
    except (SafetensorError, OSError) as err:
        raise ModelSpecError(f"{path} is not a readable safetensors file ({err}).") from None


def features_from_file(path: Path, split: str) -> FeatureSet:
    from safetensors.torch import load_file

    keys = safetensors_keys(path)
    if f"{split}.features" in keys:
        prefix = f"{split}."
    elif "features" in keys and split in ("test", "all"):
        prefix = ""
    else:
        have = sorted(k[: -len(".features")] for k in keys if k.endswith(".features"))
        raise ModelSpecError(
            f"Features file {path} has no {split!r} split (it holds "
            + (f"splits {have}" if have else "one plain 'features' set") + f"); store '{split}.features' "
            f"[+ '{split}.labels'] in it.")
    tensors = load_file(str(path))
    features = tensors[prefix + "features"].float()
    if features.ndim not in (2, 3):
        raise ModelSpecError(f"{path}: '{prefix}features' has shape {tuple(features.shape)}; expected (n, D).")
    labels = tensors.get(prefix + "labels")
    if labels is None:
        labels = torch.full((features.shape[0],), -1, dtype=torch.long)
    labels = labels.long().reshape(-1)
    if labels.shape[0] != features.shape[0]:
        raise ModelSpecError(f"{path}: {labels.shape[0]} labels for {features.shape[0]} feature rows.")
    info = {"model": str(path), "model_kind": "features-file", "split": split, "key": prefix + "features",
            "n": int(features.shape[0]), "dim": int(features.shape[-1]), "cache": "n/a", "seconds": 0.0}
    return FeatureSet(features, labels, info)


def save_features_file(path: Union[str, os.PathLike], splits: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> Path:
    """Write ``{split: (features, labels)}`` as a features file that ``compute_features``/``sslkit evaluate`` read."""
    tensors = {}
    for split, (features, labels) in splits.items():
        tensors[f"{split}.features"] = features.float()
        tensors[f"{split}.labels"] = labels.long()
    path = Path(path)
    save_safetensors_atomic(path, tensors, metadata={"format": "sslkit.features"})
    return path
