"""Grokking races: weight decay alone vs weight decay + GrokAlign (arXiv 2506.12284).

Two tiny full-batch-friendly setups, trained with a plain PyTorch loop (much faster than Lightning
at this size):

- ``digits``: the MNIST-1k recipe of Liu, Michaud, Tegmark ("Omnigrok", arXiv 2210.01117) as used
  by GrokAlign, on scikit-learn's 8x8 digits (offline) upsampled bilinearly to 28x28: 1024 train
  images drawn with a fixed seed, the other 773 as the test set, standardised per pixel; a
  bias-free ReLU MLP 784-196-196-10 (``depth=3`` gives the spec's 784-196-196-196-10) whose
  initial weights are multiplied by 8; AdamW with weight decay; MSE on one-hot targets;
  mini-batches of 256 in a fixed order (no shuffle, as the reference).
- ``modadd``: ``a + b mod p`` from the prompt ``[a, b, =]`` with a one-layer transformer without
  LayerNorm (Nanda et al., arXiv 2301.05217), full batch, cross-entropy on the last position;
  the GrokAlign penalty is taken on the map token embeddings -> last-position logits.

Three regimes: ``none`` (no weight decay, no penalty), ``wd`` (weight decay) and ``grokalign``
(the same weight decay + lambda * Jacobian-norm penalty). Each run records train/test accuracy,
centroid alignment, the Jacobian norm and the weight norm every ``eval_every`` steps and the
first step at which the test accuracy reaches ``threshold``.

Example::

    report = run_grok(GrokConfig(setup="digits", max_steps=2000), seeds=[0, 1, 2],
                      regimes=["wd", "grokalign"])
    write_grok_outputs(report, "runs/grok")   # grok.json + grok.png
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sslkit.config import ConfigError
from sslkit.functional.jacobian import centroid_stats, jacobian_norm_estimate, jacobian_norm_from_outputs

__all__ = [
    "REGIMES", "SETUPS", "SETUP_DEFAULTS", "BiasFreeMLP", "GrokConfig", "GrokReport", "GrokRun",
    "GrokTask", "OneLayerTransformer", "digits_task", "modadd_task", "race_summary", "run_grok",
    "steps_to_threshold", "train_grok", "write_grok_outputs", "plot_grok_curves",
]

SETUPS = ("digits", "modadd")
REGIMES = ("none", "wd", "grokalign")

# Defaults per setup; None in a GrokConfig field means "take it from here".
# digits: the spec's MNIST-1k recipe (x8 init, AdamW, wd 0.01 in both arms, batch 256 in a fixed
# order, MSE, threshold 0.85) calibrated for a CPU budget, each change measured (docs/grokalign.md):
# two hidden layers (Omnigrok's MNIST MLP) instead of three and lr 3e-3 instead of 1e-3, because with
# three x8 layers at lr 1e-3 the fit alone takes > 1e4 steps; lambda 0.3 instead of 1e-4, because at
# 1e-4 the penalty is ~1e-3 of this loss and changes nothing measurable.
SETUP_DEFAULTS: dict[str, dict[str, Any]] = {
    "digits": dict(lr=3e-3, weight_decay=0.01, lam=0.3, betas=(0.9, 0.999), batch_size=256,
                   max_steps=20_000, eval_every=100, threshold=0.85),
    # modadd: the spec's values (AdamW 1e-3, wd 1.0, betas (0.9, 0.98), full batch, lambda 1e-3)
    # with p = 31 instead of 113 so that it runs on a CPU.
    "modadd": dict(lr=1e-3, weight_decay=1.0, lam=1e-3, betas=(0.9, 0.98), batch_size=0,
                   max_steps=20_000, eval_every=50, threshold=0.95),
}


@dataclass
class GrokConfig:
    """One grokking run. ``None`` fields take the setup's default from :data:`SETUP_DEFAULTS`.

    ``batch_size=0`` means full batch. ``reg`` picks the regime; ``none`` forces weight decay and
    lambda to 0, ``wd`` forces lambda to 0.
    """

    setup: str = "digits"
    reg: str = "grokalign"
    lam: float | None = None
    weight_decay: float | None = None
    lr: float | None = None
    betas: tuple[float, float] | None = None
    batch_size: int | None = None
    max_steps: int | None = None
    eval_every: int | None = None
    threshold: float | None = None
    stop_at_threshold: bool = True
    n_projections: int = 1
    dtype: str = "float32"
    probe_size: int = 256
    train_fit_threshold: float = 0.99
    # digits
    n_train: int = 1024
    image_size: int = 28
    width: int = 196
    depth: int = 2  # hidden layers; the spec's MNIST-1k net has 3 (slower to fit, see SETUP_DEFAULTS)
    init_scale: float = 8.0
    # modadd
    prime: int = 31
    train_fraction: float = 0.3
    d_model: int = 128
    n_heads: int = 4
    d_head: int = 32
    d_mlp: int = 512

    def resolved(self) -> "GrokConfig":
        """A copy with every ``None`` filled in and the regime applied; checks values."""
        if self.setup not in SETUPS:
            raise ConfigError(f"Unknown grok setup {self.setup!r}; use one of {list(SETUPS)}.")
        if self.reg not in REGIMES:
            raise ConfigError(f"Unknown regulariser {self.reg!r}; use one of {list(REGIMES)}.")
        if self.dtype not in ("float32", "float64"):
            raise ConfigError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}.")
        values = {k: (SETUP_DEFAULTS[self.setup][k] if getattr(self, k) is None else getattr(self, k))
                  for k in SETUP_DEFAULTS[self.setup]}
        if self.reg == "none":
            values["weight_decay"], values["lam"] = 0.0, 0.0
        elif self.reg == "wd":
            values["lam"] = 0.0
        cfg = dataclasses.replace(self, **values)
        cfg.betas = tuple(float(b) for b in cfg.betas)
        for name in ("max_steps", "eval_every", "n_projections", "probe_size"):
            if int(getattr(cfg, name)) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(cfg, name)!r}.")
        for name in ("lam", "weight_decay", "lr"):
            if not float(getattr(cfg, name)) >= 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(cfg, name)!r}.")
        if cfg.depth < 1 or cfg.width < 1:
            raise ConfigError(f"depth and width must be positive, got depth {cfg.depth}, width {cfg.width}.")
        if not 0 < cfg.threshold <= 1:
            raise ConfigError(f"threshold is an accuracy in (0, 1], got {cfg.threshold!r}.")
        if cfg.reg == "grokalign" and cfg.lam <= 0:
            raise ConfigError("--reg grokalign needs --lam > 0 (use --reg wd for weight decay alone).")
        return cfg


# ----------------------------------------------------------------------------------------- models

class BiasFreeMLP(nn.Module):
    """ReLU MLP without biases, ``(B, D) -> (B, C)``: positively homogeneous, so f(x) = J(x) x.

    Weights start at PyTorch's default Linear init times ``init_scale`` (the "x8" large
    initialisation that makes MNIST-1k grok, arXiv 2210.01117).
    """

    def __init__(self, d_in: int, width: int, depth: int, d_out: int, init_scale: float = 1.0):
        super().__init__()
        dims = [d_in] + [width] * depth
        self.hidden = nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in zip(dims[:-1], dims[1:]))
        self.out = nn.Linear(dims[-1], d_out, bias=False)
        with torch.no_grad():
            for p in self.parameters():
                p.mul_(init_scale)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The continuous input the Jacobian is taken with respect to: the pixels themselves."""
        return x

    def head(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.hidden:
            x = F.relu(layer(x))
        return self.out(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)


class OneLayerTransformer(nn.Module):
    """Attention-only-then-MLP transformer with one block and no LayerNorm (arXiv 2301.05217).

    Tokens ``0..p-1`` are numbers and ``p`` is ``=``; the prompt is ``[a, b, =]`` and the model
    predicts ``(a + b) mod p`` from the last position. ``encode`` gives the token embeddings
    ``(B, 3, d_model)``, ``head`` maps them to last-position logits ``(B, p)``; the GrokAlign
    penalty and the centroids use that map (spec: "penalty on embeddings -> last-position logits").
    Init: N(0, 1/d_model) for every matrix, N(0, 1/p) for the unembedding, zero biases, as the
    authors' ``utils.py``.
    """

    def __init__(self, prime: int, d_model: int = 128, n_heads: int = 4, d_head: int = 32, d_mlp: int = 512,
                 n_ctx: int = 3):
        super().__init__()
        s = 1 / math.sqrt(d_model)
        self.n_heads, self.d_head = n_heads, d_head
        self.W_E = nn.Parameter(torch.randn(prime + 1, d_model) * s)
        self.W_pos = nn.Parameter(torch.randn(n_ctx, d_model) * s)
        self.W_Q = nn.Parameter(torch.randn(n_heads, d_model, d_head) * s)
        self.W_K = nn.Parameter(torch.randn(n_heads, d_model, d_head) * s)
        self.W_V = nn.Parameter(torch.randn(n_heads, d_model, d_head) * s)
        self.W_O = nn.Parameter(torch.randn(n_heads * d_head, d_model) * s)
        self.W_in = nn.Parameter(torch.randn(d_model, d_mlp) * s)
        self.b_in = nn.Parameter(torch.zeros(d_mlp))
        self.W_out = nn.Parameter(torch.randn(d_mlp, d_model) * s)
        self.b_out = nn.Parameter(torch.zeros(d_model))
        self.W_U = nn.Parameter(torch.randn(d_model, prime) / math.sqrt(prime))

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.W_E[tokens]

    def head(self, emb: torch.Tensor) -> torch.Tensor:
        """Token embeddings (B, T, d_model) -> last-position logits (B, p).

        With one block only the last position's residual stream reaches the logits, so only its
        query, attention output and MLP are computed: the same function as the full causal block
        at a third of the cost.
        """
        x = emb + self.W_pos[: emb.shape[1]]
        B = x.shape[0]
        q = torch.einsum("bd,hde->bhe", x[:, -1], self.W_Q).unsqueeze(2)    # (B, H, 1, e)
        k = torch.einsum("btd,hde->bhte", x, self.W_K)                      # (B, H, T, e)
        v = torch.einsum("btd,hde->bhte", x, self.W_V)
        # The last position attends to every position (the causal mask's last row is all ones).
        attn = ((q @ k.transpose(-1, -2)) / math.sqrt(self.d_head)).softmax(dim=-1)
        z = (attn @ v).reshape(B, -1)                                        # (B, H*e), heads in order
        h = x[:, -1] + z @ self.W_O
        h = h + F.relu(h @ self.W_in + self.b_in) @ self.W_out + self.b_out
        return h @ self.W_U

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.encode(tokens))


