"""Cross-model alignment and identifiability: the measurable side of the SITh position paper (arXiv 2504.13101).

Three layers, each usable on its own:

* :func:`alignment_matrices` — (M, M) matrices of CKA (linear, RBF, unbiased linear), mutual kNN and CKNNA
  between M representations of the same n samples, the analytic random baseline of mutual kNN (k/(n−1)) and a
  permutation null for every metric (the metric between model i and a row-shuffled model j);
* :func:`latent_identifiability` — per model and per latent factor, held-out linear R² (ridge 1e-6) and MCC
  against known latents (spec ``representation-metrics.md`` item 7); :func:`shapes_latents` reads the factors of
  the built-in ``shapes`` set in dataset order;
* :func:`align` / :func:`write_align_report` — the ``sslkit align`` pipeline: features of each model via
  :mod:`sslkit.eval.models` (cached), both analyses, ``align.json`` and annotated PNG heat maps.

Every metric is a call into :mod:`sslkit.functional.metrics`; this module only arranges the calls.

Example::

    result = alignment_matrices({"a": feats_a, "b": feats_b, "c": feats_c}, k=10)
    result.matrices["mutual_knn"]          # (3, 3), diagonal 1
    result.random_mutual_knn               # k/(n−1)
    ident = latent_identifiability({"a": feats_a}, {"scale": scale, "position": position})
    ident.r2["a"]["position"], ident.mcc["a"]["all"]
"""

from __future__ import annotations

import io
import json
import math
import os
import textwrap
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
import torch

from sslkit.config import ConfigError
from sslkit.data.errors import DataError
from sslkit.functional.metrics import cka, cknna, linear_r2, mcc, mutual_knn
from sslkit.atomic_files import write_bytes_atomic

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


# --------------------------------------------------------------------------------------------- matrices


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


def _check_metrics(metrics: Sequence[str]) -> tuple:
    metrics = tuple(metrics)
    unknown = [m for m in metrics if m not in ALIGNMENT_METRICS]
    if unknown or not metrics:
        raise ConfigError(f"Unknown alignment metric(s) {unknown}; choose from {list(ALIGNMENT_METRICS)}.")
    return metrics


def _feature_matrices(features: Mapping[str, torch.Tensor]) -> tuple[list, list]:
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
    steps = sum(len(_pairs(size, ALIGNMENT_METRICS[m][2])) for m in _check_metrics(metrics))
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
    metrics = _check_metrics(metrics)
    names, mats = _feature_matrices(features)
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


# --------------------------------------------------------------------------------------------- identifiability


@dataclass
class Identifiability:
    """Held-out linear R² and MCC of each model's representation against each latent factor.

    Attributes:
        names: models; latents: latent factor names (plus ``"all"`` for the joint factors when there are several).
        r2, mcc: model -> latent -> value.
        dims: latent -> number of columns it was encoded with (e.g. rotation as cos/sin = 2).
        joint: the latent factors concatenated into ``"all"``.
        fit_size, test_size: rows of the R² fit and held-out splits (seeded random split of the n rows).
        ridge: the ridge of the R² fit. mcc_method: ``pearson`` or ``spearman``. MCC uses all n rows.
    """

    names: list
    latents: list
    r2: dict
    mcc: dict
    dims: dict
    joint: list
    fit_size: int
    test_size: int
    ridge: float
    mcc_method: str
    seed: int
    feature_dims: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _latent_matrix(name: str, value: Any, n: int) -> torch.Tensor:
    z = torch.as_tensor(value).detach().double()
    if z.ndim == 1:
        z = z[:, None]
    if z.ndim != 2 or z.shape[0] != n:
        raise DataError(f"Latent {name!r} has shape {tuple(z.shape)}; expected ({n},) or ({n}, m) — one row per "
                        "feature row, in the same order.")
    return z


