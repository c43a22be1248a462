"""The fine-tuning epochs: AdamW with layer-wise lr decay on a warm-up + cosine schedule, a validation score
after every epoch, early stopping, and the best weights restored at the end.

The task decides two functions: ``batch_loss(model, inputs, targets)`` (a scalar tensor) and
``val_score(model, loader)`` (higher is better: accuracy, mIoU). The progress bar, the finite-loss check and
the step count are the shared out-of-engine loop helper's (``sslkit.training_loop.TrainingLoop``).
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
from sslkit.training_loop import TrainingLoop

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
    with TrainingLoop("fine-tuning", steps=total, progress=progress,
                      hint="lower --lr or raise --warmup-epochs") as loop:
        for epoch in range(1, config.epochs + 1):
            loss = _train_epoch(model, train_loader, optimizer, batch_loss, config.lr, epoch, total, warmup, loop)
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
    result.steps = loop.step
    stopper.restore(model)
    result.best_epoch, result.best_val_score = stopper.best_epoch, stopper.best_score
    result.seconds = time.perf_counter() - started
    return result


def _train_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer, batch_loss: BatchLoss,
                 peak_lr: float, epoch: int, total: int, warmup: int, loop: TrainingLoop) -> float:
    """One pass over ``loader``; returns the mean training loss."""
    model.train()
    losses = []
    device = next(model.parameters()).device
    for inputs, targets in loader:
        inputs, targets = inputs.to(device), targets.to(device)
        _set_learning_rates(optimizer, peak_lr, warmup_cosine(loop.step, total, warmup))
        loss = batch_loss(model, inputs, targets)
        losses.append(loop.check(loss, f"epoch {epoch}, step {loop.step + 1}"))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loop.advance(loss)
    return sum(losses) / max(1, len(losses))


def _set_learning_rates(optimizer: torch.optim.Optimizer, peak_lr: float, multiplier: float) -> None:
    """Every group at ``peak_lr · lr_scale · multiplier`` (its layer's share of the scheduled rate)."""
    for group in optimizer.param_groups:
        group["lr"] = peak_lr * group["lr_scale"] * multiplier
