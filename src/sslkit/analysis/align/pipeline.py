"""The ``sslkit align`` pipeline: features of each model (:mod:`sslkit.eval.feature_cache`, cached), the
alignment matrices and, on ``shapes``, identifiability; a JSON-ready report."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch

from sslkit.analysis.align.identifiability import latent_identifiability
from sslkit.analysis.align.latents import SHAPES_JOINT_LATENTS, shapes_latents
from sslkit.analysis.align.matrices import alignment_matrices, alignment_steps
from sslkit.analysis.align.settings import AlignSettings
from sslkit.config import ConfigError
from sslkit.data.errors import DataError

__all__ = ["align"]


def _model_features(spec: Any, opened: Any, settings: AlignSettings, progress: bool) -> tuple[str, dict, Any]:
    """(name, description dict, FeatureSet) of one model on ``settings.split``."""
    from sslkit.eval.encoders import encoder_summary, load_encoder
    from sslkit.eval.feature_cache import feature_set
    from sslkit.eval.features_file import is_features_file

    if is_features_file(spec):
        fs = feature_set(spec, None, settings.split)
        return Path(str(spec)).name, {"name": Path(str(spec)).name, "kind": "features-file",
                                      "description": f"precomputed features {spec}"}, fs
    encoder = load_encoder(spec, in_chans=opened.channels, device=settings.device)
    fs = feature_set(encoder, opened, settings.split, settings.pooling, n_last_blocks=settings.n_last_blocks,
                     image_size=settings.image_size, batch_size=settings.batch_size, device=settings.device,
                     cache_dir=settings.cache_dir, progress=progress, encoder=encoder)
    return encoder.name, encoder_summary(encoder), fs


def align(models: Sequence[Any], data: Optional[str], settings: Optional[AlignSettings] = None, progress: bool = False,
          log: Callable[[str], None] = lambda message: None) -> dict:
    """Alignment matrices between ``models`` and, on ``shapes``, their identifiability; a JSON-ready report.

    Args:
        models: specs accepted by :func:`sslkit.eval.models.load_encoder`, or features files whose rows are the
            items of ``settings.split`` of ``data`` in dataset order.
        data: ``shapes``, ``digits``, an image folder or path list; None when every model is a features file.
        settings: see :class:`AlignSettings`.
        progress: rich progress bars for feature extraction and the metric evaluations.
        log: receives one line per finished step.

    Raises:
        ConfigError / DataError / ModelSpecError: no models, one model without latents, mismatched rows, ...
    """
    from sslkit import __version__
    from sslkit.eval.eval_data import open_eval_data
    from sslkit.eval.features_file import is_features_file

    settings = settings or AlignSettings()
    started = time.perf_counter()
    if not models:
        raise ConfigError("Pass at least one model to align.")
    if data is None and not all(is_features_file(m) for m in models):
        raise ConfigError("Pass --data: only features files can be aligned without a dataset.")
    has_latents = data == "shapes"
    if len(models) < 2 and not has_latents:
        where = f"'{data}' has" if data is not None else "features files have"
        raise ConfigError(f"One model gives no alignment matrix and {where} no known latents; pass at least "
                          "two models, or use --data shapes for the identifiability of one model.")
    opened = open_eval_data(data, None, {}) if data is not None else None
    if opened is not None and settings.split not in opened.splits:
        raise DataError(f"Data '{data}' has no {settings.split!r} split (it has {sorted(opened.splits)}); "
                        "an unlabelled folder has only 'train'.")
    entries, feats = [], {}
    for index, spec in enumerate(models):
        name, summary, fs = _model_features(spec, opened, settings, progress)
        if name in feats:  # two runs with the same directory name: tell them apart
            name = f"{name} [{index + 1}]"
        feats[name] = fs
        entries.append({"spec": str(spec) if isinstance(spec, (str, os.PathLike)) else repr(spec), "name": name,
                        "model": summary, "features": fs.info})
        log(f"{name}: {fs.features.shape[0]} × {fs.features.shape[-1]} features ({fs.info.get('cache', 'n/a')} cache)")
    sizes = {name: int(fs.features.shape[0]) for name, fs in feats.items()}
    if len(set(sizes.values())) > 1:
        raise DataError(f"The models have features for different numbers of samples {sizes}; a features file must "
                        f"hold the rows of the '{settings.split}' split in dataset order.")
    n = next(iter(sizes.values()))
    report: dict = {"sslkit_version": __version__, "created": time.strftime("%Y-%m-%d %H:%M:%S"),
                    "data": {"source": data, "split": settings.split, "samples": n,
                             "split_size": len(opened.splits[settings.split]) if opened is not None else None},
                    "settings": settings.to_dict(), "models": entries, "notes": []}
    if len(feats) >= 2:
        idx = torch.arange(n)
        if n > settings.samples:
            shuffled = torch.randperm(n, generator=torch.Generator().manual_seed(settings.seed))
            idx = shuffled[:settings.samples].sort().values
        subset = {name: fs.features[idx] for name, fs in feats.items()}
        size = len(subset)
        steps = alignment_steps(size, settings.metrics, settings.permutation_null)
        result = _with_progress(progress, steps, "alignment metrics",
                                lambda step: alignment_matrices(subset, settings.metrics, settings.k,
                                                                settings.permutation_null, settings.seed, step))
        report["alignment"] = result.to_dict()
        log(f"alignment: {len(settings.metrics)} metrics × {size}² pairs on {result.n} samples "
            f"({result.seconds:.1f} s)")
    else:
        report["alignment"] = None
        report["notes"].append("One model: no alignment matrices (they need at least two); identifiability only.")
    if has_latents:
        # The factors are drawn before any pixel and do not depend on the rendering size for the default texture
        # background, so the 32-px split gives the rows of every model's features (sslkit runs re-render at their
        # own size); the label check below guards the order.
        latents, labels = shapes_latents(opened.splits[settings.split])
        if labels.shape[0] != n:
            raise DataError(f"'shapes/{settings.split}' has {labels.shape[0]} items but the features have {n} rows; "
                            "a features file must hold that split's rows in dataset order.")
        for name, fs in feats.items():
            known = fs.labels >= 0
            if known.any() and not torch.equal(fs.labels[known], labels[known]):
                raise DataError(f"The labels stored with the features of {name!r} do not follow the order of "
                                f"'shapes/{settings.split}'; features and latents must describe the same rows.")
        ident = latent_identifiability({name: fs.features for name, fs in feats.items()}, latents,
                                       settings.fit_fraction, settings.ridge, settings.seed, settings.mcc_method,
                                       joint=SHAPES_JOINT_LATENTS)
        report["identifiability"] = ident.to_dict()
        report["identifiability"]["encoding"] = {
            "shape": "one-hot class", "color": "RGB in [0, 1]", "scale": "shape diameter / image side",
            "position": "centre (x, y) in [0, 1]", "rotation": "(cos θ, sin θ)",
            "all": "color, scale, position and rotation concatenated (8 columns)"}
        wide = [m for m, d in ident.feature_dims.items() if 2 * d >= ident.fit_size]
        if wide:
            report["notes"].append(
                f"{wide}: fewer than 2 fit rows per feature dimension ({ident.fit_size} rows), so the R² fit "
                f"(ridge {settings.ridge:g}) overfits and its held-out R² is pessimistic; use more rows "
                "(--split train) or a larger --ridge.")
        log(f"identifiability: R² and MCC of {len(feats)} model(s) against {len(ident.latents)} latents")
    else:
        report["identifiability"] = None
        if data is not None:
            report["notes"].append(f"'{data}' has no known latent factors: identifiability needs --data shapes.")
    report["seconds"] = time.perf_counter() - started
    return report


def _with_progress(progress: bool, total: int, description: str, work: Callable) -> Any:
    if not progress:
        return work(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  transient=True) as bar:
        task = bar.add_task(description, total=total)
        return work(lambda text: bar.update(task, advance=1, description=text))
