"""The alignment metrics ``sslkit align`` computes between two representations, and the random baseline of
mutual kNN. Every metric is a call into :mod:`sslkit.functional.metrics`."""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from sslkit.config import ConfigError
from sslkit.functional.metrics import cka, cknna, mutual_knn

__all__ = ["ALIGNMENT_METRICS", "DEFAULT_METRICS", "check_metrics", "mutual_knn_baseline"]


def _cka_linear(a: torch.Tensor, b: torch.Tensor, k: int) -> float:
    return cka(a, b)


def _cka_rbf(a: torch.Tensor, b: torch.Tensor, k: int) -> float:
    return cka(a, b, kernel="rbf")


def _cka_linear_unbiased(a: torch.Tensor, b: torch.Tensor, k: int) -> float:
    return cka(a, b, unbiased=True)


def _mutual_knn(a: torch.Tensor, b: torch.Tensor, k: int) -> float:
    return mutual_knn(a, b, k=k)


def _cknna(a: torch.Tensor, b: torch.Tensor, k: int) -> float:
    return cknna(a, b, k=k)


# name -> (fn(a, b, k) -> float, one-line description for tables and plots, symmetric in (a, b)?)
# CKNNA is not symmetric: its kNN mask α_ij = 1[j ∈ N(i)] is not, so the cross term 1ᵀ(α∘K)(α∘L)1 of the
# unbiased HSIC changes when K and L swap (platonic-rep's metrics.py has the same property). Its matrix holds
# both orders; the difference is small (≈1e-3 in our tests).
ALIGNMENT_METRICS: dict[str, tuple[Callable[[torch.Tensor, torch.Tensor, int], float], str, bool]] = {
    "cka_linear": (_cka_linear, "linear CKA (biased HSIC)", True),
    "cka_rbf": (_cka_rbf, "RBF CKA (median bandwidth)", True),
    "cka_linear_unbiased": (_cka_linear_unbiased, "linear CKA (unbiased HSIC)", True),
    "mutual_knn": (_mutual_knn, "mutual kNN", True),
    "cknna": (_cknna, "CKNNA", False),
}
DEFAULT_METRICS = ("cka_linear", "cka_rbf", "mutual_knn", "cknna")


def mutual_knn_baseline(n: int, k: int) -> tuple[float, float]:
    """Mean and standard error of mutual kNN between two representations independent of each other.

    With independent neighbour sets each row's overlap |N_A(i) ∩ N_B(i)| is hypergeometric (k draws from n − 1
    items of which k are marked): mean k²/(n−1), variance k·p·(1−p)·(n−1−k)/(n−2) with p = k/(n−1). The
    standard error treats the n rows as independent, which is what the spec's "within 3 standard errors" uses.
    """
    if not 1 <= k <= n - 2:
        raise ValueError(f"mutual_knn_baseline needs 1 ≤ k ≤ n − 2, got n={n}, k={k}.")
    p = k / (n - 1)
    var_overlap = k * p * (1 - p) * (n - 1 - k) / (n - 2)
    return p, math.sqrt(var_overlap) / k / math.sqrt(n)


def check_metrics(metrics: Sequence[str]) -> tuple:
    metrics = tuple(metrics)
    unknown = [m for m in metrics if m not in ALIGNMENT_METRICS]
    if unknown or not metrics:
        raise ConfigError(f"Unknown alignment metric(s) {unknown}; choose from {list(ALIGNMENT_METRICS)}.")
    return metrics
