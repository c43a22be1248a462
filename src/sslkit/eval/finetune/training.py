"""The fine-tuning epochs: AdamW with layer-wise lr decay on a warm-up + cosine schedule, a validation score
after every epoch, early stopping, and the best weights restored at the end.

The task decides two functions: ``batch_loss(model, inputs, targets)`` (a scalar tensor) and
``val_score(model, loader)`` (higher is better: accuracy, mIoU). Written as plain small functions so that the
shared out-of-engine loop helper (seeding, progress, finite check, atomic save) can replace their plumbing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader

from sslkit.eval.finetune.config import FinetuneConfig
from sslkit.eval.finetune.early_stopping import EarlyStopping
from sslkit.eval.finetune.layer_decay import layer_decay_groups
from sslkit.eval.finetune.schedule import warmup_cosine
from sslkit.finite_loss import require_finite

__all__ = ["FitResult", "fit"]

BatchLoss = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
ValScore = Callable[[nn.Module, DataLoader], float]


@dataclass
class FitResult:
    """Per-epoch curve (``epoch``, ``train_loss``, ``val_score``, ``lr``), the best epoch and its score."""

    history: list = field(default_factory=list)
    best_epoch: Optional[int] = None
    best_val_score: Optional[float] = None
    stopped_early: bool = False
    steps: int = 0
    seconds: float = 0.0
    param_groups: list = field(default_factory=list)


def fit(model: nn.Module, train_loader: DataLoader, val_loader: DataLoader, config: FinetuneConfig,
        batch_loss: BatchLoss, val_score: ValScore, *,
        on_improvement: Callable[[nn.Module, int, float], None] = lambda model, epoch, score: None,
        progress: bool = False, log: Callable[[str], None] = lambda message: None) -> FitResult:
    """Train ``model`` (a ``backbone`` + ``head`` module) for up to ``config.epochs`` epochs.

    After every epoch the validation score is computed; an improvement calls ``on_improvement(model, epoch,
    score)`` (e.g. to save a checkpoint). Training stops after ``config.patience`` epochs without improvement,
    and the best epoch's weights are loaded back into ``model`` before returning.
    """
    started = time.perf_counter()
    groups = layer_decay_groups(model.backbone, model.head, config.lr, config.weight_decay, config.layer_decay)
    optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    per_epoch = len(train_loader)
    total = config.epochs * per_epoch
    warmup = int(round(config.warmup_epochs * per_epoch))
    stopper = EarlyStopping(config.patience)
    result = FitResult(param_groups=[{k: g[k] for k in ("layer", "lr_scale", "weight_decay", "names")}
                                     for g in groups])
    bar = _progress_bar(total, progress)
    try:
        for epoch in range(1, config.epochs + 1):
            loss = _train_epoch(model, train_loader, optimizer, batch_loss, config.lr, epoch, result.steps, total,
                                warmup, bar)
            result.steps += per_epoch
            score = val_score(model, val_loader)
            result.history.append({"epoch": epoch, "train_loss": loss, "val_score": score,
                                   "lr": optimizer.param_groups[-1]["lr"]})
            improved = stopper.update(epoch, score, model)
            log(f"epoch {epoch}: train loss {loss:.4f}, validation {score:.4f}" + (" (best)" if improved else ""))
            if improved:
                on_improvement(model, epoch, score)
            if stopper.should_stop:
                result.stopped_early = epoch < config.epochs
                log(f"early stop: no improvement for {config.patience} epoch(s); best epoch {stopper.best_epoch}")
                break
    finally:
        if bar is not None:
            bar[0].stop()
    stopper.restore(model)
    result.best_epoch, result.best_val_score = stopper.best_epoch, stopper.best_score
    result.seconds = time.perf_counter() - started
    return result


def _train_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer, batch_loss: BatchLoss,
                 peak_lr: float, epoch: int, step: int, total: int, warmup: int, bar) -> float:
    """One pass over ``loader``; returns the mean training loss."""
    model.train()
    losses = []
    device = next(model.parameters()).device
    for inputs, targets in loader:
        inputs, targets = inputs.to(device), targets.to(device)
        _set_learning_rates(optimizer, peak_lr, warmup_cosine(step, total, warmup))
        loss = batch_loss(model, inputs, targets)
        losses.append(require_finite(loss, "fine-tuning", f"epoch {epoch}, step {step + 1}",
                                     "lower --lr or raise --warmup-epochs"))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        if bar is not None:
            bar[0].advance(bar[1])
    return sum(losses) / max(1, len(losses))


def _set_learning_rates(optimizer: torch.optim.Optimizer, peak_lr: float, multiplier: float) -> None:
    """Every group at ``peak_lr · lr_scale · multiplier`` (its layer's share of the scheduled rate)."""
    for group in optimizer.param_groups:
        group["lr"] = peak_lr * group["lr_scale"] * multiplier


def _progress_bar(total: int, progress: bool):
    if not progress:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("fine-tuning"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True)
    task = bar.add_task("fine-tuning", total=total)
    bar.start()
    return bar, task
