"""Linear probe on frozen features with a learning-rate × weight-decay sweep trained as one layer.

Every setting of the grid is one head of a single multi-head linear layer W ∈ ℝ^{D×H×C}: each mini-batch is
multiplied once by all heads (one matmul), the loss is the sum of the heads' cross-entropies, and an SGD step
with a per-head learning rate and weight decay updates all of them at once. This is the DINOv2 / UltraDINO
recipe (facebookresearch/dinov2 ``dinov2/eval/linear.py``: "all linear classifiers are trained jointly";
domain-pretraining.md step 7a). The head with the best accuracy on a validation split carved from the training
split is selected and reported on the test split.

Cross-entropy gradients are written in closed form (∂L/∂logits = softmax − target), which avoids autograd
bookkeeping on the (B, H·C) logits and keeps a 1,000-head sweep a few matmuls per step.

Example::

    result = linear_probe(train_x, train_y, test_x, test_y)
    result.test_accuracy, result.best["lr"], result.best["weight_decay"]
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Optional

import torch

from sslkit.data.errors import DataError
from sslkit.eval.knn import check_labelled

__all__ = ["DINOV2_LRS", "LinearProbeConfig", "LinearProbeResult", "linear_probe", "macro_f1",
           "stratified_split", "train_linear_heads"]

# facebookresearch/dinov2 dinov2/eval/linear.py (--learning-rates default) = domain-pretraining.md step 7a.
DINOV2_LRS = (1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1)


@dataclass
class LinearProbeConfig:
    """Settings of the sweep; all of them are written into reports.

    lrs × weight_decays is the grid (one head per pair). Optimiser: SGD with momentum 0.9, coupled weight decay
    on W (not the bias), linear warm-up then cosine decay to 0 (spec: 5 warm-up epochs of 10 → half the run).
    Training lasts ``epochs`` passes over the training part, but at least ``min_steps`` steps so that small
    datasets (digits: 11 batches per epoch) still converge. Features are standardised with the training part's
    mean and std when ``standardize`` (the scale of raw features varies by model; the LR grid assumes ~unit scale).
    ``label_smoothing`` and ``mixup_alpha`` (mixup of features and targets) are off by default; the UltraDINO
    probe uses 0.1 and 0.8 with image-level cutmix, which frozen cached features cannot reproduce.
    """

    lrs: tuple = DINOV2_LRS
    weight_decays: tuple = (0.0, 1e-4, 1e-3)
    epochs: int = 10
    min_steps: int = 1000
    batch_size: int = 128
    momentum: float = 0.9
    warmup_fraction: float = 0.5
    val_fraction: float = 0.1
    standardize: bool = True
    label_smoothing: float = 0.0
    mixup_alpha: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        self.lrs = tuple(float(v) for v in self.lrs)
        self.weight_decays = tuple(float(v) for v in self.weight_decays)
        if not self.lrs or min(self.lrs) <= 0:
            raise ValueError(f"linear probe lrs must be positive, got {list(self.lrs)}.")
        if not self.weight_decays or min(self.weight_decays) < 0:
            raise ValueError(f"linear probe weight_decays must be >= 0, got {list(self.weight_decays)}.")
        if self.epochs < 1 or self.batch_size < 1 or self.min_steps < 0:
            raise ValueError("linear probe epochs and batch_size must be >= 1 and min_steps >= 0.")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"linear probe val_fraction must be in (0, 1), got {self.val_fraction}.")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise ValueError(f"linear probe warmup_fraction must be in [0, 1), got {self.warmup_fraction}.")

    def grid(self) -> list[dict]:
        """One dict per head, lr-major."""
        return [{"lr": lr, "weight_decay": wd} for lr in self.lrs for wd in self.weight_decays]


@dataclass
class LinearProbeResult:
    """The selected head's test metrics plus every head's validation (and test) accuracy."""

    test_accuracy: float
    macro_f1: float
    per_class_accuracy: list
    best: dict
    val_accuracy: list  # per head, in grid order
    test_accuracy_all: list  # per head, for the sweep plot only (selection never looks at it)
    grid: list
    config: LinearProbeConfig
    n_train: int
    n_val: int
    n_test: int
    steps: int
    seconds: float
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"test_accuracy": self.test_accuracy, "macro_f1": self.macro_f1,
                "per_class_accuracy": self.per_class_accuracy, "best": self.best,
                "val_accuracy": self.val_accuracy, "test_accuracy_all": self.test_accuracy_all, "grid": self.grid,
                "config": dataclasses.asdict(self.config), "n_train": self.n_train, "n_val": self.n_val,
                "n_test": self.n_test, "steps": self.steps, "seconds": self.seconds}


def stratified_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (keep, held_out): ``fraction`` of every class held out (at least one when a class has ≥ 2 samples)."""
    gen = torch.Generator().manual_seed(seed)
    keep, held = [], []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(idx.numel(), generator=gen)]
        n_held = int(round(idx.numel() * fraction))
        if idx.numel() >= 2:
            n_held = min(max(n_held, 1), idx.numel() - 1)
        else:
            n_held = 0
        held.append(idx[:n_held])
        keep.append(idx[n_held:])
    return torch.cat(keep).sort().values, torch.cat(held).sort().values