# ------------------------------------------------------------------------------------------ tasks

@dataclass
class GrokTask:
    """Data and model factory of one setup. ``loss(outputs (B, C), targets (B,)) -> scalar``."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    build_model: Callable[[], nn.Module]
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    description: str = ""


def _mse_one_hot(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(outputs, F.one_hot(targets, outputs.shape[1]).to(outputs.dtype))


DIGITS_SPLIT_SEED = 0  # the train/test split is fixed; the run seed changes the initialisation only


def digits_task(cfg: GrokConfig) -> GrokTask:
    """scikit-learn digits, bilinear 8x8 -> ``image_size``², 1024 train / 773 test (fixed seed).

    Pixels are standardised per pixel with the training set's mean and std (std floored at 1e-2
    for pixels that are almost never inked). Per-pixel standardisation is what lets the x8 net
    memorise before it generalises: with one global mean/std (MNIST's usual normalisation) the
    upsampled digits share so much of their pixels that the memorising solution already generalises
    and no delay is seen (measured; docs/grokalign.md).
    """
    from sklearn.datasets import load_digits

    dtype = getattr(torch, cfg.dtype)
    digits = load_digits()  # ships with scikit-learn: no network
    if not 0 < cfg.n_train < len(digits.target):
        raise ConfigError(f"n_train must be between 1 and {len(digits.target) - 1}, got {cfg.n_train}.")
    images = torch.tensor(digits.images / 16.0, dtype=torch.float64).unsqueeze(1)
    images = F.interpolate(images, size=(cfg.image_size, cfg.image_size), mode="bilinear",
                           align_corners=False).flatten(1)
    labels = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(DIGITS_SPLIT_SEED))
    train, test = order[: cfg.n_train], order[cfg.n_train:]
    mean, std = images[train].mean(0), images[train].std(0).clamp_min(1e-2)
    images = ((images - mean) / std).to(dtype)
    d_in = images.shape[1]

    def build() -> nn.Module:
        return BiasFreeMLP(d_in, cfg.width, cfg.depth, 10, cfg.init_scale).to(dtype)

    return GrokTask("digits", images[train], labels[train], images[test], labels[test], 10, build, _mse_one_hot,
                    description=f"sklearn digits {cfg.image_size}x{cfg.image_size}, {len(train)} train / "
                                f"{len(test)} test, bias-free ReLU MLP {d_in}-{'-'.join([str(cfg.width)] * cfg.depth)}"
                                f"-10 x{cfg.init_scale:g} init, MSE on one-hot")


def modadd_task(cfg: GrokConfig, split_seed: int = 0) -> GrokTask:
    """All ``p^2`` pairs ``[a, b, =]`` -> ``(a + b) mod p``; a fixed random ``train_fraction`` trains."""
    p = cfg.prime
    if p < 3:
        raise ConfigError(f"prime must be at least 3, got {p}.")
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    tokens = torch.stack([a.flatten(), b.flatten(), torch.full((p * p,), p)], dim=1)
    labels = (tokens[:, 0] + tokens[:, 1]) % p
    order = torch.randperm(p * p, generator=torch.Generator().manual_seed(split_seed))
    n_train = int(round(cfg.train_fraction * p * p))
    if not 0 < n_train < p * p:
        raise ConfigError(f"train_fraction must leave both splits non-empty, got {cfg.train_fraction}.")
    train, test = order[:n_train], order[n_train:]
    dtype = getattr(torch, cfg.dtype)

    def build() -> nn.Module:
        return OneLayerTransformer(p, cfg.d_model, cfg.n_heads, cfg.d_head, cfg.d_mlp).to(dtype)

    return GrokTask("modadd", tokens[train], labels[train], tokens[test], labels[test], p, build,
                    lambda out, y: F.cross_entropy(out, y),
                    description=f"a + b mod {p}, {n_train} train / {p * p - n_train} test pairs, one-layer "
                                f"transformer d_model {cfg.d_model}, {cfg.n_heads}x{cfg.d_head} heads, "
                                f"d_mlp {cfg.d_mlp}, no LayerNorm, cross-entropy")


def build_task(cfg: GrokConfig) -> GrokTask:
    return digits_task(cfg) if cfg.setup == "digits" else modadd_task(cfg)


# --------------------------------------------------------------------------------------- training

def steps_to_threshold(steps: Sequence[int], values: Sequence[float], threshold: float) -> int | None:
    """The first ``steps[i]`` with ``values[i] >= threshold`` (``None`` if never)."""
    for step, value in zip(steps, values):
        if value >= threshold:
            return int(step)
    return None


@dataclass
class GrokRun:
    """One seed of one regime. ``curves`` maps a metric name to its values at ``curves['step']``."""

    seed: int
    steps_to_threshold: int | None
    steps_to_train_fit: int | None
    steps_run: int
    wall_time_s: float
    train_time_s: float
    curves: dict[str, list[float]] = field(default_factory=dict)


@torch.no_grad()
def _accuracy_and_loss(model: nn.Module, task: GrokTask, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    out = model(x)
    return float((out.argmax(1) == y).double().mean()), float(task.loss(out, y))


def _evaluate(model: nn.Module, task: GrokTask, cfg: GrokConfig, probe_gen_seed: int) -> dict[str, float]:
    """Accuracies, losses, centroid statistics and Jacobian norm on fixed probe batches."""
    was_training = model.training
    model.eval()
    train_acc, train_loss = _accuracy_and_loss(model, task, task.train_x, task.train_y)
    test_acc, test_loss = _accuracy_and_loss(model, task, task.test_x, task.test_y)
    row = {"train_acc": train_acc, "test_acc": test_acc, "train_loss": train_loss, "test_loss": test_loss}
    for split, inputs in (("train", task.train_x), ("test", task.test_x)):
        with torch.no_grad():
            emb = model.encode(inputs[: cfg.probe_size])
        stats = centroid_stats(model.head, emb)
        row[f"{split}_alignment"] = float(stats.alignment.mean())
        row[f"{split}_centroid_norm"] = float(stats.norm.mean())
        row[f"{split}_centroid_inner"] = float(stats.inner_product.mean())
    with torch.no_grad():
        emb = model.encode(task.train_x[: cfg.probe_size])
    gen = torch.Generator().manual_seed(probe_gen_seed)  # same projections at every evaluation
    row["jacobian_norm"] = float(jacobian_norm_estimate(model.head, emb, cfg.n_projections, generator=gen,
                                                        create_graph=False).mean())
    row["weight_norm"] = float(torch.sqrt(sum(p.detach().double().pow(2).sum() for p in model.parameters())))
    model.train(was_training)
    return row


def train_grok(task: GrokTask, cfg: GrokConfig, seed: int,
               on_eval: Callable[[int, dict[str, float]], None] | None = None) -> GrokRun:
    """Train one model of ``task`` under ``cfg`` (resolved) from ``seed``; evaluate every
    ``eval_every`` steps (and at step 0); stop at the threshold if ``stop_at_threshold``."""
    torch.manual_seed(seed)
    model = task.build_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    projection_gen = torch.Generator().manual_seed(10_000 + seed)
    n = task.train_x.shape[0]
    batch = n if cfg.batch_size in (0, None) or cfg.batch_size >= n else cfg.batch_size
    starts = list(range(0, n, batch))
    curves: dict[str, list[float]] = {"step": []}

    def record(step: int) -> dict[str, float]:
        row = _evaluate(model, task, cfg, probe_gen_seed=seed)
        curves["step"].append(step)
        for key, value in row.items():
            curves.setdefault(key, []).append(value)
        if on_eval is not None:
            on_eval(step, row)
        return row

    t_start = time.perf_counter()
    train_time = 0.0
    record(0)
    hit = None
    step = 0
    while step < cfg.max_steps:
        t0 = time.perf_counter()
        lo = starts[step % len(starts)]  # a fixed order, no shuffling, as the reference
        xb, yb = task.train_x[lo: lo + batch], task.train_y[lo: lo + batch]
        x = model.encode(xb)
        if cfg.lam > 0 and not x.requires_grad:
            x = x.detach().requires_grad_(True)
        out = model.head(x)
        loss = task.loss(out, yb)
        if cfg.lam > 0:
            # One forward serves both terms: the penalty differentiates these outputs w.r.t. x.
            penalty = jacobian_norm_from_outputs(out, x, cfg.n_projections, generator=projection_gen).mean()
            loss = loss + cfg.lam * penalty
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        train_time += time.perf_counter() - t0
        if not math.isfinite(float(loss.detach())):
            raise FloatingPointError(f"The {task.name} training loss became {float(loss)} at step {step} "
                                     f"(reg {cfg.reg}); lower --lr or --lam.")
        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            row = record(step)
            if hit is None and row["test_acc"] >= cfg.threshold:
                hit = step
                if cfg.stop_at_threshold:
                    break
    return GrokRun(seed=seed, steps_to_threshold=hit,
                   steps_to_train_fit=steps_to_threshold(curves["step"], curves["train_acc"], cfg.train_fit_threshold),
                   steps_run=step, wall_time_s=time.perf_counter() - t_start, train_time_s=train_time,
                   curves=curves)


@dataclass
class GrokReport:
    """Runs per regime (``arms[reg]``) and the resolved config of each regime."""

    setup: str
    description: str
    threshold: float
    configs: dict[str, dict[str, Any]]
    arms: dict[str, list[GrokRun]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "setup": self.setup,
            "description": self.description,
            "threshold": self.threshold,
            "configs": self.configs,
            "arms": {reg: {"runs": [dataclasses.asdict(r) for r in runs], "summary": _arm_summary(runs)}
                     for reg, runs in self.arms.items()},
            "race": race_summary(self) if {"wd", "grokalign"} <= set(self.arms) else None,
        }


def _arm_summary(runs: list[GrokRun]) -> dict[str, Any]:
    hits = [r.steps_to_threshold for r in runs if r.steps_to_threshold is not None]
    return {
        "steps_to_threshold": [r.steps_to_threshold for r in runs],
        "median_steps_to_threshold": float(np.median(hits)) if len(hits) == len(runs) and hits else None,
        "reached": f"{len(hits)}/{len(runs)}",
        "wall_time_s": [round(r.wall_time_s, 2) for r in runs],
        "train_time_s": [round(r.train_time_s, 2) for r in runs],
        "final_test_acc": [r.curves["test_acc"][-1] for r in runs],
        "final_train_acc": [r.curves["train_acc"][-1] for r in runs],
    }


def race_summary(report: GrokReport, base: str = "wd", other: str = "grokalign",
                 target_ratio: float = 0.5) -> dict[str, Any]:
    """Per seed: ``steps(other) / steps(base)`` to the threshold and wall-time ratio.

    A seed where ``base`` never reached the threshold within its cap counts its cap as a lower
    bound (ratio is then an upper bound, marked); a seed where ``other`` never reached it has no ratio.
    """
    rows = []
    for b, o in zip(report.arms[base], report.arms[other]):
        b_steps = b.steps_to_threshold if b.steps_to_threshold is not None else b.steps_run
        ratio = None if o.steps_to_threshold is None else o.steps_to_threshold / b_steps
        rows.append({
            "seed": b.seed,
            f"{base}_steps": b.steps_to_threshold,
            f"{other}_steps": o.steps_to_threshold,
            "step_ratio": ratio,
            "ratio_is_upper_bound": b.steps_to_threshold is None and ratio is not None,
            f"{base}_wall_s": round(b.wall_time_s, 2),
            f"{other}_wall_s": round(o.wall_time_s, 2),
            "wall_ratio": round(o.wall_time_s / b.wall_time_s, 3) if b.wall_time_s > 0 else None,
        })
    met = sum(1 for r in rows if r["step_ratio"] is not None and r["step_ratio"] <= target_ratio)
    return {"per_seed": rows, "target_ratio": target_ratio, "seeds_meeting_target": met, "seeds": len(rows)}


def run_grok(cfg: GrokConfig, seeds: Sequence[int], regimes: Sequence[str] | None = None,
             on_eval: Callable[[str, int, int, dict[str, float]], None] | None = None) -> GrokReport:
    """Train every regime in ``regimes`` (default ``[cfg.reg]``) from every seed on one task."""
    regimes = list(regimes or [cfg.reg])
    resolved = {reg: dataclasses.replace(cfg, reg=reg).resolved() for reg in regimes}
    task = build_task(resolved[regimes[0]])
    arms: dict[str, list[GrokRun]] = {}
    for reg in regimes:
        arms[reg] = []
        for seed in seeds:
            callback = None if on_eval is None else (lambda step, row, reg=reg, seed=seed: on_eval(reg, seed, step, row))
            arms[reg].append(train_grok(task, resolved[reg], seed, callback))
    configs = {reg: {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(c).items()}
               for reg, c in resolved.items()}
    thresholds = {c.threshold for c in resolved.values()}
    return GrokReport(setup=cfg.setup, description=task.description, threshold=thresholds.pop(),
                      configs=configs, arms=arms)


# ---------------------------------------------------------------------------------------- outputs

_COLOURS = {"none": "tab:gray", "wd": "tab:blue", "grokalign": "tab:red"}


def plot_grok_curves(report: GrokReport, path: str | Path) -> Path:
    """Accuracy, centroid alignment and Jacobian norm against steps, one colour per regime."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for reg, runs in report.arms.items():
        colour = _COLOURS.get(reg, None)
        for i, run in enumerate(runs):
            c = run.curves
            label = reg if i == 0 else None
            axes[0].plot(c["step"], c["test_acc"], color=colour, label=f"{reg} test" if i == 0 else None)
            axes[0].plot(c["step"], c["train_acc"], color=colour, ls="--", alpha=0.6,
                         label=f"{reg} train" if i == 0 else None)
            axes[1].plot(c["step"], c["train_alignment"], color=colour, label=label)
            axes[2].plot(c["step"], c["jacobian_norm"], color=colour, label=label)
            if run.steps_to_threshold is not None:
                axes[0].axvline(run.steps_to_threshold, color=colour, lw=0.8, alpha=0.5)
    axes[0].axhline(report.threshold, color="k", lw=0.8, ls=":")
    axes[0].set(title=f"{report.setup}: accuracy (threshold {report.threshold:g})", xlabel="step", ylabel="accuracy")
    axes[1].set(title="centroid alignment cos(c(x), x), train probe", xlabel="step")
    axes[2].set(title="Jacobian norm (mean R(x)), train probe", xlabel="step", yscale="log")
    for ax in axes:
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def write_grok_outputs(report: GrokReport, out: str | Path) -> dict[str, Path]:
    """Write ``grok.json`` (configs, curves, steps to threshold, wall times) and ``grok.png``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "grok.json"
    tmp = out / ".grok.json.tmp"
    with open(tmp, "w") as fh:
        json.dump(report.to_dict(), fh, indent=1)
    os.replace(tmp, json_path)
    png_path = plot_grok_curves(report, out / "grok.png")
    return {"json": json_path, "png": png_path}
