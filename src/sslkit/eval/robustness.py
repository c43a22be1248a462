"""Corruption robustness: kNN accuracy of frozen features on ImageNet-C-style corrupted test images.

For every corruption of :mod:`sslkit.data.corruptions` and every severity, the test images are corrupted
(deterministically, per image), encoded, and classified by weighted kNN against the *clean* training features
(the usual kNN protocol, one k). The result per model is an accuracy grid (corruption × severity), its mean
(mean corruption accuracy) and the clean accuracy. Across models, Hendrycks & Dietterich (arXiv 1903.12261,
§3) normalise errors by a reference model:

* corruption error CE_c = Σ_s E_{s,c} / Σ_s E^ref_{s,c}, and mCE = mean_c CE_c;
* relative CE_c = Σ_s (E_{s,c} − E_clean) / Σ_s (E^ref_{s,c} − E^ref_clean), and relative mCE = mean_c.

The reference is the first model unless another is named. The paper's reference is AlexNet on ImageNet; here it
is whatever model you pass, so mCE < 100 % reads "more robust than the reference".

With ``linear=True`` a linear probe is also trained once on the clean training features (the same grid, split,
standardisation and selection as :func:`sslkit.eval.linear.linear_probe`) and its selected head classifies every
corrupted test set.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch
from torch.utils.data import Subset

from sslkit.config import ConfigError
from sslkit.data.corruptions import CORRUPTION_GROUPS, CORRUPTIONS, SEVERITIES
from sslkit.eval.knn import KNNConfig, knn_protocol
from sslkit.eval.linear import LinearProbeConfig, stratified_split, train_linear_heads
from sslkit.eval.eval_data import EvalData, open_eval_data
from sslkit.eval.eval_view import ImageCorruption
from sslkit.eval.feature_cache import feature_set
from sslkit.figures import figure_png, subplots

__all__ = ["RobustnessConfig", "robustness_of_model", "corruption_errors", "robustness_heatmap_png"]


@dataclass
class RobustnessConfig:
    """Which corruptions and severities, the kNN k, an optional cap on test images, and the reference model.

    ``reference``: None (the first model), a 0-based index, or a model's spec/name as given on the command line.
    ``seed``: seeds the per-image corruption generators and the test subsample.
    """

    corruptions: tuple = tuple(CORRUPTIONS)
    severities: tuple = SEVERITIES
    k: int = 20
    max_test_samples: Optional[int] = None
    reference: Any = None
    seed: int = 0
    linear: bool = False

    def __post_init__(self) -> None:
        self.corruptions = tuple(self.corruptions)
        self.severities = tuple(int(s) for s in self.severities)
        unknown = [c for c in self.corruptions if c not in CORRUPTIONS]
        if unknown or not self.corruptions:
            raise ConfigError(f"Unknown corruption(s) {unknown}; choose from {sorted(CORRUPTIONS)} "
                              f"(groups: {', '.join(CORRUPTION_GROUPS)}).")
        if not self.severities or any(not 1 <= s <= 5 for s in self.severities):
            raise ConfigError(f"Robustness severities must lie in 1..5, got {list(self.severities)}.")
        if self.k < 1:
            raise ConfigError(f"Robustness kNN k must be positive, got {self.k}.")
        if self.max_test_samples is not None and self.max_test_samples < 1:
            raise ConfigError(f"--robustness-samples must be positive, got {self.max_test_samples}.")


def _test_subset(data: EvalData, limit: Optional[int], seed: int) -> EvalData:
    """``data`` with its test split cut to ``limit`` seeded random images (the fingerprint says which)."""
    test = data.splits["test"]
    if limit is None or len(test) <= limit:
        return data
    idx = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))[:limit].sort().values.tolist()
    digest = hashlib.sha256(f"{data.fingerprint}|test-subset|{seed}|{limit}".encode()).hexdigest()
    return dataclasses.replace(data, splits=dict(data.splits, test=Subset(test, idx)), fingerprint=digest)


def fit_linear_classifier(features: torch.Tensor, labels: torch.Tensor, num_classes: int,
                          config: LinearProbeConfig):
    """The head :func:`sslkit.eval.linear.linear_probe` would select, as a function features (m, D) -> (m,) labels.

    Same recipe: a stratified validation split, standardisation by the training statistics, every (lr, wd) of
    the grid trained jointly, the best validation accuracy wins (ties: first in grid order)."""
    x_all, y_all = features.float(), labels.long()
    keep, held = stratified_split(y_all, config.val_fraction, config.seed)
    if held.numel() == 0 or keep.numel() == 0:
        raise ConfigError(f"The robustness linear probe cannot hold out a validation split from {len(y_all)} "
                          "training samples.")
    x_tr, y_tr, x_val, y_val = x_all[keep], y_all[keep], x_all[held], y_all[held]
    mean = x_tr.mean(0, keepdim=True) if config.standardize else torch.zeros(1, x_tr.shape[1])
    std = x_tr.std(0, keepdim=True).clamp_min(1e-6) if config.standardize else torch.ones(1, x_tr.shape[1])
    grid = config.grid()
    steps = max(config.epochs * max(1, x_tr.shape[0] // min(config.batch_size, x_tr.shape[0])), config.min_steps)
    weight, bias = train_linear_heads((x_tr - mean) / std, y_tr, num_classes,
                                      torch.tensor([g["lr"] for g in grid]),
                                      torch.tensor([g["weight_decay"] for g in grid]), steps=steps,
                                      batch_size=config.batch_size, momentum=config.momentum,
                                      warmup_fraction=config.warmup_fraction, label_smoothing=config.label_smoothing,
                                      mixup_alpha=config.mixup_alpha, seed=config.seed)
    val_logits = torch.einsum("nd,dhc->nhc", (x_val - mean) / std, weight) + bias
    best = int(torch.argmax((val_logits.argmax(-1) == y_val[:, None]).double().mean(0)))
    w, b = weight[:, best], bias[best]

    def predict(x: torch.Tensor) -> torch.Tensor:
        return (((x.float() - mean) / std) @ w + b).argmax(-1)

    return predict


def robustness_of_model(encoder, data: EvalData, config: RobustnessConfig, *, pooling: str = "cls",
                        n_last_blocks: int = 1, image_size: Optional[int] = None, batch_size: int = 128,
                        num_workers: int = 0, device: str = "cpu", cache_dir: Any = True,
                        knn_temperature: float = 0.07, progress: bool = False,
                        train_features=None, log=None, linear_config: Optional[LinearProbeConfig] = None) -> dict:
    """kNN accuracy of one encoder on clean and corrupted test images.

    Args:
        encoder: an :class:`sslkit.eval.models.Encoder` (or anything :func:`feature_set` accepts).
        data: opened labelled data with ``train`` and ``test`` splits.
        train_features: the clean training :class:`FeatureSet`, if already computed (shared with kNN).

    Returns:
        {"k", "n_test", "clean_accuracy", "accuracy": {corruption: {severity: acc}},
         "per_corruption": {corruption: mean over severities}, "mean_corruption_accuracy", "seconds"}.
    """
    if "test" not in data.splits:
        raise ConfigError(f"Robustness needs a labelled test split; data '{data.source}' has only "
                          f"{sorted(data.splits)}.")
    started = time.perf_counter()
    common = dict(pooling=pooling, n_last_blocks=n_last_blocks, image_size=image_size, batch_size=batch_size,
                  num_workers=num_workers, device=device, cache_dir=cache_dir, progress=progress)
    render_size = image_size or (encoder.image_size if getattr(encoder, "kind", None) == "sslkit" else None)
    if data.builtin and render_size and data.image_size != render_size:
        # feature_set would re-render a built-in set at the model's size, dropping the subset made below
        data = open_eval_data(data.source, render_size, data.options)
    train = train_features or feature_set(encoder, data, "train", encoder=encoder, **common)
    subset = _test_subset(data, config.max_test_samples, config.seed)
    knn = KNNConfig(ks=(config.k,), temperature=knn_temperature)
    classes = int(train.labels.max()) + 1

    def accuracy(test) -> float:
        result = knn_protocol(train.features, train.labels, test.features, test.labels, knn,
                              num_classes=max(classes, int(test.labels.max()) + 1))
        return result.accuracy[config.k]

    predict = None
    if config.linear:
        predict = fit_linear_classifier(train.features, train.labels, classes, linear_config or LinearProbeConfig())

    def linear_accuracy(test) -> float:
        return float((predict(test.features) == test.labels).double().mean())

    clean = feature_set(encoder, subset, "test", encoder=encoder, **common)
    grid: dict[str, dict[int, float]] = {}
    linear_grid: dict[str, dict[int, float]] = {}
    for name in config.corruptions:
        grid[name] = {}
        for severity in config.severities:
            corrupted = feature_set(encoder, subset, "test", encoder=encoder,
                                    corruption=ImageCorruption(name, severity, config.seed), **common)
            grid[name][severity] = accuracy(corrupted)
            if predict is not None:
                linear_grid.setdefault(name, {})[severity] = linear_accuracy(corrupted)
        if log is not None:
            log(f"  {name}: " + " ".join(f"{100 * grid[name][s]:.1f}" for s in config.severities))
    per_corruption = {name: sum(row.values()) / len(row) for name, row in grid.items()}
    linear = {}
    if predict is not None:
        cells = [v for row in linear_grid.values() for v in row.values()]
        linear = {"linear": {"clean_accuracy": linear_accuracy(clean), "accuracy": linear_grid,
                             "mean_corruption_accuracy": sum(cells) / len(cells)}}
    return {**linear, "k": config.k, "n_test": int(clean.labels.numel()), "clean_accuracy": accuracy(clean),
            "accuracy": grid, "per_corruption": per_corruption,
            "mean_corruption_accuracy": sum(per_corruption.values()) / len(per_corruption),
            "corruption_seed": config.seed, "seconds": time.perf_counter() - started}


def corruption_errors(result: dict, reference: dict) -> dict:
    """CE_c, mCE, relative CE_c and relative mCE of ``result`` against ``reference`` (both from
    :func:`robustness_of_model`, same corruptions and severities). Undefined ratios (a reference with no error,
    or no drop from clean) are NaN and are left out of the means."""
    ce, relative = {}, {}
    for name, row in result["accuracy"].items():
        ref_row = reference["accuracy"][name]
        err = sum(1 - a for a in row.values())
        ref_err = sum(1 - a for a in ref_row.values())
        drop = sum((1 - a) - (1 - result["clean_accuracy"]) for a in row.values())
        ref_drop = sum((1 - a) - (1 - reference["clean_accuracy"]) for a in ref_row.values())
        ce[name] = err / ref_err if ref_err > 0 else float("nan")
        relative[name] = drop / ref_drop if ref_drop > 0 else float("nan")

    def mean(values: dict) -> float:
        finite = [v for v in values.values() if math.isfinite(v)]
        return sum(finite) / len(finite) if finite else float("nan")

    return {"ce": ce, "mce": mean(ce), "relative_ce": relative, "relative_mce": mean(relative)}


def resolve_reference(reference: Any, specs: Sequence[str], names: Sequence[str]) -> int:
    """Index of the reference model: None -> 0; an int; or a spec / display name as passed."""
    if reference is None:
        return 0
    if isinstance(reference, int) or (isinstance(reference, str) and reference.isdigit()):
        index = int(reference)
        if not 0 <= index < len(specs):
            raise ConfigError(f"--reference {index} is out of range; there are {len(specs)} model(s) (0-based).")
        return index
    for i, (spec, name) in enumerate(zip(specs, names)):
        if reference in (spec, name) or str(reference).rstrip("/") == str(spec).rstrip("/"):
            return i
    raise ConfigError(f"--reference {reference!r} is not one of the evaluated models {list(specs)}; pass one of "
                      "them (or its 0-based index).")


def robustness_heatmap_png(models: Sequence[tuple[str, dict]]) -> bytes:
    """One heat map per model: kNN accuracy (%) per corruption (rows) and severity (columns), clean accuracy
    in the title. ``models``: [(name, result of :func:`robustness_of_model`)]."""
    first = models[0][1]
    names = list(first["accuracy"])
    severities = list(next(iter(first["accuracy"].values())))
    with subplots(1, len(models), figsize=(1.2 + 0.55 * len(severities) * len(models) + 1.6 * len(models),
                                           0.9 + 0.32 * len(names)), dpi=110, squeeze=False) as (fig, axes):
        image = None
        for ax, (model_name, result) in zip(axes[0], models):
            grid = torch.tensor([[100 * result["accuracy"][n][s] for s in severities] for n in names])
            image = ax.imshow(grid.numpy(), vmin=0, vmax=100, cmap="viridis", aspect="auto")
            ax.set_xticks(range(len(severities)), [str(s) for s in severities])
            ax.set_yticks(range(len(names)), names if ax is axes[0][0] else [""] * len(names), fontsize=7)
            ax.set_xlabel("severity")
            ax.set_title(f"{model_name}\nclean {100 * result['clean_accuracy']:.1f} %, "
                         f"mean {100 * result['mean_corruption_accuracy']:.1f} %", fontsize=8)
            for i in range(len(names)):
                for j in range(len(severities)):
                    value = float(grid[i, j])
                    ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=6,
                            color="white" if value < 50 else "black")
        fig.colorbar(image, ax=axes[0].tolist(), label="kNN top-1 %", shrink=0.8)
        return figure_png(fig, bbox_inches="tight")
