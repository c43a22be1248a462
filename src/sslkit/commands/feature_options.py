"""The options of the verbs that extract features from models (evaluate, align, taskprior): one spelling,
one default, one help text each."""

from __future__ import annotations

import argparse


def add_feature_arguments(parser: argparse.ArgumentParser) -> None:
    """``--batch-size``, ``--device``, ``--cache-dir`` and ``--no-cache`` (the feature cache of ``sslkit.eval``)."""
    parser.add_argument("--batch-size", type=int, default=128, help="images per forward pass")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps ... (feature extraction)")
    parser.add_argument("--cache-dir", help="feature cache (default $SSLKIT_CACHE_DIR or ~/.cache/sslkit/features)")
    parser.add_argument("--no-cache", action="store_true", help="always recompute features")