def macro_f1(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> tuple[float, list]:
    """(macro-F1 over classes present in ``target`` or ``pred``, per-class accuracy (recall) list)."""
    confusion = torch.bincount(target * num_classes + pred, minlength=num_classes**2).reshape(num_classes, num_classes)
    tp = confusion.diag().double()
    support = confusion.sum(1).double()
    predicted = confusion.sum(0).double()
    present = (support + predicted) > 0
    f1 = torch.where(present, 2 * tp / (support + predicted).clamp_min(1), torch.zeros_like(tp))
    recall = [float(tp[c] / support[c]) if support[c] > 0 else float("nan") for c in range(num_classes)]
    return float(f1[present].mean()), recall


def _schedule(step: int, total: int, warmup: int) -> float:
    """Linear warm-up to 1, then half-cosine to 0 (multiplier of each head's base learning rate)."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def _train_heads(x: torch.Tensor, y: torch.Tensor, num_classes: int, lrs: torch.Tensor,
                 weight_decays: torch.Tensor, *, steps: int, batch_size: int, momentum: float,
                 warmup_fraction: float, label_smoothing: float, mixup_alpha: float, seed: int,
                 progress: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The sweep in class-major layout: weight (D, C, H), bias (C, H).

    Heads are the innermost axis so that the softmax over C classes reduces C contiguous rows of length H
    (vectorised); with classes innermost a softmax over 10 values per head was ~15× slower than the two
    matmuls of the step. Logits live in a buffer allocated once and the gradient is accumulated straight
    into the momentum buffer by the backward GEMM.
    """
    n, dim = x.shape
    heads = lrs.numel()
    gen = torch.Generator().manual_seed(seed)
    weight = torch.zeros(dim, num_classes, heads)
    bias = torch.zeros(num_classes, heads)
    buf_w, buf_b = torch.zeros_like(weight), torch.zeros_like(bias)
    lr_h = lrs.float().reshape(1, 1, heads)
    wd_h = weight_decays.float().reshape(1, 1, heads)
    has_wd = bool((weight_decays > 0).any())
    warmup = int(round(warmup_fraction * steps))
    eye = torch.eye(num_classes)
    batch_size = min(batch_size, n)
    logits_buf = torch.empty(batch_size, num_classes * heads)
    order = torch.randperm(n, generator=gen)
    cursor = 0
    bar = None
    if progress:
        from rich.progress import Progress

        bar = Progress(transient=True)
        task = bar.add_task(f"linear probe ({heads} heads)", total=steps)
        bar.start()
    try:
        for step in range(steps):
            if cursor + batch_size > n:  # drop the ragged tail, as a DataLoader with drop_last would
                order, cursor = torch.randperm(n, generator=gen), 0
            idx = order[cursor : cursor + batch_size]
            cursor += batch_size
            xb = x[idx]
            target = eye[y[idx]]
            if label_smoothing > 0:
                target = target * (1 - label_smoothing) + label_smoothing / num_classes
            if mixup_alpha > 0:
                lam = float(torch.distributions.Beta(mixup_alpha, mixup_alpha).sample())
                perm = torch.randperm(xb.shape[0], generator=gen)
                xb = lam * xb + (1 - lam) * xb[perm]
                target = lam * target + (1 - lam) * target[perm]
            torch.mm(xb, weight.view(dim, -1), out=logits_buf)
            logits = logits_buf.view(batch_size, num_classes, heads).add_(bias)
            # In place: logits -> softmax -> softmax − target = B · d(mean CE)/d logits, every head at once.
            logits.sub_(logits.amax(dim=1, keepdim=True)).exp_()
            logits.div_(logits.sum(dim=1, keepdim=True))
            logits.sub_(target[:, :, None])
            # Momentum and the gradient in one GEMM: buf ← μ·buf + Xᵀ(softmax − target)/B (BLAS beta = μ), then
            # the coupled weight decay: buf ← buf + wd·W. Same update as torch.optim.SGD, two passes fewer.
            buf_w.view(dim, -1).addmm_(xb.t(), logits_buf, beta=momentum, alpha=1.0 / batch_size)
            if has_wd:
                buf_w.addcmul_(wd_h, weight)
            buf_b.mul_(momentum).add_(logits.sum(dim=0), alpha=1.0 / batch_size)
            scale = _schedule(step, steps, warmup)
            weight.addcmul_(lr_h * scale, buf_w, value=-1.0)
            bias.addcmul_(lr_h[0] * scale, buf_b, value=-1.0)
            if bar is not None:
                bar.advance(task)
    finally:
        if bar is not None:
            bar.stop()
    return weight, bias


def train_linear_heads(x: torch.Tensor, y: torch.Tensor, num_classes: int, lrs: torch.Tensor,
                       weight_decays: torch.Tensor, *, steps: int, batch_size: int = 128, momentum: float = 0.9,
                       warmup_fraction: float = 0.5, label_smoothing: float = 0.0, mixup_alpha: float = 0.0,
                       seed: int = 0, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Train H linear classifiers jointly with SGD on the same mini-batches.

    Args:
        x: (n, D) features; y: (n,) labels in [0, C).
        lrs, weight_decays: (H,) per-head base learning rate and (coupled) weight decay on W.
        steps: SGD steps; batches are drawn from seeded reshuffles of the data (epoch after epoch).

    Returns:
        ``weight`` (D, H, C) and ``bias`` (H, C).
    """
    weight, bias = _train_heads(x, y, num_classes, lrs, weight_decays, steps=steps, batch_size=batch_size,
                                momentum=momentum, warmup_fraction=warmup_fraction, label_smoothing=label_smoothing,
                                mixup_alpha=mixup_alpha, seed=seed, progress=progress)
    return weight.permute(0, 2, 1).contiguous(), bias.t().contiguous()


def _head_predictions(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, block: int = 4096) -> torch.Tensor:
    """(m, H) predicted class of every head, for weight (D, C, H) and bias (C, H)."""
    dim, classes, heads = weight.shape
    out = []
    for start in range(0, x.shape[0], block):
        logits = (x[start : start + block] @ weight.reshape(dim, -1)).reshape(-1, classes, heads) + bias
        out.append(logits.argmax(dim=1))
    return torch.cat(out) if out else torch.empty(0, heads, dtype=torch.long)


def linear_probe(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                 test_labels: torch.Tensor, config: Optional[LinearProbeConfig] = None,
                 num_classes: Optional[int] = None, val_features: Optional[torch.Tensor] = None,
                 val_labels: Optional[torch.Tensor] = None, progress: bool = False) -> LinearProbeResult:
    """Sweep the grid, select the head with the best validation accuracy, report its test metrics.

    Args:
        train_features: (n, D); train_labels: (n,) in [0, C).
        test_features: (m, D); test_labels: (m,).
        val_features, val_labels: an explicit validation split; by default ``config.val_fraction`` of the
            training split is held out (stratified, seeded) and the heads are trained on the rest.

    Returns:
        :class:`LinearProbeResult` — test accuracy, macro-F1 and per-class accuracy of the selected head.
    """
    config = config or LinearProbeConfig()
    check_labelled(train_labels, "training", "The linear probe")
    check_labelled(test_labels, "test", "The linear probe")
    if train_features.ndim != 2:
        raise DataError(f"The linear probe needs pooled features (n, D), got {tuple(train_features.shape)}.")
    classes = int(num_classes or max(int(train_labels.max()), int(test_labels.max())) + 1)
    start = time.perf_counter()
    x_all, y_all = train_features.float(), train_labels.long()
    if val_features is None:
        keep, held = stratified_split(y_all, config.val_fraction, config.seed)
        if held.numel() == 0 or keep.numel() == 0:
            raise DataError(f"The linear probe cannot hold out a validation split from {len(y_all)} training "
                            "samples; it needs at least two samples of some class.")
        x_tr, y_tr, x_val, y_val = x_all[keep], y_all[keep], x_all[held], y_all[held]
    else:
        check_labelled(val_labels, "validation", "The linear probe")
        x_tr, y_tr, x_val, y_val = x_all, y_all, val_features.float(), val_labels.long()
    x_te, y_te = test_features.float(), test_labels.long()
    if config.standardize:
        mean, std = x_tr.mean(0, keepdim=True), x_tr.std(0, keepdim=True).clamp_min(1e-6)
        x_tr, x_val, x_te = (x_tr - mean) / std, (x_val - mean) / std, (x_te - mean) / std
    grid = config.grid()
    lrs = torch.tensor([g["lr"] for g in grid])
    wds = torch.tensor([g["weight_decay"] for g in grid])
    steps = max(config.epochs * max(1, x_tr.shape[0] // min(config.batch_size, x_tr.shape[0])), config.min_steps)
    weight, bias = _train_heads(x_tr, y_tr, classes, lrs, wds, steps=steps, batch_size=config.batch_size,
                                momentum=config.momentum, warmup_fraction=config.warmup_fraction,
                                label_smoothing=config.label_smoothing, mixup_alpha=config.mixup_alpha,
                                seed=config.seed, progress=progress)
    val_acc = (_head_predictions(x_val, weight, bias) == y_val[:, None]).double().mean(0)
    test_pred = _head_predictions(x_te, weight, bias)
    test_acc = (test_pred == y_te[:, None]).double().mean(0)
    # Ties go to the first head in grid order (smaller lr, then smaller weight decay).
    best = int(torch.argmax(val_acc))
    f1, per_class = macro_f1(test_pred[:, best], y_te, classes)
    return LinearProbeResult(
        test_accuracy=float(test_acc[best]), macro_f1=f1, per_class_accuracy=per_class,
        best={**grid[best], "head": best, "val_accuracy": float(val_acc[best])},
        val_accuracy=val_acc.tolist(), test_accuracy_all=test_acc.tolist(), grid=grid, config=config,
        n_train=int(x_tr.shape[0]), n_val=int(x_val.shape[0]), n_test=int(x_te.shape[0]), steps=steps,
        seconds=time.perf_counter() - start)