def latent_identifiability(features: Mapping[str, torch.Tensor], latents: Mapping[str, Any],
                           fit_fraction: float = 0.8, ridge: float = 1e-6, seed: int = 0, mcc_method: str = "pearson",
                           joint: Optional[Sequence[str]] = None) -> Identifiability:
    """Linear R² (held out) and MCC between each representation and each latent factor.

    Args:
        features: name -> (n, d) features; latents: factor name -> (n,) or (n, m), rows in the features' order.
            Encode a circular factor by (cos, sin) and a categorical one one-hot (see :func:`shapes_latents`).
        fit_fraction: share of the n rows (seeded random split) on which ẑ = W h + b is fitted; R² is measured on
            the rest (spec item 7; ridge ``ridge`` = 1e-6 on W).
        mcc_method: ``pearson`` (spec) or ``spearman``; MCC matches learned to true dimensions one-to-one
            (Hungarian) and uses every row — nothing is fitted except the matching.
        joint: factors concatenated into an extra latent ``"all"`` (default: every factor); skipped when only
            one factor is given.

    Returns:
        :class:`Identifiability`.
    """
    if not 0.0 < fit_fraction < 1.0:
        raise ConfigError(f"fit_fraction must be in (0, 1), got {fit_fraction}.")
    names, mats = _feature_matrices(features)
    if not names or not latents:
        raise ConfigError("latent_identifiability needs at least one representation and one latent factor.")
    n = mats[0].shape[0]
    groups = {name: _latent_matrix(name, value, n) for name, value in latents.items()}
    joint = list(joint) if joint is not None else list(groups)
    missing = [j for j in joint if j not in groups]
    if missing:
        raise ConfigError(f"joint names unknown latent(s) {missing}; latents are {list(groups)}.")
    if len(joint) > 1:
        groups["all"] = torch.cat([groups[j] for j in joint], dim=1)
    n_fit = int(round(fit_fraction * n))
    if n_fit < 2 or n - n_fit < 2:
        raise DataError(f"Identifiability needs at least 2 fit and 2 held-out rows; {n} rows with fit_fraction "
                        f"{fit_fraction} give {n_fit} and {n - n_fit}.")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    fit, test = perm[:n_fit], perm[n_fit:]
    r2: dict = {}
    corr: dict = {}
    for name, h in zip(names, mats):
        r2[name], corr[name] = {}, {}
        for latent, z in groups.items():
            try:
                r2[name][latent] = linear_r2(h[fit], z[fit], h[test], z[test], ridge=ridge)
            except ValueError as err:  # a factor constant on the held-out rows: R² is undefined there
                raise DataError(f"Linear R² of {name!r} against latent {latent!r}: {err}") from None
            corr[name][latent] = _safe_mcc(h, z, mcc_method)
    return Identifiability(names=names, latents=list(groups), r2=r2, mcc=corr,
                           dims={k: int(v.shape[1]) for k, v in groups.items()}, joint=joint if len(joint) > 1 else [],
                           fit_size=n_fit, test_size=n - n_fit, ridge=ridge, mcc_method=mcc_method, seed=seed,
                           feature_dims={name: int(h.shape[1]) for name, h in zip(names, mats)})


def _safe_mcc(h: torch.Tensor, z: torch.Tensor, method: str) -> float:
    # Dead (constant) feature dimensions have no correlation; they cannot be matched, so drop them.
    alive = h.std(0) > 0
    if not alive.any():
        return 0.0
    return mcc(h[:, alive], z, method=method)


# Continuous factors of 'shapes' that form the joint latent "all" (the class is categorical).
SHAPES_JOINT_LATENTS = ("color", "scale", "position", "rotation")


