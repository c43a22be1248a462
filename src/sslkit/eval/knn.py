"""kNN protocol on frozen features: weighted voting with temperature (DINOv2, arXiv 2304.07193).

The math lives in :mod:`sslkit.functional.knn` (blockwise top-k, never an n×n matrix); this module checks the
inputs a user can get wrong, runs it for all ``k`` at once and returns a result that records its settings.

Example::

    result = knn_protocol(train_x, train_y, test_x, test_y)      # k ∈ {10, 20, 100, 200}, T = 0.07
    result.accuracy[20]
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import torch

from sslkit.data.errors import DataError
from sslkit.functional.knn import knn_predict

__all__ = ["KNNConfig", "KNNResult", "check_labelled", "knn_protocol"]


@dataclass
class KNNConfig:
    """Defaults from the DINOv2 kNN evaluation (facebookresearch/dinov2 ``dinov2/eval/knn.py``).

    ``weighting="softmax"`` votes with softmax(s/T) over the top max(ks) cosine neighbours; ``"uniform"`` is a
    plain majority vote (identical to scikit-learn's ``KNeighborsClassifier(metric="cosine")``).
    """

    ks: tuple = (10, 20, 100, 200)
    temperature: float = 0.07
    weighting: str = "softmax"
    metric: str = "cosine"
    block_size: int = 1024

    def __post_init__(self) -> None:
        self.ks = tuple(int(k) for k in self.ks)
        if not self.ks or min(self.ks) < 1:
            raise ValueError(f"kNN ks must be positive neighbour counts, got {list(self.ks)}.")
        if self.temperature <= 0:
            raise ValueError(f"kNN temperature must be > 0, got {self.temperature}.")
        if self.weighting not in ("softmax", "uniform"):
            raise ValueError(f"kNN weighting must be 'softmax' or 'uniform', got {self.weighting!r}.")
        if self.metric != "cosine":
            raise ValueError(f"kNN metric must be 'cosine' (the only one implemented), got {self.metric!r}.")


@dataclass
class KNNResult:
    """Top-1 accuracy (in [0, 1]) for every k, and the settings that produced it."""

    accuracy: dict
    config: KNNConfig
    n_train: int
    n_test: int
    num_classes: int
    seconds: float
    predictions: dict = field(default_factory=dict, repr=False)  # k -> (m,) predicted labels

    def to_dict(self) -> dict:
        return {"accuracy": {str(k): v for k, v in self.accuracy.items()},
                "config": dataclasses.asdict(self.config), "n_train": self.n_train, "n_test": self.n_test,
                "num_classes": self.num_classes, "seconds": self.seconds}


def check_labelled(labels: torch.Tensor, what: str, protocol: str) -> None:
    """Raise a DataError naming the protocol if any label is missing (−1)."""
    missing = int((labels < 0).sum())
    if labels.numel() == 0:
        raise DataError(f"{protocol} got an empty {what} set; it needs labelled samples.")
    if missing:
        raise DataError(f"{protocol} needs labels, but {missing} of the {labels.numel()} {what} samples have none "
                        "(label −1); use a labelled dataset (class sub-folders, a 'label' column, or a features "
                        "file with labels) or a label-free protocol such as rankme.")


def knn_protocol(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                 test_labels: torch.Tensor, config: KNNConfig | None = None, num_classes: int | None = None) -> KNNResult:
    """Weighted kNN top-1 accuracy for every ``k`` in ``config.ks`` in one blockwise pass.

    Args:
        train_features: (n, D); train_labels: (n,) in [0, C).
        test_features: (m, D); test_labels: (m,).
        num_classes: C (default: 1 + the largest label seen).

    Raises:
        DataError: labels missing, or fewer training samples than the largest k.
    """
    config = config or KNNConfig()
    check_labelled(train_labels, "training", "kNN")
    check_labelled(test_labels, "test", "kNN")
    n = train_features.shape[0]
    if n < max(config.ks):
        raise DataError(f"kNN with k={max(config.ks)} needs at least {max(config.ks)} training samples, but the "
                        f"training split has {n}; choose smaller k (e.g. --knn-k 10,20).")
    if train_features.ndim != 2 or test_features.ndim != 2:
        raise DataError(f"kNN needs pooled features (n, D), got {tuple(train_features.shape)} and "
                        f"{tuple(test_features.shape)}; use pooling cls, mean or cls+mean.")
    classes = int(num_classes or (max(int(train_labels.max()), int(test_labels.max())) + 1))
    start = time.perf_counter()
    preds = knn_predict(train_features.float(), train_labels, test_features.float(), classes, ks=config.ks,
                        temperature=config.temperature, weighting=config.weighting, block_size=config.block_size)
    target = test_labels.long()
    accuracy = {k: float((p == target).double().mean()) for k, p in preds.items()}
    return KNNResult(accuracy=accuracy, config=config, n_train=n, n_test=int(test_features.shape[0]),
                     num_classes=classes, seconds=time.perf_counter() - start, predictions=preds)
