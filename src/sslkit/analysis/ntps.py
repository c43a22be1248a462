"""NTPS per layer of a causal LM on a labelled text set, next to linear-probe accuracy (arXiv 2505.17169).

One pass over the texts feeds every layer's NTPS statistics (:class:`sslkit.functional.ntps.NTPSStatistics`, never
storing hidden states) and keeps only the mean-token feature of each text per layer, (N, layers, d), for the
probes. Each layer gets NTPS (raw and whitened), the K-sweep curve, and a probe accuracy on a held-out split
(StandardScaler + LogisticRegression(saga, tol 0.01, max_iter 1000), the reference ``linear_sklearn.py`` settings;
the reference scores on the training split, which is reported as ``probe_train_accuracy``). Spearman's ρ between
NTPS and held-out probe accuracy is taken across layers and, for several datasets, across all (dataset, layer)
pairs.

Example::

    from sslkit.analysis.ntps import ntps_sweep
    sweep = ntps_sweep("smollm2", "polarity", layers=[0, 10, 20, 30])
    [(row.layer, row.ntps, row.probe_accuracy) for row in sweep.rows], sweep.spearman
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from sslkit.data.errors import DataError
from sslkit.data.text import TextDataset, load_text_dataset
from sslkit.figures import pyplot, save_figure
from sslkit.functional.ntps import DEFAULT_FRACTIONS, NTPSStatistics, ntps

__all__ = ["LayerRow", "NTPSSweep", "parse_layers", "collect_ntps_features", "ntps_per_layer", "probe_accuracy",
           "spearman",
           "ntps_sweep", "pooled_spearman", "plot_sweeps", "DEFAULT_MAX_TOKENS"]

# Long newsgroup posts would dominate CPU time; 256 tokens keep the mean-token features representative.
DEFAULT_MAX_TOKENS = 256


@dataclass
class LayerRow:
    """One layer's figures. ``layer`` 0 is the embedding output, ``i`` the output of block ``i``."""

    layer: int
    ntps: float
    ntps_whitened: float
    k_u: int
    k_v: int
    rank_u: int
    rank_v: int
    probe_accuracy: float
    probe_train_accuracy: float
    curve: dict = field(default_factory=dict)


@dataclass
class NTPSSweep:
    """NTPS and probes for every requested layer of one model on one dataset."""

    model: str
    dataset: str
    num_texts: int
    num_classes: int
    class_names: list
    truncated: int
    max_tokens: int | None
    order: str
    rows: list
    spearman: float
    lora: dict | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for row in out["rows"]:
            row["curve"] = {f"{k:.2f}": v for k, v in row["curve"].items()}
        return out


def parse_layers(spec: str | Sequence[int] | None, num_layers: int) -> list[int]:
    """``None``/``"all"`` → 0…num_layers−1; ``"0,5,-1"`` or ``"2-6"`` (inclusive) or a list; negatives count back."""
    if spec is None or spec == "all":
        return list(range(num_layers))
    items: list[int] = []
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    for part in parts:
        text = str(part).strip()
        try:
            if isinstance(part, str) and "-" in text[1:]:
                head, tail = text[0] + text[1:].split("-", 1)[0], text[1:].split("-", 1)[1]
                items.extend(range(int(head), int(tail) + 1))
            else:
                items.append(int(text))
        except ValueError:
            raise ValueError(f"Layer {text!r} is not an integer or a range like 2-6.") from None
    resolved = []
    for layer in items:
        index = layer + num_layers if layer < 0 else layer
        if not 0 <= index < num_layers:
            raise ValueError(f"Layer {layer} does not exist: this model has hidden states 0..{num_layers - 1} "
                             f"(0 = embeddings).")
        if index not in resolved:
            resolved.append(index)
    return resolved


