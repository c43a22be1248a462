"""(M, M) matrices of every alignment metric between M representations of the same n samples, with a
permutation null (the metric between model i and a row-shuffled model j)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence

import torch

from sslkit.analysis.align.metrics import ALIGNMENT_METRICS, DEFAULT_METRICS, check_metrics, mutual_knn_baseline
from sslkit.config import ConfigError
from sslkit.data.errors import DataError

__all__ = ["AlignmentMatrices", "alignment_matrices", "alignment_steps", "feature_matrices"]


@dataclass
class AlignmentMatrices:
    """Pairwise alignment of M representations of the same n samples.

    Attributes:
        names: the M model names, in matrix order.
        n: samples the metrics saw; k: neighbours of the kNN-based metrics.
        matrices: metric -> (M, M) float64; entry (i, j) = metric(features_i, features_j), diagonal computed too
            (1 unless a representation is degenerate, e.g. constant). Symmetric except CKNNA (slightly).
        permutation_null: metric -> (M, M) float64 of metric(features_i, features_j[π]) with one seeded row
            permutation π: what the metric gives when the sample correspondence is destroyed. None if not computed.
        random_mutual_knn, random_mutual_knn_se: the analytic k/(n−1) baseline and its standard error.
    """

    names: list
    n: int
    k: int
    matrices: dict
    permutation_null: Optional[dict] = None
    random_mutual_knn: float = 0.0
    random_mutual_knn_se: float = 0.0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"names": list(self.names), "n": self.n, "k": self.k,
                "matrices": {m: v.tolist() for m, v in self.matrices.items()},
                "permutation_null": None if self.permutation_null is None
                else {m: v.tolist() for m, v in self.permutation_null.items()},
                "random_baseline": {"mutual_knn": self.random_mutual_knn,
                                    "mutual_knn_standard_error": self.random_mutual_knn_se,
                                    "rule": "mutual kNN of independent representations = k/(n−1)"},
                "seconds": self.seconds}


def feature_matrices(features: Mapping[str, torch.Tensor]) -> tuple[list, list]:
    names = list(features)
    mats = [torch.as_tensor(features[name]).detach().double() for name in names]
    for name, x in zip(names, mats):
        if x.ndim != 2:
            raise DataError(f"Features of {name!r} have shape {tuple(x.shape)}; alignment needs pooled features "
                            "(n, D) — use pooling cls, mean or cls+mean.")
    sizes = {x.shape[0] for x in mats}
    if len(sizes) > 1:
        raise DataError("Alignment needs the same samples for every model, but the feature sets have "
                        f"{dict(zip(names, [x.shape[0] for x in mats]))} rows; use one split of one dataset.")
    return names, mats


def _pairs(size: int, symmetric: bool) -> list[tuple[int, int]]:
    """(i, j) entries to evaluate: the upper triangle with the diagonal, or every entry for an asymmetric metric."""
    return [(i, j) for i in range(size) for j in range(size) if j >= i or not symmetric]


def alignment_steps(size: int, metrics: Sequence[str], permutation_null: bool) -> int:
    """How many metric evaluations :func:`alignment_matrices` makes for ``size`` models (for progress bars)."""
    steps = sum(len(_pairs(size, ALIGNMENT_METRICS[m][2])) for m in check_metrics(metrics))
    return steps * (2 if permutation_null else 1)


def alignment_matrices(features: Mapping[str, torch.Tensor], metrics: Sequence[str] = DEFAULT_METRICS, k: int = 10,
                       permutation_null: bool = True, seed: int = 0,
                       on_step: Optional[Callable[[str], None]] = None) -> AlignmentMatrices:
    """Matrices of every metric between every pair of representations.

    Args:
        features: name -> (n, d_i) features of the same n samples, in the same row order.
        metrics: names from :data:`ALIGNMENT_METRICS`.
        k: neighbours for mutual kNN and CKNNA (spec: 10).
        permutation_null: also compute every entry with the second model's rows shuffled (seeded by ``seed``).
        on_step: called with a short description after each metric evaluation (for progress bars); see
            :func:`alignment_steps` for their number.

    Returns:
        :class:`AlignmentMatrices`. Entry (i, j) is metric(features_i, features_j); for the symmetric metrics it is
        evaluated once per pair and mirrored, CKNNA (asymmetric, see :data:`ALIGNMENT_METRICS`) is evaluated in
        both orders.
    """
    started = time.perf_counter()
    metrics = check_metrics(metrics)
    names, mats = feature_matrices(features)
    if not names:
        raise ConfigError("alignment_matrices needs at least one representation.")
    n = mats[0].shape[0]
    if n < max(4, k + 2):
        raise DataError(f"Alignment with k={k} needs at least {max(4, k + 2)} samples, got {n}; pass more data "
                        "or a smaller k.")
    size = len(names)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    out = {m: torch.full((size, size), float("nan"), dtype=torch.float64) for m in metrics}
    null = None
    if permutation_null:
        null = {m: torch.full((size, size), float("nan"), dtype=torch.float64) for m in metrics}
    for metric in metrics:
        fn, _, symmetric = ALIGNMENT_METRICS[metric]
        for i, j in _pairs(size, symmetric):
            out[metric][i, j] = fn(mats[i], mats[j], k)
            if symmetric:
                out[metric][j, i] = out[metric][i, j]
            if on_step is not None:
                on_step(f"{metric} {names[i]} · {names[j]}")
            if null is not None:
                null[metric][i, j] = fn(mats[i], mats[j][perm], k)
                if symmetric:
                    null[metric][j, i] = null[metric][i, j]
                if on_step is not None:
                    on_step(f"{metric} {names[i]} · shuffled {names[j]}")
    base, se = mutual_knn_baseline(n, k)
    return AlignmentMatrices(names=names, n=n, k=k, matrices=out, permutation_null=null, random_mutual_knn=base,
                             random_mutual_knn_se=se, seconds=time.perf_counter() - started)
