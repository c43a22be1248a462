"""The settings of ``sslkit align``: everything that decides its numbers."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Optional

from sslkit.analysis.align.metrics import DEFAULT_METRICS, check_metrics
from sslkit.config import ConfigError

__all__ = ["AlignSettings"]


@dataclass
class AlignSettings:
    """Everything that decides the numbers of ``sslkit align``; all of it goes into ``align.json``.

    ``samples`` caps the rows fed to the alignment matrices (a seeded subset, the same rows for every model;
    RBF CKA and CKNNA build (n, n) kernels); identifiability uses every row of the split.
    """

    split: str = "test"
    pooling: str = "cls"
    k: int = 10
    metrics: tuple = DEFAULT_METRICS
    samples: int = 2000
    permutation_null: bool = True
    fit_fraction: float = 0.8
    ridge: float = 1e-6
    mcc_method: str = "pearson"
    seed: int = 0
    n_last_blocks: int = 1
    image_size: Optional[int] = None
    batch_size: int = 128
    device: str = "cpu"
    cache_dir: Any = True

    def __post_init__(self) -> None:
        self.metrics = check_metrics(self.metrics)
        if self.pooling not in ("cls", "mean", "cls+mean"):
            raise ConfigError(f"pooling must be one of ['cls', 'mean', 'cls+mean'] for alignment, "
                              f"got {self.pooling!r}.")
        if self.k < 1:
            raise ConfigError(f"k must be ≥ 1, got {self.k}.")
        if self.samples < max(4, self.k + 2):
            raise ConfigError(f"samples must be at least max(4, k + 2) = {max(4, self.k + 2)}, got {self.samples}.")
        if not self.ridge >= 0:
            raise ConfigError(f"ridge must be ≥ 0, got {self.ridge}.")
        if self.mcc_method not in ("pearson", "spearman"):
            raise ConfigError(f"mcc_method must be 'pearson' or 'spearman', got {self.mcc_method!r}.")

    def to_dict(self) -> dict:
        out = asdict(self)
        out["metrics"] = list(self.metrics)
        out["cache_dir"] = str(self.cache_dir) if self.cache_dir not in (True, False, None) else self.cache_dir
        return out