def collect_ntps_features(model, tokenizer, dataset: TextDataset, layers: Sequence[int] | None = None, *,
                          batch_size: int = 16, max_tokens: int | None = DEFAULT_MAX_TOKENS,
                          on_batch: Callable[[int], None] | None = None) -> tuple[NTPSStatistics, torch.Tensor, list[int]]:
    """One forward pass over ``dataset``: NTPS statistics of the chosen layers and mean-token features.

    Returns ``(stats, features, layers)`` with features (N, len(layers), d) float32 in dataset order.
    """
    from sslkit.llm.models import hidden_state_batches

    num_states = int(model.config.num_hidden_layers) + 1
    layers = parse_layers(layers, num_states)
    dim = int(model.config.hidden_size)
    stats = NTPSStatistics(len(layers), dim, max(dataset.num_classes, 1))
    features = torch.zeros(len(dataset), len(layers), dim)
    labels = torch.tensor(dataset.labels if dataset.labels is not None else [0] * len(dataset))
    chosen = torch.tensor(layers)
    for indices, hidden, mask in hidden_state_batches(model, tokenizer, dataset.texts, batch_size=batch_size,
                                                      max_tokens=max_tokens, on_batch=on_batch):
        hidden = hidden[chosen]
        idx = torch.tensor(indices)
        stats.update(hidden, mask, labels[idx])
        m = mask.float()
        means = (hidden * m[None, :, :, None]).sum(2) / m.sum(1).clamp_min(1)[None, :, None]
        features[idx] = means.transpose(0, 1)
    return stats, features, layers


