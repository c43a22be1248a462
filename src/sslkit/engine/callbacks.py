"""Callbacks that read the running method without changing it: the kNN monitor."""

from __future__ import annotations

from typing import Callable, Optional

import lightning as L
import torch
from torch.utils.data import Dataset

from sslkit.data.features import extract_features
from sslkit.functional.knn import knn_accuracy


KNN_POOLINGS = ("cls", "mean")  # the names of `sslkit evaluate --pooling`


class MeanPatchTokens(torch.nn.Module):
    """A ViT's patch tokens averaged over positions (after the final norm) instead of its class token.

    What MAE trains: its loss reaches the patch tokens only, so the class token of a short MAE run is a
    poor summary (He et al., arXiv 2111.06377, fine-tune with global average pooling for this reason).
    """

    def __init__(self, backbone: torch.nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(x)["patch"].mean(dim=1)


def knn_pooled(backbone: torch.nn.Module, pooling: str = "cls") -> torch.nn.Module:
    """The feature extractor the kNN monitor scores: ``cls`` = the backbone's own output (a ViT's class
    token, a CNN's pooled features), ``mean`` = :class:`MeanPatchTokens` (ViTs only; the config checks it)."""
    if pooling not in KNN_POOLINGS:
        raise ValueError(f"kNN pooling must be 'cls' or 'mean', got {pooling!r}.")
    return backbone if pooling == "cls" else MeanPatchTokens(backbone)


def knn_top1(model: Callable, bank: Dataset, queries: Dataset, num_classes: int, k: int = 20,
             temperature: float = 0.07, batch_size: int = 256) -> float:
    """kNN top-1 accuracy (weighted voting, spec dinov2.md step 7) of ``model``'s features, in [0, 1]."""
    bank_x, bank_y = extract_features(model, bank, batch_size=batch_size)
    query_x, query_y = extract_features(model, queries, batch_size=batch_size)
    acc = knn_accuracy(bank_x, bank_y, query_x, num_classes, ks=(k,), temperature=temperature,
                       test_labels=query_y)
    return float(acc[k])


class KNNMonitor(L.Callback):
    """Log the evaluated backbone's (DINOv2: the teacher's) kNN accuracy every ``every_n_steps`` steps (0: at the end only)."""

    def __init__(self, bank: Dataset, queries: Dataset, num_classes: int, every_n_steps: int = 0,
                 k: int = 20, temperature: float = 0.07, pooling: str = "cls"):
        self.bank, self.queries, self.num_classes = bank, queries, num_classes
        self.pooling = pooling
        self.every_n_steps, self.k, self.temperature = every_n_steps, k, temperature
        self.history: list[tuple[int, float]] = []

    def _measure(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Optional[float]:
        if trainer.global_rank != 0:
            return None
        backbone = knn_pooled(pl_module.method.eval_backbone, self.pooling)
        acc = knn_top1(backbone, self.bank, self.queries, self.num_classes, self.k, self.temperature)
        step = trainer.global_step
        self.history.append((step, acc))
        for logger in trainer.loggers:
            logger.log_metrics({f"knn/top1_k{self.k}": acc}, step=step)
        return acc

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if self.every_n_steps > 0 and step % self.every_n_steps == 0 and step < trainer.max_steps:
            self._measure(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self.finish(trainer, pl_module)

    def finish(self, trainer, pl_module) -> None:
        """Measure at the final step unless already done (also when a resumed run had no step left,
        which Lightning ends without ``on_train_end``)."""
        if not self.history or self.history[-1][0] != trainer.global_step:
            self._measure(trainer, pl_module)

    # The history travels in the checkpoint, so a resumed run's report and learning curve hold the
    # measurements made before the interruption too.
    def state_dict(self) -> dict:
        return {"history": [[int(step), float(acc)] for step, acc in self.history]}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = [(int(step), float(acc)) for step, acc in state_dict.get("history", [])]
