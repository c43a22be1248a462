"""Cross-model alignment and identifiability: the measurable side of the SITh position paper (arXiv 2504.13101).

Three layers, each usable on its own:

* :func:`alignment_matrices` — (M, M) matrices of CKA (linear, RBF, unbiased linear), mutual kNN and CKNNA
  between M representations of the same n samples, the analytic random baseline of mutual kNN (k/(n−1)) and a
  permutation null for every metric (the metric between model i and a row-shuffled model j);
* :func:`latent_identifiability` — per model and per latent factor, held-out linear R² (ridge 1e-6) and MCC
  against known latents (spec ``representation-metrics.md`` item 7); :func:`shapes_latents` reads the factors of
  the built-in ``shapes`` set in dataset order;
* :func:`align` / :func:`write_align_report` — the ``sslkit align`` pipeline: features of each model via
  :mod:`sslkit.eval.feature_cache` (cached), both analyses, ``align.json`` and annotated PNG heat maps.

Every metric is a call into :mod:`sslkit.functional.metrics`; this package only arranges the calls.

Example::

    result = alignment_matrices({"a": feats_a, "b": feats_b, "c": feats_c}, k=10)
    result.matrices["mutual_knn"]          # (3, 3), diagonal 1
    result.random_mutual_knn               # k/(n−1)
    ident = latent_identifiability({"a": feats_a}, {"scale": scale, "position": position})
    ident.r2["a"]["position"], ident.mcc["a"]["all"]

One concept per file: :mod:`~sslkit.analysis.align.metrics` (the metric registry, the random baseline),
:mod:`~sslkit.analysis.align.matrices`, :mod:`~sslkit.analysis.align.identifiability`,
:mod:`~sslkit.analysis.align.latents` (the factors of ``shapes``), :mod:`~sslkit.analysis.align.plots`,
:mod:`~sslkit.analysis.align.settings`, :mod:`~sslkit.analysis.align.pipeline` (:func:`align`) and
:mod:`~sslkit.analysis.align.outputs` (:func:`write_align_report`). This package gathers their public names.
"""

from __future__ import annotations

from sslkit.analysis.align.identifiability import Identifiability, latent_identifiability
from sslkit.analysis.align.latents import SHAPES_JOINT_LATENTS, shapes_latents
from sslkit.analysis.align.matrices import AlignmentMatrices, alignment_matrices, alignment_steps
from sslkit.analysis.align.metrics import ALIGNMENT_METRICS, DEFAULT_METRICS, mutual_knn_baseline
from sslkit.analysis.align.outputs import write_align_report
from sslkit.analysis.align.pipeline import align
from sslkit.analysis.align.plots import heatmap_png, identifiability_png
from sslkit.analysis.align.settings import AlignSettings

__all__ = [
    "ALIGNMENT_METRICS",
    "DEFAULT_METRICS",
    "SHAPES_JOINT_LATENTS",
    "AlignSettings",
    "AlignmentMatrices",
    "Identifiability",
    "align",
    "alignment_matrices",
    "alignment_steps",
    "heatmap_png",
    "identifiability_png",
    "latent_identifiability",
    "mutual_knn_baseline",
    "shapes_latents",
    "write_align_report",
]
