"""Save and load a trained backbone as ``backbone.safetensors`` + ``backbone.json``.

The pair is self-describing: the JSON holds the :class:`~sslkit.nn.vit.ViTConfig`, the input
normalisation (mean/std) and free-form ``extra`` metadata, so :func:`load_backbone` rebuilds
the network without any training code. Weights are safetensors only: nothing is ever unpickled
(DESIGN.md, "Conventions"). A timm backbone (``model.arch=timm:NAME``) is saved as its plain timm model's
state dict with ``config = {"kind": "timm", "name", "in_chans", "kwargs"}``, so
``timm.create_model(name, num_classes=0, in_chans=in_chans, **kwargs).load_state_dict(...)`` reads it
without sslkit.

Both files are written to temporary names in the target directory, fsynced, then renamed
(:func:`sslkit.atomic_files.save_safetensors_with_json`), so a crash or error never leaves a half-written
file behind and an existing good backbone survives a failed save. A random ``save_id`` is stored in both
files so a JSON from one save cannot be silently paired with weights from another.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from pathlib import Path
from typing import Any, Sequence

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from sslkit.nn.state_dict_check import mismatch
from sslkit.atomic_files import save_safetensors_with_json
from sslkit.nn.bounds import is_finite
from sslkit.nn.timm_backbone import TimmBackbone, TimmBackboneConfig
from sslkit.nn.vit import ViT, ViTConfig

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "JSON_NAME", "WEIGHTS_NAME", "load_backbone", "save_backbone"]

FORMAT_NAME = "sslkit.backbone"
FORMAT_VERSION = 1
JSON_NAME = "backbone.json"
WEIGHTS_NAME = "backbone.safetensors"


def _as_float_list(name: str, values: Sequence[float], in_chans: int) -> list[float]:
    out = [float(v) for v in (values.tolist() if isinstance(values, torch.Tensor) else values)]
    if len(out) != in_chans or not all(math.isfinite(v) for v in out):
        raise ValueError(f"save_backbone: {name} must be {in_chans} finite numbers (one per input channel), got {out}.")
    return out


def _unwrap(model: Any) -> "ViT | TimmBackbone":
    # DDP / DataParallel keep the real model in .module; torch.compile in ._orig_mod
    for attr in ("module", "_orig_mod"):
        inner = getattr(model, attr, None)
        if isinstance(inner, (ViT, TimmBackbone)):
            return inner
    if not isinstance(model, (ViT, TimmBackbone)):
        raise TypeError(f"save_backbone expects an sslkit ViT or TimmBackbone, got {type(model).__name__}.")
    return model


def save_backbone(
    model: ViT,
    directory: str | os.PathLike,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``directory/backbone.safetensors`` and ``directory/backbone.json`` atomically.

    Args:
        model: the backbone (a DDP- or compile-wrapped ViT is unwrapped).
        directory: created if missing; usually the run directory.
        mean, std: per-channel input normalisation the backbone was trained with (length in_chans).
        extra: JSON-serialisable metadata (method, epochs, dataset, ...).

    Returns:
        The directory as a ``Path``; ``load_backbone`` accepts it directly.
    """
    from sslkit import __version__

    vit = _unwrap(model)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_id = uuid.uuid4().hex
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "sslkit_version": __version__,
        "save_id": save_id,
        "config": vit.config.to_dict(),
        "mean": _as_float_list("mean", mean, vit.config.in_chans),
        "std": _as_float_list("std", std, vit.config.in_chans),
        "extra": extra if extra is not None else {},
    }
    try:
        meta_text = json.dumps(meta, indent=2, allow_nan=False) + "\n"
    except (TypeError, ValueError) as err:  # serialise before touching the disk
        raise ValueError(f"save_backbone: extra must be JSON-serialisable ({err}).") from None
    # .contiguous() is a no-op for the usual contiguous parameters; safetensors requires it. A timm
    # backbone is saved as its plain timm model's state dict, so that timm alone loads it.
    state = vit.model.state_dict() if isinstance(vit, TimmBackbone) else vit.state_dict()
    tensors = {k: v.detach().contiguous() for k, v in state.items()}

    save_safetensors_with_json(directory, tensors, WEIGHTS_NAME, JSON_NAME, meta_text,
                               metadata={"format": FORMAT_NAME, "save_id": save_id}, fsync=True)
    return directory


def _resolve(path: Path) -> tuple[Path, Path]:
    """Return (json_path, weights_path) for a directory or either file of the pair."""
    if path.is_dir():
        json_path, weights_path = path / JSON_NAME, path / WEIGHTS_NAME
    elif path.suffix == ".json":
        json_path, weights_path = path, path.with_suffix(".safetensors")
    elif path.suffix == ".safetensors":
        json_path, weights_path = path.with_suffix(".json"), path
    elif not path.exists():
        raise FileNotFoundError(f"No backbone found at {path}: the path does not exist.")
    else:
        raise ValueError(f"Cannot load a backbone from {path}: pass a directory, a .json or a .safetensors file.")
    for p, what in ((json_path, "metadata"), (weights_path, "weights")):
        if not p.is_file():
            raise FileNotFoundError(
                f"Backbone {what} file {p} is missing; expected {JSON_NAME} and {WEIGHTS_NAME} side by side "
                f"(written by sslkit.nn.export.save_backbone)."
            )
    return json_path, weights_path


