"""Score models over a distribution of tasks (Task Priors, arXiv 2507.09871).

For each model (a feature tensor) this computes the closed-form expected alignment ``E[S]`` and its
variance ``Var[S]`` over the task prior (:mod:`sslkit.functional.taskprior`), draws tasks from the
same prior with the Potts prefix sampler (:mod:`sslkit.functional.potts_sampler`) and trains one
linear probe per task — all tasks of a model at once, as one batched linear layer — to report the
mean, variance, quantiles and worst tasks of the probe accuracy. Several models side by side form a
:class:`TaskPriorStudy` (the paper's multi-model study), with correlations between the closed forms
and the probes and two plots.

Example::

    from sslkit.eval.taskprior import task_prior_study
    study = task_prior_study({"good": feats_a, "worse": feats_b}, labels, prior="labels", num_tasks=256)
    for r in study.results:
        print(r.name, r.expectation, r.probe_summary()["mean"])
    study.save_plots("out/")

Everything works on feature tensors; producing them from models is the caller's business.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from sslkit.figures import pyplot, save_figure
from sslkit.functional.potts_sampler import kernel_factors, potts_prefix_sample
from sslkit.functional.taskprior import (
    KERNELS,
    BlockKernel,
    DenseKernel,
    LinearKernel,
    block_kernel_from_features,
    center_normalise_block_kernel,
    expectation_variance_blockwise,
    label_block_kernel,
    mean_block_kernel,
)

__all__ = [
    "PRIORS",
    "ProbeAccuracies",
    "TaskPriorResult",
    "TaskPriorStudy",
    "accuracy_summary",
    "build_prior",
    "plot_accuracy_histograms",
    "plot_expectation_vs_accuracy",
    "probe_tasks",
    "task_prior_moments",
    "task_prior_study",
]

PRIORS = ("labels", "models")
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
# Above this many samples a prior without finite feature factors (RBF, a user's matrix) cannot be
# factorised for the task sampler: the eigendecomposition is O(n³) and needs the dense matrix.
MAX_EIGEN_SAMPLES = 6000
# Below this many samples the closed forms run in float64 by default: it costs nothing there, and
# tiny temperatures (the reference uses T = 1e-5) underflow σ(K/T)(1 − σ(K/T)) in float32.
FLOAT64_UP_TO = 16384

StageProgress = Callable[[str, int, int], None]
"""``progress(stage, done, total)`` for long stages (closed forms, sampling, probes)."""


def _stage(progress: StageProgress | None, stage: str) -> Callable[[int, int], None] | None:
    if progress is None:
        return None
    return lambda done, total: progress(stage, done, total)


# --------------------------------------------------------------------------- priors


@dataclass
class Prior:
    """A prior kernel for the closed forms plus factors ``B`` (``K ≈ B Bᵀ``) for the task sampler."""

    kernel: BlockKernel
    factors: Tensor | None
    description: str


def build_prior(prior: str | Tensor | np.ndarray | BlockKernel, features: Mapping[str, Tensor],
                labels: Tensor | None = None, *, kernel: str = "cosine", median: str = "exact",
                dtype: torch.dtype = torch.float32, block_size: int = 1024) -> Prior:
    """The prior kernel named by ``prior``.

    - ``"labels"``: ``K_ij = 1[y_i = y_j]``; sampler factors are the one-hot labels.
    - ``"models"``: the average of the models' kernels of kind ``kernel`` over all of ``features``
      (the issue's multi-model prior; the paper uses one chosen kernel, averaging is not confirmed
      in it). For cosine/linear the average is exact in factor space: factors ``[U_1 … U_m]/√m``.
    - an (n, n) tensor/array (a user's kernel) or a :class:`BlockKernel`.

    For kernels without finite factors (RBF, user matrices) the sampler factors come from an
    eigendecomposition of the dense kernel, possible up to ``MAX_EIGEN_SAMPLES`` samples.
    """
    n = _common_size(features, labels)
    if isinstance(prior, str) and prior == "labels":
        if labels is None or (labels < 0).any():
            raise ValueError("The label prior needs a label for every sample; these samples are (partly) "
                             "unlabelled. Use prior='models' or supply a prior kernel.")
        k = label_block_kernel(labels, dtype)
        return Prior(k, k.factors64, "labels: K_ij = 1[y_i = y_j]")
    if isinstance(prior, str) and prior == "models":
        if not features:
            raise ValueError("prior='models' needs at least one model's features.")
        kernels = [block_kernel_from_features(f, kernel, median=median, dtype=dtype, block_size=block_size)
                   for f in features.values()]
        k = mean_block_kernel(kernels)
        factors = k.factors64 if isinstance(k, LinearKernel) else None
        names = ", ".join(features)
        return Prior(k, factors, f"models: mean of the {kernel} kernels of {len(features)} model(s) ({names})")
    if isinstance(prior, str):
        raise ValueError(f"Unknown prior {prior!r}; use one of {list(PRIORS)}, an (n, n) kernel or a BlockKernel.")
    if isinstance(prior, BlockKernel):
        k = prior
        factors = k.factors64 if isinstance(k, LinearKernel) else None
        description = f"supplied {type(k).__name__}"
    else:
        k = DenseKernel(prior, dtype)
        factors = None
        description = f"supplied {k.n}×{k.n} kernel"
    if k.n != n:
        raise ValueError(f"The prior kernel is {k.n}×{k.n} but the models have {n} samples.")
    return Prior(k, factors, description)


def _common_size(features: Mapping[str, Tensor], labels: Tensor | None) -> int:
    sizes = {name: int(f.shape[0]) for name, f in features.items()}
    if labels is not None:
        sizes["labels"] = int(labels.shape[0])
    if len(set(sizes.values())) > 1:
        raise ValueError(f"All models (and the labels) must cover the same samples; got sizes {sizes}.")
    if not sizes:
        raise ValueError("No models given.")
    return next(iter(sizes.values()))


def _sampler_factors(prior: Prior) -> Tensor:
    if prior.factors is not None:
        return prior.factors
    if prior.kernel.n > MAX_EIGEN_SAMPLES:
        raise ValueError(f"Sampling tasks from this prior needs its eigendecomposition, feasible up to "
                         f"{MAX_EIGEN_SAMPLES} samples (have {prior.kernel.n}); use the label prior or a "
                         f"cosine/linear model prior, or set num_tasks=0 for closed forms only.")
    return kernel_factors(prior.kernel.dense().double(), center=True)


def task_prior_moments(features: Tensor, labels: Tensor | None = None, prior_kernel: Tensor | BlockKernel | None = None,
                       *, kernel: str = "cosine", temperature: float | Sequence[float] = 1.0, center: bool = False,
                       dtype: torch.dtype | None = None, block_size: int = 1024) -> tuple[Tensor, Tensor]:
    """``E[S]`` and ``Var[S]`` of one model, the counterpart of the reference ``analyze``.

    features: (n, d) model embeddings; the prior is ``prior_kernel`` if given, else the label kernel
    of ``labels``. ``center=True`` centres and Frobenius-normalises both kernels first (the
    reference evaluation). Computed blockwise (never an n×n matrix). Returns float64 tensors.
    """
    n = features.shape[0]
    dtype = dtype or (torch.float64 if n <= FLOAT64_UP_TO else torch.float32)
    model = block_kernel_from_features(features, kernel, dtype=dtype, block_size=block_size)
    if prior_kernel is None:
        if labels is None:
            raise ValueError("Give labels (label prior) or a prior_kernel.")
        prior = build_prior("labels", {"model": features}, labels, dtype=dtype).kernel
    else:
        prior = build_prior(prior_kernel, {"model": features}, None, dtype=dtype).kernel
    if center:
        model = center_normalise_block_kernel(model, block_size)
        prior = center_normalise_block_kernel(prior, block_size)
    return expectation_variance_blockwise(model, prior, temperature, block_size=block_size)


# --------------------------------------------------------------------------- probes


@dataclass
class ProbeAccuracies:
    """Per-task probe results. ``heldout``: accuracy on the held-out samples (tasks,).
    ``train_recall``: the reference's metric, positive-class recall on the probe's own training
    samples (tasks,), binary tasks only (NaN where a task has no positive training sample)."""

    heldout: Tensor
    train_recall: Tensor | None


def probe_tasks(features: Tensor, tasks: Tensor, num_classes: int = 2, *, epochs: int = 30, lr: float = 1e-2,
                batch_size: int = 64, min_steps: int = 960, holdout_fraction: float = 0.2, seed: int = 0,
                progress: Callable[[int, int], None] | None = None) -> ProbeAccuracies:
    """Train one linear probe per task, all tasks at once as a single linear layer.

    Protocol of the reference ``examples/mieb/3_run_linear_probes.py``: binary tasks use one logit
    per task with BCE-with-logits (q > 2: q logits per task, cross-entropy), Adam lr 1e-2, cosine
    schedule to 1e-6 stepped per epoch, batch 64 (the low end of the reference's 64-256, so that
    small evaluation sets still get enough steps). The number of epochs is raised until there are at
    least ``min_steps`` Adam steps: 960 is the reference's smallest budget (8192 samples, batch 256,
    30 epochs); Adam's first steps move every weight by about ±lr, so a probe on a few hundred
    samples that stops after a few dozen steps has not learned anything yet. Because Adam
    normalises every parameter separately, the batched tasks do not interact.

    Departures from the reference, said plainly: features are standardised with the training
    split's mean/std (so one learning rate suits models of any feature scale), weights start at zero
    (deterministic), and accuracy is measured on ``holdout_fraction`` held-out samples.

    features: (n, D); tasks: (num_tasks, n) int labels in [0, num_classes). Returns :class:`ProbeAccuracies`.
    """
    if tasks.ndim != 2 or tasks.shape[1] != features.shape[0]:
        raise ValueError(f"tasks must be (num_tasks, n={features.shape[0]}), got {tuple(tasks.shape)}.")
    n, dim = features.shape
    num_tasks = tasks.shape[0]
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    n_hold = min(max(1, round(n * holdout_fraction)), n - 1)
    hold_idx, train_idx = perm[:n_hold], perm[n_hold:]
    x = features.float()
    mean, std = x[train_idx].mean(0), x[train_idx].std(0).clamp_min(1e-6)
    x = (x - mean) / std
    y = tasks.long().T.contiguous()  # (n, num_tasks)
    binary = num_classes == 2
    head = torch.nn.Linear(dim, num_tasks if binary else num_tasks * num_classes)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    steps_per_epoch = -(-len(train_idx) // batch_size)
    epochs = max(epochs, -(-min_steps // steps_per_epoch))
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1), eta_min=1e-6)

    def loss_fn(logits: Tensor, target: Tensor) -> Tensor:
        if binary:
            return F.binary_cross_entropy_with_logits(logits, target.float())
        return F.cross_entropy(logits.view(-1, num_classes), target.reshape(-1))

    def predict(xs: Tensor) -> Tensor:
        logits = head(xs)
        if binary:
            return (logits > 0).long()
        return logits.view(len(xs), num_tasks, num_classes).argmax(-1)

    x_train, y_train = x[train_idx], y[train_idx]
    for epoch in range(epochs):
        order = torch.randperm(len(train_idx), generator=g)
        for start in range(0, len(order), batch_size):
            b = order[start:start + batch_size]
            opt.zero_grad(set_to_none=True)
            loss_fn(head(x_train[b]), y_train[b]).backward()
            opt.step()
        sched.step()
        if progress:
            progress(epoch + 1, epochs)
    with torch.no_grad():
        heldout = (predict(x[hold_idx]) == y[hold_idx]).double().mean(0)
        recall = None
        if binary:
            pred_train = predict(x_train)
            positives = (y_train == 1).double()
            recall = ((pred_train == 1).double() * positives).sum(0) / positives.sum(0)  # NaN: no positives
    return ProbeAccuracies(heldout=heldout, train_recall=recall)


def accuracy_summary(accuracies: Tensor, worst: int = 5) -> dict[str, Any]:
    """Mean, variance, std, min/max, quantiles and the ``worst`` lowest-accuracy tasks of (tasks,) accuracies."""
    a = accuracies.double()
    order = a.argsort()[:worst]
    return {
        "num_tasks": int(a.numel()),
        "mean": float(a.mean()),
        "variance": float(a.var(unbiased=True)) if a.numel() > 1 else 0.0,
        "std": float(a.std(unbiased=True)) if a.numel() > 1 else 0.0,
        "min": float(a.min()),
        "max": float(a.max()),
        "quantiles": {f"{q:g}": float(torch.quantile(a, q)) for q in QUANTILES},
        "worst_tasks": [{"task": int(i), "accuracy": float(a[i])} for i in order],
    }


# --------------------------------------------------------------------------- results


@dataclass
class TaskPriorResult:
    """Closed forms and (optionally) probe accuracies over sampled tasks, for one model.

    ``expectation[t]`` / ``variance[t]`` belong to ``temperatures[t]``. ``heldout_accuracy`` and
    ``train_recall`` are per sampled task (tasks,), or None when no tasks were probed.
    """

    name: str
    num_samples: int
    dim: int
    temperatures: list[float]
    expectation: list[float]
    variance: list[float]
    heldout_accuracy: Tensor | None = None
    train_recall: Tensor | None = None

    @property
    def std(self) -> list[float]:
        return [math.sqrt(max(v, 0.0)) for v in self.variance]

    def probe_summary(self, worst: int = 5) -> dict[str, Any] | None:
        if self.heldout_accuracy is None:
            return None
        summary = accuracy_summary(self.heldout_accuracy, worst)
        if self.train_recall is not None:
            recall = self.train_recall[~self.train_recall.isnan()]
            summary["train_recall_mean"] = float(recall.mean()) if recall.numel() else float("nan")
        return summary

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name, "num_samples": self.num_samples, "dim": self.dim,
            "closed_form": [{"temperature": t, "expectation": e, "variance": v, "std": s}
                            for t, e, v, s in zip(self.temperatures, self.expectation, self.variance, self.std)],
        }
        summary = self.probe_summary()
        if summary is not None:
            out["probe"] = summary
            out["probe"]["heldout_accuracy"] = [float(a) for a in self.heldout_accuracy]
        return out


@dataclass
class TaskPriorStudy:
    """Several models scored on one prior; ``tasks`` (num_tasks, n) are the sampled tasks (or None)."""

    results: list[TaskPriorResult]
    settings: dict[str, Any]
    tasks: Tensor | None = None
    correlations: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"settings": self.settings, "models": [r.to_dict() for r in self.results],
                "correlations": self.correlations}

    def save_plots(self, directory: str | Path, prefix: str = "taskprior") -> list[Path]:
        """Write the PNG plots into ``directory``; returns their paths (none without probes)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if not any(r.heldout_accuracy is not None for r in self.results):
            return []
        paths = [directory / f"{prefix}_accuracy_hist.png", directory / f"{prefix}_expectation_vs_accuracy.png"]
        plot_accuracy_histograms(self.results, paths[0])
        plot_expectation_vs_accuracy(self.results, paths[1])
        return paths