def shapes_latents(dataset: Any) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Latent factors of a :class:`sslkit.data.builtin.ShapesDataset`, one row per item in dataset order.

    Returns ``(latents, labels)`` with latents ``shape`` (n, C) one-hot, ``color`` (n, 3), ``scale`` (n, 1),
    ``position`` (n, 2) and ``rotation`` (n, 2) as (cos θ, sin θ) because θ is circular; ``labels`` (n,) is the
    class, used to check that features came in the same order.
    """
    n = len(dataset)
    if n == 0:
        raise DataError("The shapes split is empty; there are no latents to compare against.")
    items = [dataset[i] for i in range(n)]
    labels = torch.tensor([int(it["shape"]) for it in items])
    num_classes = int(getattr(dataset, "num_classes", int(labels.max()) + 1))
    theta = torch.tensor([float(it["rotation"]) for it in items], dtype=torch.float64)
    latents = {
        "shape": torch.nn.functional.one_hot(labels, num_classes).double(),
        "color": torch.stack([torch.as_tensor(it["color"]) for it in items]).double(),
        "scale": torch.tensor([float(it["scale"]) for it in items], dtype=torch.float64)[:, None],
        "position": torch.stack([torch.as_tensor(it["position"]) for it in items]).double(),
        "rotation": torch.stack([theta.cos(), theta.sin()], dim=1),
    }
    return latents, labels


# --------------------------------------------------------------------------------------------- plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _annotated_grid(ax, values: np.ndarray, rows: list, cols: list, vmin: float, vmax: float, cmap: str = "viridis"):
    image = ax.imshow(values, vmin=vmin, vmax=vmax, cmap=cmap, aspect="auto")
    ax.set_xticks(range(len(cols)), labels=cols, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), labels=rows)
    span = vmax - vmin if vmax > vmin else 1.0
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            v = values[i, j]
            text = "–" if not np.isfinite(v) else f"{v:.2f}"
            # Dark text on the bright (high) end of viridis, light text on the dark end.
            dark = np.isfinite(v) and (v - vmin) / span > 0.6
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="black" if dark else "white")
    return image


def heatmap_png(matrix: Any, names: Sequence[str], title: str, note: Optional[str] = None) -> bytes:
    """An annotated (M, M) heat map (colour scale 0–1, values printed in the cells) as PNG bytes."""
    plt = _pyplot()
    values = np.asarray(torch.as_tensor(matrix, dtype=torch.float64))
    side = 1.2 + 0.75 * len(names)
    fig, ax = plt.subplots(figsize=(max(4.2, side + 1.2), max(3.4, side)), dpi=110)
    try:
        low = min(0.0, float(np.nanmin(values))) if np.isfinite(values).any() else 0.0
        image = _annotated_grid(ax, values, list(names), list(names), vmin=low, vmax=1.0)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        ax.set_title(title, fontsize=10)
        lines = textwrap.wrap(note, width=int(fig.get_figwidth() * 15)) if note else []
        if lines:
            fig.text(0.01, 0.01, "\n".join(lines), fontsize=7, ha="left", va="bottom")
        fig.tight_layout(rect=(0, 0.035 * len(lines), 1, 1))
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        return buffer.getvalue()
    finally:
        plt.close(fig)


def identifiability_png(result: Identifiability) -> bytes:
    """Two annotated panels, models × latent factors: held-out linear R² and MCC, as PNG bytes."""
    plt = _pyplot()
    rows, cols = list(result.names), list(result.latents)
    r2 = np.array([[result.r2[m][c] for c in cols] for m in rows], dtype=float)
    corr = np.array([[result.mcc[m][c] for c in cols] for m in rows], dtype=float)
    width = max(5.0, 1.6 + 0.75 * len(cols))
    height = max(2.4, 1.4 + 0.45 * len(rows))
    fig, axes = plt.subplots(1, 2, figsize=(2 * width, height + 0.6), dpi=110)
    try:
        low = min(0.0, float(np.nanmin(r2))) if np.isfinite(r2).any() else 0.0
        image = _annotated_grid(axes[0], r2, rows, cols, vmin=max(low, -1.0), vmax=1.0)
        fig.colorbar(image, ax=axes[0], fraction=0.046, pad=0.04)
        axes[0].set_title(f"linear R² (held out, {result.test_size} rows)", fontsize=10)
        image = _annotated_grid(axes[1], corr, rows, cols, vmin=0.0, vmax=1.0)
        fig.colorbar(image, ax=axes[1], fraction=0.046, pad=0.04)
        axes[1].set_title(f"MCC ({result.mcc_method}, matched)", fontsize=10)
        axes[1].set_yticks(range(len(rows)), labels=[""] * len(rows))
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        return buffer.getvalue()
    finally:
        plt.close(fig)


# --------------------------------------------------------------------------------------------- pipeline


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
        self.metrics = _check_metrics(self.metrics)
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


def _model_features(spec: Any, opened: Any, settings: AlignSettings, progress: bool) -> tuple[str, dict, Any]:
    """(name, description dict, FeatureSet) of one model on ``settings.split``."""
    from sslkit.eval.models import encoder_summary, feature_set, is_features_file, load_encoder

    if is_features_file(spec):
        fs = feature_set(spec, None, settings.split)
        return Path(str(spec)).name, {"name": Path(str(spec)).name, "kind": "features-file",
                                      "description": f"precomputed features {spec}"}, fs
    encoder = load_encoder(spec, in_chans=opened.channels, device=settings.device)
    fs = feature_set(encoder, opened, settings.split, settings.pooling, n_last_blocks=settings.n_last_blocks,
                     image_size=settings.image_size, batch_size=settings.batch_size, device=settings.device,
                     cache_dir=settings.cache_dir, progress=progress, encoder=encoder)
    return encoder.name, encoder_summary(encoder), fs


def align(models: Sequence[Any], data: Optional[str], settings: Optional[AlignSettings] = None, progress: bool = False,
          log: Callable[[str], None] = lambda message: None) -> dict:
    """Alignment matrices between ``models`` and, on ``shapes``, their identifiability; a JSON-ready report.

    Args:
        models: specs accepted by :func:`sslkit.eval.models.load_encoder`, or features files whose rows are the
            items of ``settings.split`` of ``data`` in dataset order.
        data: ``shapes``, ``digits``, an image folder or path list; None when every model is a features file.
        settings: see :class:`AlignSettings`.
        progress: rich progress bars for feature extraction and the metric evaluations.
        log: receives one line per finished step.

    Raises:
        ConfigError / DataError / ModelSpecError: no models, one model without latents, mismatched rows, ...
    """
    from sslkit import __version__
    from sslkit.eval.models import is_features_file, open_eval_data

    settings = settings or AlignSettings()
    started = time.perf_counter()
    if not models:
        raise ConfigError("Pass at least one model to align.")
    if data is None and not all(is_features_file(m) for m in models):
        raise ConfigError("Pass --data: only features files can be aligned without a dataset.")
    has_latents = data == "shapes"
    if len(models) < 2 and not has_latents:
        where = f"'{data}' has" if data is not None else "features files have"
        raise ConfigError(f"One model gives no alignment matrix and {where} no known latents; pass at least "
                          "two models, or use --data shapes for the identifiability of one model.")
    opened = open_eval_data(data, None, {}) if data is not None else None
    if opened is not None and settings.split not in opened.splits:
        raise DataError(f"Data '{data}' has no {settings.split!r} split (it has {sorted(opened.splits)}); "
                        "an unlabelled folder has only 'train'.")
    entries, feats = [], {}
    for index, spec in enumerate(models):
        name, summary, fs = _model_features(spec, opened, settings, progress)
        if name in feats:  # two runs with the same directory name: tell them apart
            name = f"{name} [{index + 1}]"
        feats[name] = fs
        entries.append({"spec": str(spec) if isinstance(spec, (str, os.PathLike)) else repr(spec), "name": name,
                        "model": summary, "features": fs.info})
        log(f"{name}: {fs.features.shape[0]} × {fs.features.shape[-1]} features ({fs.info.get('cache', 'n/a')} cache)")
    sizes = {name: int(fs.features.shape[0]) for name, fs in feats.items()}
    if len(set(sizes.values())) > 1:
        raise DataError(f"The models have features for different numbers of samples {sizes}; a features file must "
                        f"hold the rows of the '{settings.split}' split in dataset order.")
    n = next(iter(sizes.values()))
    report: dict = {"sslkit_version": __version__, "created": time.strftime("%Y-%m-%d %H:%M:%S"),
                    "data": {"source": data, "split": settings.split, "samples": n,
                             "split_size": len(opened.splits[settings.split]) if opened is not None else None},
                    "settings": settings.to_dict(), "models": entries, "notes": []}
    if len(feats) >= 2:
        idx = torch.arange(n)
        if n > settings.samples:
            shuffled = torch.randperm(n, generator=torch.Generator().manual_seed(settings.seed))
            idx = shuffled[:settings.samples].sort().values
        subset = {name: fs.features[idx] for name, fs in feats.items()}
        size = len(subset)
        steps = alignment_steps(size, settings.metrics, settings.permutation_null)
        result = _with_progress(progress, steps, "alignment metrics",
                                lambda step: alignment_matrices(subset, settings.metrics, settings.k,
                                                                settings.permutation_null, settings.seed, step))
        report["alignment"] = result.to_dict()
        log(f"alignment: {len(settings.metrics)} metrics × {size}² pairs on {result.n} samples "
            f"({result.seconds:.1f} s)")
    else:
        report["alignment"] = None
        report["notes"].append("One model: no alignment matrices (they need at least two); identifiability only.")
    if has_latents:
        # The factors are drawn before any pixel and do not depend on the rendering size for the default texture
        # background, so the 32-px split gives the rows of every model's features (sslkit runs re-render at their
        # own size); the label check below guards the order.
        latents, labels = shapes_latents(opened.splits[settings.split])
        if labels.shape[0] != n:
            raise DataError(f"'shapes/{settings.split}' has {labels.shape[0]} items but the features have {n} rows; "
                            "a features file must hold that split's rows in dataset order.")
        for name, fs in feats.items():
            known = fs.labels >= 0
            if known.any() and not torch.equal(fs.labels[known], labels[known]):
                raise DataError(f"The labels stored with the features of {name!r} do not follow the order of "
                                f"'shapes/{settings.split}'; features and latents must describe the same rows.")
        ident = latent_identifiability({name: fs.features for name, fs in feats.items()}, latents,
                                       settings.fit_fraction, settings.ridge, settings.seed, settings.mcc_method,
                                       joint=SHAPES_JOINT_LATENTS)
        report["identifiability"] = ident.to_dict()
        report["identifiability"]["encoding"] = {
            "shape": "one-hot class", "color": "RGB in [0, 1]", "scale": "shape diameter / image side",
            "position": "centre (x, y) in [0, 1]", "rotation": "(cos θ, sin θ)",
            "all": "color, scale, position and rotation concatenated (8 columns)"}
        wide = [m for m, d in ident.feature_dims.items() if 2 * d >= ident.fit_size]
        if wide:
            report["notes"].append(
                f"{wide}: fewer than 2 fit rows per feature dimension ({ident.fit_size} rows), so the R² fit "
                f"(ridge {settings.ridge:g}) overfits and its held-out R² is pessimistic; use more rows "
                "(--split train) or a larger --ridge.")
        log(f"identifiability: R² and MCC of {len(feats)} model(s) against {len(ident.latents)} latents")
    else:
        report["identifiability"] = None
        if data is not None:
            report["notes"].append(f"'{data}' has no known latent factors: identifiability needs --data shapes.")
    report["seconds"] = time.perf_counter() - started
    return report


def _with_progress(progress: bool, total: int, description: str, work: Callable) -> Any:
    if not progress:
        return work(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  transient=True) as bar:
        task = bar.add_task(description, total=total)
        return work(lambda text: bar.update(task, advance=1, description=text))


def _plots(report: dict) -> dict[str, bytes]:
    plots: dict[str, bytes] = {}
    alignment = report.get("alignment")
    if alignment:
        n, k = alignment["n"], alignment["k"]
        for metric, matrix in alignment["matrices"].items():
            note = f"n = {n} samples of {report['data']['source']}/{report['data']['split']}"
            if metric in ("mutual_knn", "cknna"):
                note += f", k = {k}"
            if metric == "mutual_knn":
                note += f"; random baseline k/(n−1) = {alignment['random_baseline']['mutual_knn']:.3f}"
            null = (alignment.get("permutation_null") or {}).get(metric)
            if null is not None:
                off = [null[i][j] for i in range(len(null)) for j in range(len(null)) if i != j] or [null[0][0]]
                note += f"; shuffled-rows null ≤ {max(off):.3f}"
            plots[metric] = heatmap_png(matrix, alignment["names"], ALIGNMENT_METRICS[metric][1], note)
    ident = report.get("identifiability")
    if ident:
        fields = {k: ident[k] for k in Identifiability.__dataclass_fields__}
        plots["identifiability"] = identifiability_png(Identifiability(**fields))
    return plots


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return _json_ready(value.tolist())
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


def write_align_report(report: dict, out: str | os.PathLike) -> dict[str, Path]:
    """Write ``align.json`` and one PNG heat map per metric (+ ``identifiability.png``) into ``out``, atomically."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    plots = _plots(report)
    for name, png in plots.items():
        paths[name] = out / f"{name}.png"
        write_bytes_atomic(paths[name], png)
    report = dict(report, plots=[f"{name}.png" for name in plots])
    paths["json"] = out / "align.json"
    write_bytes_atomic(paths["json"], (json.dumps(_json_ready(report), indent=2, allow_nan=False) + "\n").encode())
    return paths
