"""The training loop of ``sslkit grok``: one model of a task under one regime, evaluated as it trains.

The GrokAlign objective and the centroid diagnostics are :func:`sslkit.functional.jacobian.grokalign_objective`
and :func:`~sslkit.functional.jacobian.centroid_summary`, the same functions the Lightning callbacks of
:mod:`sslkit.engine.grokalign_callbacks` use. A plain PyTorch loop: much faster than Lightning at this size.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import nn

from sslkit.analysis.grok.config import GrokConfig
from sslkit.analysis.grok.tasks import GrokTask
from sslkit.functional.jacobian import centroid_summary, grokalign_objective, jacobian_norm_estimate
from sslkit.training_loop import TrainingLoop

__all__ = ["GrokRun", "steps_to_threshold", "train_grok"]


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
        stats = centroid_summary(model.head, emb)
        row[f"{split}_alignment"] = stats["alignment"]
        row[f"{split}_centroid_norm"] = stats["norm"]
        row[f"{split}_centroid_inner"] = stats["inner_product"]
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
    with TrainingLoop(f"{task.name} training", steps=cfg.max_steps, seed=seed, generator_seed=10_000 + seed,
                      hint="lower --lr or --lam") as loop:
        run = _train(task, cfg, seed, loop, on_eval)
    return run


def _train(task: GrokTask, cfg: GrokConfig, seed: int, loop: TrainingLoop,
           on_eval: Callable[[int, dict[str, float]], None] | None) -> GrokRun:
    model = task.build_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    projection_gen = loop.generator
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

    train_time = 0.0
    record(0)
    hit = None
    while loop.step < cfg.max_steps:
        t0 = time.perf_counter()
        lo = starts[loop.step % len(starts)]  # a fixed order, no shuffling, as the reference
        xb, yb = task.train_x[lo: lo + batch], task.train_y[lo: lo + batch]
        x = model.encode(xb)
        if cfg.lam > 0 and not x.requires_grad:
            x = x.detach().requires_grad_(True)
        out = model.head(x)
        loss = task.loss(out, yb)
        if cfg.lam > 0:
            # One forward serves both terms: the penalty differentiates these outputs w.r.t. x.
            loss, _ = grokalign_objective(loss, out, x, cfg.lam, cfg.n_projections, generator=projection_gen)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        train_time += time.perf_counter() - t0
        loop.check(loss, f"step {loop.step + 1} (reg {cfg.reg})")
        loop.advance(loss)
        step = loop.step
        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            row = record(step)
            if hit is None and row["test_acc"] >= cfg.threshold:
                hit = step
                if cfg.stop_at_threshold:
                    break
    return GrokRun(seed=seed, steps_to_threshold=hit,
                   steps_to_train_fit=steps_to_threshold(curves["step"], curves["train_acc"], cfg.train_fit_threshold),
                   steps_run=loop.step, wall_time_s=loop.seconds, train_time_s=train_time,
                   curves=curves)