def _correlations(results: Sequence[TaskPriorResult]) -> dict[str, Any]:
    """Pearson and Spearman, across models, of E[S] with the mean probe accuracy and of Var[S] with the
    variance of accuracies across tasks (the paper's comparison), per temperature. Needs ≥ 3 models."""
    from scipy.stats import pearsonr, spearmanr

    probed = [r for r in results if r.heldout_accuracy is not None]
    if len(probed) < 3:
        return {}
    mean_acc = np.array([float(r.heldout_accuracy.double().mean()) for r in probed])
    var_acc = np.array([float(r.heldout_accuracy.double().var()) for r in probed])
    out = {}
    for t_index, t in enumerate(probed[0].temperatures):
        e = np.array([r.expectation[t_index] for r in probed])
        v = np.array([r.variance[t_index] for r in probed])
        entry = {}
        for key, xs, ys in (("expectation_vs_mean_accuracy", e, mean_acc), ("variance_vs_accuracy_variance", v, var_acc)):
            if np.ptp(xs) > 0 and np.ptp(ys) > 0:
                entry[key] = {"pearson": float(pearsonr(xs, ys)[0]), "spearman": float(spearmanr(xs, ys)[0])}
            else:
                entry[key] = None  # a constant column has no correlation
        out[f"{t:g}"] = entry
    return out


