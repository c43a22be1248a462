"""What ``sslkit evaluate MODEL`` can evaluate, and its frozen features, cached on disk.

A model ``spec`` is one of

* an sslkit run directory, or its ``backbone.safetensors`` / ``backbone.json`` (``sslkit pretrain`` output);
* ``timm:<name>`` — any timm architecture, randomly initialised under a fixed seed (nothing is downloaded),
  or ``timm:<name>@/path/weights.safetensors`` with weights from a local safetensors file;
* a features file: ``.safetensors`` holding ``features`` (n, D) [+ ``labels`` (n,)], or per split
  ``train.features`` / ``train.labels`` / ``test.features`` / ... ;
* in Python also an ``nn.Module`` or any callable mapping images (B, C, H, W) to (B, D) or (B, N, D).

:func:`compute_features` turns (spec, data, split, pooling) into ``(features, labels)`` and stores the result
as safetensors under a key that hashes the model weights, the data, the transform and the pooling, so a second
evaluation of the same thing reads the file instead of running the network.

This module gathers the public names of the files that implement it, one concept each:

* :mod:`sslkit.eval.encoders` — model specs, :class:`Encoder`, :func:`load_encoder`, :func:`pool_tokens`;
* :mod:`sslkit.eval.eval_data` — :class:`EvalData`, :func:`open_eval_data`;
* :mod:`sslkit.eval.eval_view` — the feature pass's view of the data and :class:`ImageCorruption`;
* :mod:`sslkit.eval.features_file` — :class:`FeatureSet` and features files;
* :mod:`sslkit.eval.feature_cache` — :func:`feature_set` / :func:`compute_features` and the on-disk cache;
* :mod:`sslkit.eval.errors` — :class:`ModelSpecError`.

Example::

    x, y = compute_features("runs/tiny-shapes", "shapes", split="test", pooling="cls+mean")
    x, y = compute_features("timm:resnet18", "digits", split="train", pooling="mean")
"""

from __future__ import annotations

from sslkit.eval.encoders import POOLINGS, Encoder, ModelLike, encoder_summary, load_encoder, pool_tokens
from sslkit.eval.errors import ModelSpecError
from sslkit.eval.eval_data import EvalData, open_eval_data
from sslkit.eval.eval_view import ImageCorruption
from sslkit.eval.feature_cache import CACHE_FORMAT, compute_features, default_cache_dir, feature_set
from sslkit.eval.features_file import FeatureSet, is_features_file, save_features_file

__all__ = [
    "CACHE_FORMAT",
    "POOLINGS",
    "Encoder",
    "EvalData",
    "FeatureSet",
    "ImageCorruption",
    "ModelLike",
    "ModelSpecError",
    "compute_features",
    "default_cache_dir",
    "encoder_summary",
    "feature_set",
    "is_features_file",
    "load_encoder",
    "open_eval_data",
    "pool_tokens",
    "save_features_file",
]