def _read_meta(json_path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise ValueError(f"Backbone metadata {json_path} is not valid JSON ({err}); re-export the backbone.") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise ValueError(f"{json_path} is not an sslkit backbone description (missing format {FORMAT_NAME!r}).")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"Backbone {json_path} has format version {version!r}, but this sslkit reads version "
            f"{FORMAT_VERSION}; upgrade sslkit or re-export the backbone."
        )
    for key in ("config", "mean", "std"):
        if key not in meta:
            raise ValueError(f"Backbone metadata {json_path} lacks the {key!r} entry; re-export the backbone.")
    if not isinstance(meta["config"], dict):
        raise ValueError(f"Backbone metadata {json_path} has a 'config' that is not a JSON object; re-export the backbone.")
    return meta


def _read_config(json_path: Path, meta: dict[str, Any]) -> "ViTConfig | TimmBackboneConfig":
    """The architecture in ``meta``, every value type- and range-checked (nothing is built yet)."""
    timm_config = meta["config"].get("kind") in ("timm", "sslkit_cnn")
    try:
        return TimmBackboneConfig.from_dict(meta["config"]) if timm_config else ViTConfig.from_dict(meta["config"])
    except (TypeError, ValueError) as err:
        reason = str(err).rstrip(".")
        raise ValueError(f"Backbone metadata {json_path} has an invalid config ({reason}); fix that value or "
                         f"re-export the backbone.") from None


def _check_normalisation(json_path: Path, meta: dict[str, Any], in_chans: int) -> None:
    """``mean`` and ``std`` must be ``in_chans`` finite numbers, std positive (it divides every pixel)."""
    for key in ("mean", "std"):
        values = meta[key]
        ok = (isinstance(values, list) and len(values) == in_chans
              and all(is_finite(v) for v in values))
        if ok and key == "std":
            ok = all(v > 0 for v in values)
        if not ok:
            what = "positive finite" if key == "std" else "finite"
            raise ValueError(f"Backbone metadata {json_path} has {key!r} = {values!r}, but it must be a list of "
                             f"{in_chans} {what} number{'s' if in_chans > 1 else ''} (one per input channel); fix it "
                             f"or re-export the backbone.")


def _weight_shapes(weights_path: Path) -> tuple[dict[str, str], dict[str, tuple[int, ...]]]:
    """The file metadata and every tensor's shape, read from the safetensors header alone (no tensor is loaded)."""
    try:
        with safe_open(str(weights_path), framework="pt") as f:
            return f.metadata() or {}, {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError) as err:
        raise ValueError(f"Backbone weights {weights_path} are unreadable ({err}); re-export the backbone.") from None


def load_backbone(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> "ViT | TimmBackbone":
    """Rebuild a :class:`ViT` (or a :class:`TimmBackbone`) saved by :func:`save_backbone`, in eval mode.

    The JSON is untrusted input: every config value, mean and std is checked first, the network is then
    built on the meta device and compared with the shapes in the safetensors header, and only a file that
    fits is read. So an absurd ``backbone.json`` (width 10⁹, negative depth) fails before anything is allocated.

    Args:
        path: the run directory holding ``backbone.json`` + ``backbone.safetensors``, or either file.
        map_location: device for the weights.

    Returns:
        The model, with ``model.meta = {"mean": [...], "std": [...], "extra": {...}}``.

    Raises:
        FileNotFoundError: either file is missing.
        ValueError: corrupt JSON or weights, unknown format version, bad config, mean or std, or weights that
            do not match the architecture (missing/unexpected keys, wrong shapes).
    """
    json_path, weights_path = _resolve(Path(path))
    meta = _read_meta(json_path)
    config = _read_config(json_path, meta)
    timm_config = isinstance(config, TimmBackboneConfig)
    _check_normalisation(json_path, meta, config.in_chans)

    file_meta, shapes = _weight_shapes(weights_path)
    if "save_id" in meta and file_meta.get("save_id") not in (None, meta["save_id"]):
        raise ValueError(
            f"{json_path} and {weights_path} come from different saves (save_id mismatch); re-export the backbone."
        )

    # Build on the meta device (no wasted random init), then adopt the loaded tensors.
    with torch.device("meta"):
        if timm_config:
            try:
                model = TimmBackbone(config.name, in_chans=config.in_chans, **config.kwargs)
            except (TypeError, ValueError, RuntimeError) as err:
                raise ValueError(f"Backbone metadata {json_path} names a timm model that cannot be built: {err}") from None
        else:
            model = ViT(config)
    target = model.model if timm_config else model
    problem = mismatch(shapes, {k: tuple(v.shape) for k, v in target.state_dict().items()})
    if problem:
        raise ValueError(f"Backbone weights {weights_path} do not match the architecture in {json_path}: {problem}.")
    try:
        state = load_file(str(weights_path), device=str(torch.device(map_location)))
    except (SafetensorError, OSError) as err:
        raise ValueError(f"Backbone weights {weights_path} are unreadable ({err}); re-export the backbone.") from None
    target.load_state_dict(state, strict=True, assign=True)
    model.meta = {"mean": meta["mean"], "std": meta["std"], "extra": meta.get("extra", {})}
    return model.eval()