def task_prior_study(features: Mapping[str, Tensor], labels: Tensor | None = None, *,
                     prior: str | Tensor | np.ndarray | BlockKernel = "labels", kernel: str = "cosine",
                     temperatures: float | Sequence[float] = 1.0, center: bool = True,
                     num_tasks: int = 256, num_classes: int = 2, task_temperature: float = 1.0,
                     probe_epochs: int = 30, probe_lr: float = 1e-2, probe_batch_size: int = 64, probe_min_steps: int = 960,
                     holdout_fraction: float = 0.2, seed: int = 0, median: str = "exact",
                     dtype: torch.dtype | None = None, block_size: int = 1024,
                     progress: StageProgress | None = None) -> TaskPriorStudy:
    """Score every model in ``features`` ({name: (n, D)}) on one task prior, side by side.

    Args:
        labels: (n,) int, −1 where unknown; needed for ``prior="labels"``.
        prior: "labels", "models" (average of all the models' kernels), an (n, n) kernel or a BlockKernel.
        kernel: model kernel, one of 'cosine', 'linear', 'rbf' (RBF: median heuristic, ``median``
            'exact' or 'sampled').
        temperatures: closed-form temperature(s) T.
        center: centre and Frobenius-normalise model and prior kernels (the reference evaluation);
            without it E[S] mostly measures how large a model's kernel is everywhere.
        num_tasks: tasks drawn from the prior with the Potts prefix sampler (0: closed forms only).
        num_classes, task_temperature: q and T of the sampler (T acts on the column-centred,
            un-normalised prior factors, as in the reference sampler).
        probe_*: see :func:`probe_tasks`.
        dtype: kernel precision; default float64 up to ``FLOAT64_UP_TO`` samples, float32 above.
    """
    if kernel not in KERNELS:
        raise ValueError(f"Unknown kernel {kernel!r}; use one of {list(KERNELS)}.")
    n = _common_size(features, labels)
    dtype = dtype or (torch.float64 if n <= FLOAT64_UP_TO else torch.float32)
    temps = [float(temperatures)] if isinstance(temperatures, (int, float)) else [float(t) for t in temperatures]
    prior_obj = build_prior(prior, features, labels, kernel=kernel, median=median, dtype=dtype,
                            block_size=block_size)
    prior_kernel = prior_obj.kernel
    if center:
        prior_kernel = center_normalise_block_kernel(prior_kernel, block_size, _stage(progress, "centring the prior"))

    tasks = None
    if num_tasks > 0:
        tasks = potts_prefix_sample(_sampler_factors(prior_obj), num_classes, task_temperature,
                                    num_tasks=num_tasks, seed=seed, progress=_stage(progress, "sampling tasks"))

    results = []
    for name, feats in features.items():
        model = block_kernel_from_features(feats, kernel, median=median, dtype=dtype, block_size=block_size)
        if center:
            model = center_normalise_block_kernel(model, block_size)
        e, v = expectation_variance_blockwise(model, prior_kernel, temps, block_size=block_size,
                                              progress=_stage(progress, f"closed form: {name}"))
        result = TaskPriorResult(name=name, num_samples=n, dim=int(feats.shape[1]), temperatures=temps,
                                 expectation=[float(x) for x in e], variance=[float(x) for x in v])
        if tasks is not None:
            probe = probe_tasks(feats, tasks, num_classes, epochs=probe_epochs, lr=probe_lr,
                                batch_size=probe_batch_size, min_steps=probe_min_steps,
                                holdout_fraction=holdout_fraction, seed=seed,
                                progress=_stage(progress, f"probes: {name}"))
            result.heldout_accuracy, result.train_recall = probe.heldout, probe.train_recall
        results.append(result)

    settings = {
        "num_samples": n, "prior": prior_obj.description, "kernel": kernel, "center": center,
        "temperatures": temps, "dtype": str(dtype).replace("torch.", ""),
        "convention": "E[S] = Σ M σ(K/T), Var[S] = Σ M² σ(K/T)(1 − σ(K/T)); K prior, M model (arXiv 2507.09871)",
        "tasks": None if tasks is None else {
            "num_tasks": num_tasks, "num_classes": num_classes, "temperature": task_temperature, "seed": seed,
            "sampler": "Potts prefix sampler on the column-centred prior factors",
            "probe": {"epochs": probe_epochs, "min_steps": probe_min_steps, "lr": probe_lr, "batch_size": probe_batch_size,
                      "holdout_fraction": holdout_fraction, "loss": "BCE" if num_classes == 2 else "cross-entropy"},
        },
    }
    return TaskPriorStudy(results=results, settings=settings, tasks=tasks, correlations=_correlations(results))


