"""Batched feature extraction, as the evaluation API names it.

The functions live in :mod:`sslkit.data.features`, below the engine, because the engine's kNN monitor and
its raw-pixel baseline use them too (an engine module may not import ``sslkit.eval``; see
``docs/architecture.md``). This module keeps ``sslkit.eval.features`` working with the same names.
"""

from sslkit.data.features import extract_features, raw_pixels

__all__ = ["extract_features", "raw_pixels"]