def ntps_per_layer(stats: NTPSStatistics, layers: Sequence[int], *, k_u: int | float | None = None,
                   k_v: int | float | None = None, order: str = "descending") -> list:
    """:func:`sslkit.functional.ntps.ntps` for every tracked layer (``layers`` names them in messages).

    Runs with one intra-op thread: the 576-sized eigh/QR calls are too small to gain from threads, and on a
    shared 2-core machine two threads made this stage 7x slower (benchmarks/ntps_speed.py: 36 s vs 4.9 s).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        results = []
        for position, layer in enumerate(layers):
            try:
                results.append(ntps(stats.layer(position), k_u=k_u, k_v=k_v, order=order, fractions=DEFAULT_FRACTIONS))
            except ValueError as err:
                raise ValueError(f"Layer {layer}: {err}") from None
        return results
    finally:
        torch.set_num_threads(threads)


def probe_accuracy(features: np.ndarray, labels: np.ndarray, *, test_fraction: float = 0.3,
                   seed: int = 0) -> tuple[float, float]:
    """Held-out and training accuracy of StandardScaler + LogisticRegression(saga, tol 0.01, max_iter 1000).

    The split is stratified under ``seed``. Returns ``(held_out_accuracy, train_accuracy)``.
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_train, x_test, y_train, y_test = train_test_split(features, labels, test_size=test_fraction,
                                                        random_state=seed, stratify=labels)
    probe = make_pipeline(StandardScaler(), LogisticRegression(solver="saga", tol=0.01, max_iter=1000,
                                                               random_state=seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        probe.fit(x_train, y_train)
    return float(probe.score(x_test, y_test)), float(probe.score(x_train, y_train))


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's ρ (scipy); NaN when fewer than 3 pairs or one side is constant."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    return float(spearmanr(a, b).statistic)


def _check_probe_split(dataset: TextDataset, test_fraction: float) -> None:
    counts = [c for c in dataset.class_counts() if c > 0]
    if min(counts) < 2 or int(round(test_fraction * len(dataset))) < len(counts):
        raise DataError(f"Text dataset {dataset.name!r} is too small for a held-out probe split "
                        f"(class counts {dataset.class_counts()}); give at least 2 texts per class and "
                        f"{math.ceil(len(counts) / test_fraction)} texts.")


def ntps_sweep(model: Any, data: Any, *, layers: str | Sequence[int] | None = None,
               k_u: int | float | None = None, k_v: int | float | None = None, order: str = "descending",
               batch_size: int = 16, max_tokens: int | None = DEFAULT_MAX_TOKENS, test_fraction: float = 0.3,
               seed: int = 0, dtype: str = "float32", on_batch: Callable[[int], None] | None = None,
               model_name: str | None = None) -> NTPSSweep:
    """NTPS and held-out probe accuracy per layer.

    Args:
        model: ``"smollm2"``, a local causal-LM directory, or a ``(model, tokenizer)`` pair.
        data: anything :func:`sslkit.data.text.load_text_dataset` takes (labelled, ≥ 2 classes).
        layers: hidden-state indices (0 = embeddings), ``"all"``/``None`` for every layer, or ``"0,10,-1"``.
        k_u, k_v, order: as in :func:`sslkit.functional.ntps.ntps` (default: spec top-k rule, descending).
        max_tokens: truncate longer texts (the model's context is the hard limit); the count is in ``truncated``.

    Raises:
        DataError: fewer than two classes or too few texts for the probe split.
        ValueError: a k above a layer's retained rank, an unknown layer, or a model that is not a causal LM.
    """
    from sslkit.llm.models import context_length, count_truncated, load_causal_lm

    dataset = load_text_dataset(data).require_classes(2)
    _check_probe_split(dataset, test_fraction)
    if isinstance(model, (tuple, list)):
        lm, tokenizer = model
        name = model_name or type(lm).__name__
    else:
        lm, tokenizer = load_causal_lm(model, dtype=dtype)
        name = model_name or str(model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    limit = context_length(lm)
    if max_tokens is not None:
        limit = max_tokens if limit is None else min(limit, max_tokens)
    truncated = count_truncated(tokenizer, dataset.texts, limit)
    stats, features, chosen = collect_ntps_features(lm, tokenizer, dataset, parse_layers(layers, lm.config.num_hidden_layers + 1),
                                                    batch_size=batch_size, max_tokens=limit, on_batch=on_batch)
    labels = np.asarray(dataset.labels)
    rows = []
    results = ntps_per_layer(stats, chosen, k_u=k_u, k_v=k_v, order=order)
    for position, (layer, result) in enumerate(zip(chosen, results)):
        held_out, train = probe_accuracy(features[:, position].numpy(), labels, test_fraction=test_fraction, seed=seed)
        rows.append(LayerRow(layer, result.score, result.score_whitened, result.k_u, result.k_v, result.rank_u,
                             result.rank_v, held_out, train, result.curve))
    rho = spearman([r.ntps for r in rows], [r.probe_accuracy for r in rows])
    return NTPSSweep(name, dataset.name, len(dataset), dataset.num_classes, list(dataset.class_names), truncated,
                     limit, order, rows, rho)


def pooled_spearman(sweeps: Sequence[NTPSSweep]) -> float:
    """Spearman's ρ over every (dataset, layer) pair of several sweeps."""
    return spearman([r.ntps for s in sweeps for r in s.rows], [r.probe_accuracy for s in sweeps for r in s.rows])


def plot_sweeps(sweeps: Sequence[NTPSSweep], path: str | Path) -> Path:
    """PNG: NTPS (left axis) and held-out probe accuracy (right axis) against layer, one colour per dataset."""
    fig, ax = pyplot().subplots(figsize=(7, 4), dpi=110)
    twin = ax.twinx()
    for i, sweep in enumerate(sweeps):
        colour = f"C{i}"
        layers = [r.layer for r in sweep.rows]
        name = Path(sweep.dataset).name
        ax.plot(layers, [r.ntps for r in sweep.rows], "-o", color=colour, ms=3, label=f"{name} NTPS")
        twin.plot(layers, [r.probe_accuracy for r in sweep.rows], "--s", color=colour, ms=3, alpha=0.7,
                  label=f"{name} probe acc.")
    ax.set_xlabel("layer (0 = embeddings)")
    ax.set_ylabel("NTPS (solid)")
    twin.set_ylabel("held-out probe accuracy (dashed)")
    ax.set_ylim(0, 1.02)
    twin.set_ylim(0, 1.02)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_title(f"NTPS and linear probes per layer — {sweeps[0].model}" if sweeps else "NTPS")
    handles = ax.get_legend_handles_labels()
    extra = twin.get_legend_handles_labels()
    ax.legend(handles[0] + extra[0], handles[1] + extra[1], fontsize=7, loc="lower right")
    fig.tight_layout()
    return save_figure(fig, path)
