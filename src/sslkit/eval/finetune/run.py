"""``finetune``: the Python API behind ``sslkit finetune``.

Loads any model spec ``sslkit evaluate`` takes (:func:`sslkit.eval.encoders.load_encoder`), opens the data
(:mod:`sslkit.eval.finetune.task_data`), puts a head on the backbone (:mod:`sslkit.eval.finetune.heads`),
trains both end to end (:func:`sslkit.eval.finetune.training.fit`), restores the best validation epoch and
scores the test split. Returns the report (a JSON-ready dict) and the fine-tuned network.

Example::

    outcome = finetune("runs/tiny-digits", "digits", FinetuneConfig(epochs=20))
    outcome.report["results"]["test_accuracy"]
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

from sslkit.atomic_files import save_safetensors_atomic
from sslkit.config import ConfigError
from sslkit.eval.encoders import Encoder, encoder_summary, load_encoder
from sslkit.eval.eval_view import ChannelAdapter
from sslkit.eval.finetune.classify import accuracy, classification_loss, predict
from sslkit.eval.finetune.config import FinetuneConfig
from sslkit.eval.finetune.heads import Classifier, Segmenter, feature_maps, pooled_features
from sslkit.eval.finetune.segment import miou_of, pixel_loss, segmentation_confusion
from sslkit.eval.finetune.task_data import TaskData, loaders, open_task_data
from sslkit.eval.finetune.training import FitResult, fit
from sslkit.eval.linear import macro_f1
from sslkit.eval.segmentation import iou_from_confusion
from sslkit.json_values import json_ready
from sslkit.training_loop import seeded

__all__ = ["FinetuneOutcome", "finetune"]


@dataclass
class FinetuneOutcome:
    report: dict
    model: nn.Module


def finetune(model: Any, data: str, config: Optional[FinetuneConfig] = None, *,
             checkpoint: Optional[str | Path] = None, progress: bool = False,
             log: Callable[[str], None] = lambda message: None) -> FinetuneOutcome:
    """Fine-tune ``model`` on ``data`` for ``config.task``; save the best epoch to ``checkpoint`` (safetensors)
    whenever the validation score improves.

    Seeds torch, numpy (timm's Mixup draws from it) and ``random`` with ``config.seed`` for the run and gives the
    caller's generators back unchanged. A model passed as an
    ``nn.Module`` is copied, never changed.

    Raises:
        ConfigError / DataError / ModelSpecError: bad settings, data without labels or masks, a bad model spec.
    """
    config = config or FinetuneConfig()
    started = time.perf_counter()
    # torch, numpy (timm's Mixup draws from it) and Python's RNGs seeded for the run, the caller's restored after.
    with seeded(config.seed, numpy_and_python=True):
        data_set, encoder = _open(model, data, config)
        backbone = encoder.module if isinstance(model, (str, Path)) else copy.deepcopy(encoder.module)
        if not isinstance(backbone, nn.Module):
            raise ConfigError(f"Model {encoder.name} is a plain function; only an nn.Module can be fine-tuned.")
        backbone.requires_grad_(True)
        size = int(config.image_size or encoder.image_size or data_set.image_size)
        adapter = ChannelAdapter(data_set.channels, encoder.in_chans, encoder.name)
        mean, std = _normalisation(encoder, data_set, adapter)
        batches = loaders(data_set, config, size, mean, std, adapter)
        network = _network(backbone, encoder.kind, data_set.num_classes, config, size,
                           in_chans=3 if adapter.repeat else data_set.channels).to(config.device)
        log(f"{encoder.name}: {encoder.description}; {config.task} on {data} ({batches.n_train} train, {batches.n_val} "
            f"validation, {batches.n_test} test images at {size} px)")
        if config.task == "classify":
            batch_loss, score = classification_loss(config, data_set.num_classes), accuracy
        else:
            batch_loss = pixel_loss
            score = lambda net, loader: miou_of(segmentation_confusion(net, loader, data_set.num_classes))  # noqa: E731
        saver = _checkpoint_saver(checkpoint, config, encoder.name) if checkpoint else (lambda *a: None)
        fitted = fit(network, batches.train, batches.val, config, batch_loss, score, on_improvement=saver,
                     progress=progress, log=log)
        results = _test_results(network, batches.test, data_set, config)
        report = _report(model, encoder, data_set, config, batches, size, mean, std, fitted, results, checkpoint,
                         time.perf_counter() - started)
    return FinetuneOutcome(report=json_ready(report), model=network)


def _open(model: Any, data: str, config: FinetuneConfig) -> tuple[TaskData, Encoder]:
    """The data (for its channels) and the encoder; a built-in set is re-rendered at an sslkit model's size."""
    data_set = open_task_data(data, config, config.image_size)
    encoder = load_encoder(model, in_chans=data_set.channels, device=config.device)
    render = config.image_size or (encoder.image_size if encoder.kind == "sslkit" else None)
    if data_set.builtin and render and render != data_set.image_size:
        data_set = open_task_data(data, config, render)
    return data_set, encoder


def _normalisation(encoder: Encoder, data_set: TaskData, adapter: ChannelAdapter) -> tuple[tuple, tuple]:
    """The model's own statistics when it has them, else the data's (repeated for a grey → RGB model)."""
    if encoder.mean is not None:
        return tuple(encoder.mean), tuple(encoder.std)
    repeat = 3 if adapter.repeat else 1
    return tuple(data_set.mean) * repeat, tuple(data_set.std) * repeat


def _network(backbone: nn.Module, kind: str, num_classes: int, config: FinetuneConfig, size: int,
             in_chans: int) -> nn.Module:
    """Backbone + head; the head's input width is read from one forward pass of two blank images."""
    probe = torch.zeros(2, in_chans, size, size, device=next(backbone.parameters()).device)
    backbone.eval()
    with torch.no_grad():
        if config.task == "classify":
            return Classifier(backbone, kind, num_classes, int(pooled_features(backbone, kind, probe).shape[1]))
        levels = 1 if config.head == "linear" else config.levels
        depth = len(getattr(backbone, "blocks", ())) or levels
        if levels > depth:
            raise ConfigError(f"finetune levels={levels} exceeds the backbone's {depth} blocks; use at most {depth}.")
        dims = [int(m.shape[1]) for m in feature_maps(backbone, kind, probe, levels)]
    return Segmenter(backbone, kind, num_classes, dims, config.head)


def _checkpoint_saver(path: str | Path, config: FinetuneConfig, model_name: str) -> Callable:
    """``on_improvement`` that writes the network's weights and the epoch to ``path`` (safetensors, atomic)."""

    def save(network: nn.Module, epoch: int, score: float) -> None:
        tensors = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
        meta = {"epoch": str(epoch), "val_score": repr(float(score)), "model": model_name,
                "config": json.dumps(json_ready(config.to_dict()))}
        save_safetensors_atomic(path, tensors, metadata=meta, fsync=True)

    return save


def _test_results(network: nn.Module, test_loader, data_set: TaskData, config: FinetuneConfig) -> dict:
    if config.task == "classify":
        pred, labels = predict(network, test_loader)
        f1, per_class = macro_f1(pred, labels, data_set.num_classes)
        return {"test_accuracy": float((pred == labels).double().mean()), "macro_f1": f1,
                "per_class_accuracy": per_class, "val_metric": "accuracy"}
    confusion = segmentation_confusion(network, test_loader, data_set.num_classes)
    iou = iou_from_confusion(confusion)
    return {"miou": miou_of(confusion), "iou": iou.tolist(),
            "pixel_accuracy": float(confusion.diag().sum() / confusion.sum()), "val_metric": "miou"}


def _report(model: Any, encoder: Encoder, data_set: TaskData, config: FinetuneConfig, batches, size: int,
            mean: tuple, std: tuple, fitted: FitResult, results: dict, checkpoint, seconds: float) -> dict:
    from sslkit import __version__

    return {
        "sslkit_version": __version__, "created": time.strftime("%Y-%m-%d %H:%M:%S"), "task": config.task,
        "model": {"spec": str(model) if isinstance(model, (str, Path)) else repr(type(model).__name__),
                  **encoder_summary(encoder)},
        "data": {"source": data_set.source, "n_train": batches.n_train, "n_val": batches.n_val,
                 "n_test": batches.n_test, "channels": data_set.channels, "num_classes": data_set.num_classes,
                 "class_names": data_set.class_names, "image_size": size, "mean": list(mean), "std": list(std),
                 "split_rule": data_set.split_rule},
        "config": config.to_dict(),
        "results": results,
        "best_epoch": fitted.best_epoch, "best_val_score": fitted.best_val_score,
        "epochs_run": len(fitted.history), "stopped_early": fitted.stopped_early, "steps": fitted.steps,
        "curve": fitted.history,
        "param_groups": [{"layer": g["layer"], "lr_scale": g["lr_scale"], "weight_decay": g["weight_decay"],
                          "tensors": len(g["names"])} for g in fitted.param_groups],
        "checkpoint": str(checkpoint) if checkpoint else None,
        "seconds": seconds,
    }