# --------------------------------------------------------------------------- plots


def plot_accuracy_histograms(results: Sequence[TaskPriorResult], path: str | Path) -> Path:
    """Overlaid histograms of held-out probe accuracy across sampled tasks, one per model (PNG)."""
    probed = [r for r in results if r.heldout_accuracy is not None]
    fig, ax = pyplot().subplots(figsize=(7, 4.2))
    all_acc = torch.cat([r.heldout_accuracy.double() for r in probed])
    bins = np.linspace(float(all_acc.min()) - 1e-9, float(all_acc.max()) + 1e-9, 31)
    for i, r in enumerate(probed):
        color = f"C{i % 10}"
        acc = r.heldout_accuracy.double().numpy()
        ax.hist(acc, bins=bins, histtype="step", linewidth=1.8, color=color,
                label=f"{r.name} (mean {acc.mean():.3f})")
        ax.axvline(acc.mean(), color=color, linestyle="--", linewidth=1)
    ax.set_xlabel("held-out probe accuracy per sampled task")
    ax.set_ylabel("tasks")
    ax.set_title("Linear probes over tasks drawn from the prior")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)


def plot_expectation_vs_accuracy(results: Sequence[TaskPriorResult], path: str | Path, temperature_index: int = 0) -> Path:
    """E[S] against mean probe accuracy (error bars: s.d. across tasks) and Var[S] against the
    accuracy variance, one point per model (PNG)."""
    probed = [r for r in results if r.heldout_accuracy is not None]
    fig, axes = pyplot().subplots(1, 2, figsize=(10, 4.2))
    t = probed[0].temperatures[temperature_index]
    for i, r in enumerate(probed):
        acc = r.heldout_accuracy.double()
        axes[0].errorbar(r.expectation[temperature_index], float(acc.mean()), yerr=float(acc.std()), fmt="o",
                         color=f"C{i % 10}", capsize=3)
        axes[0].annotate(r.name, (r.expectation[temperature_index], float(acc.mean())), fontsize=8,
                         xytext=(4, 4), textcoords="offset points")
        axes[1].plot(r.variance[temperature_index], float(acc.var()), "o", color=f"C{i % 10}")
        axes[1].annotate(r.name, (r.variance[temperature_index], float(acc.var())), fontsize=8,
                         xytext=(4, 4), textcoords="offset points")
    axes[0].set_xlabel(f"E[S] (closed form, T={t:g})")
    axes[0].set_ylabel("mean held-out probe accuracy")
    axes[1].ticklabel_format(axis="x", useOffset=False)  # an offset label would overprint the axis title
    axes[1].tick_params(axis="x", labelrotation=30)
    axes[1].set_xlabel(f"Var[S] (closed form, T={t:g})")
    axes[1].set_ylabel("variance of accuracy across tasks")
    fig.suptitle("Task-prior closed forms vs. probes over sampled tasks")
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)
