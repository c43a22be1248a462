"""GrokAlign as Lightning callbacks for any LightningModule (arXiv 2506.12284).

Thin drivers of the one GrokAlign implementation, :func:`sslkit.functional.jacobian.grokalign_objective` and
:func:`~sslkit.functional.jacobian.centroid_summary`, which the training loop of ``sslkit grok``
(:mod:`sslkit.analysis.grok.training`) uses too; the callbacks add only the Lightning hooks.

- :class:`CentroidAlignmentMonitor` logs the centroid alignment cos(c(x), x), the centroid norm
  and <c(x), x> of a fixed probe batch every ``every_n_steps`` optimiser steps. It only reads the
  model: eval mode for the measurement (no drop-path), parameters' ``.grad`` untouched.
- :class:`JacobianPenaltyCallback` adds ``lam * jacobian_penalty`` to the gradients of a model
  after the task loss's backward, so a module needs no change to be trained with GrokAlign.

Which map is measured: ``model_getter(pl_module)`` if given; otherwise :func:`default_image_model`.
For an sslkit DINOv2 pretraining module that is the student's images -> DINO prototype scores
(``method.student["backbone"]`` then ``["dino_head"]``), the analogue of a classifier's logits. Not
the bare backbone: its output is a LayerNorm'd CLS vector, and the sum of a LayerNorm's outputs is
``sum(beta) + sum(gamma * n)`` with ``sum(n) = 0``, so while ``gamma`` is uniform (e.g. at init) its
centroid ``grad_x sum_c f_c`` is exactly zero. Other modules: ``pl_module.model``, else the module.
"""

from __future__ import annotations

from typing import Callable, Optional

import lightning as L
import torch
from torch import nn

from sslkit.functional.jacobian import centroid_summary, differentiable_forward, grokalign_objective

__all__ = ["CentroidAlignmentMonitor", "JacobianPenaltyCallback", "StudentScores", "default_image_model"]

ModelGetter = Callable[[L.LightningModule], nn.Module]


class StudentScores(nn.Module):
    """Images -> the student's DINO prototype scores, ``dino_head(backbone(x))``: (B, K)."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def default_image_model(pl_module: L.LightningModule) -> nn.Module:
    """The images -> outputs map of ``pl_module`` (see the module docstring for the order tried)."""
    method = getattr(pl_module, "method", None)
    student = getattr(method, "student", None)
    if isinstance(student, nn.ModuleDict) and "backbone" in student:
        if "dino_head" in student:
            return StudentScores(student["backbone"], student["dino_head"])
        return student["backbone"]
    if isinstance(student, nn.Module):
        return student
    model = getattr(pl_module, "model", None)
    if isinstance(model, nn.Module):
        return model
    return pl_module


class CentroidAlignmentMonitor(L.Callback):
    """Log centroid statistics of ``probe`` (a fixed (B, *S) batch) during training.

    Logged keys (``prefix`` = ``centroid``): ``centroid/alignment`` (mean cos(c(x), x)),
    ``centroid/norm`` (mean ||c(x)||), ``centroid/inner_product`` (mean <c(x), x>). Every value is
    also kept in ``history`` as ``(step, {key: value})``. Measured on global rank 0 only.
    """

    def __init__(self, probe: torch.Tensor, every_n_steps: int = 100, model_getter: Optional[ModelGetter] = None,
                 prefix: str = "centroid", at_start: bool = True):
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}.")
        self.probe = probe.detach()
        self.every_n_steps = every_n_steps
        self.model_getter = model_getter or default_image_model
        self.prefix = prefix
        self.at_start = at_start
        self.history: list[tuple[int, dict[str, float]]] = []

    def measure(self, pl_module: L.LightningModule) -> dict[str, float]:
        """Centroid statistics of the probe under the current weights (no logging)."""
        model = self.model_getter(pl_module)
        param = next(model.parameters(), None)
        probe = self.probe if param is None else self.probe.to(device=param.device, dtype=param.dtype)
        was_training = model.training
        model.eval()  # drop-path / dropout would make c(x) random
        try:
            stats = centroid_summary(model, probe)
        finally:
            model.train(was_training)
        return {f"{self.prefix}/{key}": value for key, value in stats.items()}

    def _log(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_rank != 0:
            return
        step = trainer.global_step
        if self.history and self.history[-1][0] == step:
            return
        values = self.measure(pl_module)
        self.history.append((step, values))
        for logger in trainer.loggers:
            logger.log_metrics(values, step=step)

    def on_train_start(self, trainer, pl_module) -> None:
        if self.at_start:
            self._log(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step > 0 and trainer.global_step % self.every_n_steps == 0:
            self._log(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self._log(trainer, pl_module)


def _images_of(batch) -> torch.Tensor:
    """The input images of a batch: ``global_crops`` of an sslkit multi-crop batch, ``image``/``x``
    of a dict, or the first element of a tuple/list."""
    if isinstance(batch, dict):
        for key in ("global_crops", "image", "x", "inputs"):
            if key in batch:
                return batch[key]
        raise KeyError(f"JacobianPenaltyCallback: no image key in the batch (keys {sorted(batch)}); pass inputs_getter.")
    if isinstance(batch, (tuple, list)):
        return batch[0]
    return batch


class JacobianPenaltyCallback(L.Callback):
    """Train any LightningModule with GrokAlign: add the gradient of ``lam * P`` to the task's.

    After each backward of the task loss (``on_after_backward``, which Lightning calls for
    automatic and manual optimisation alike) ``lam * P`` of the current batch's inputs
    (:func:`~sslkit.functional.jacobian.grokalign_objective` with a zero task loss; ``P`` equals
    ``jacobian_penalty(model, x)``) is back-propagated into the same ``.grad`` buffers; since gradients
    add, this equals training on ``loss + lam * P``. Costs one extra forward and a double backward.

    ``inputs_getter(batch)`` picks x (default: see :func:`_images_of`); ``max_samples`` caps the
    number of samples the penalty sees per step. Single-process only: under DDP the penalty's
    gradients would not be all-reduced, so this raises at setup.
    """

    def __init__(self, lam: float, n_projections: int = 1, model_getter: Optional[ModelGetter] = None,
                 inputs_getter: Optional[Callable[[object], torch.Tensor]] = None, max_samples: int | None = None,
                 seed: int = 0):
        if not lam > 0:
            raise ValueError(f"lam must be > 0, got {lam}.")
        self.lam, self.n_projections = lam, n_projections
        self.model_getter = model_getter or default_image_model
        self.inputs_getter = inputs_getter or _images_of
        self.max_samples = max_samples
        self.generator = torch.Generator().manual_seed(seed)
        self._batch = None
        self.last_penalty: float | None = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        if trainer.world_size > 1:
            raise RuntimeError("JacobianPenaltyCallback supports one process only (its gradients are not "
                               "all-reduced); add lam * jacobian_penalty(...) to the module's loss instead.")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._batch = batch

    def on_after_backward(self, trainer, pl_module) -> None:
        if self._batch is None:
            return
        x = self.inputs_getter(self._batch)
        if self.max_samples is not None:
            x = x[: self.max_samples]
        model = self.model_getter(pl_module)
        projections_gen = self.generator if x.device.type == "cpu" else None
        inputs, outputs = differentiable_forward(model, x)
        objective, penalty = grokalign_objective(0.0, outputs, inputs, self.lam, self.n_projections,
                                                 generator=projections_gen)
        objective.backward()
        self.last_penalty = float(penalty.detach())
        pl_module.log("train/jacobian_penalty", penalty.detach(), on_step=True, on_epoch=False,
                      batch_size=x.shape[0])
        self._batch = None
