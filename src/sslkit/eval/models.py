"""What ``sslkit evaluate MODEL`` can evaluate, and its frozen features, cached on disk.

A model ``spec`` is one of

* an sslkit run directory, or its ``backbone.safetensors`` / ``backbone.json`` (``sslkit pretrain`` output);
* ``timm:<name>`` — any timm architecture, randomly initialised under a fixed seed (nothing is downloaded),
  or ``timm:<name>@/path/weights.safetensors`` with weights from a local safetensors file;
* a features file: ``.safetensors`` holding ``features`` (n, D) [+ ``labels`` (n,)], or per split
  ``train.features`` / ``train.labels`` / ``test.features`` / ... ;
* in Python also an ``nn.Module`` or any callable mapping images (B, C, H, W) to (B, D) or (B, N, D).

:func:`compute_features` turns (spec, data, split, pooling) into ``(features, labels)`` and stores the result
as safetensors under a key that hashes the model weights, the data, the transform and the pooling, so a second
evaluation of the same thing reads the file instead of running the network.

Example::

    x, y = compute_features("runs/tiny-shapes", "shapes", split="test", pooling="cls+mean")
    x, y = compute_features("timm:resnet18", "digits", split="train", pooling="mean")
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from sslkit.config import ConfigError
from sslkit.data.errors import DataError

__all__ = [
    "POOLINGS",
    "Encoder",
    "FeatureSet",
    "ImageCorruption",
    "ModelSpecError",
    "compute_features",
    "default_cache_dir",
    "feature_set",
    "is_features_file",
    "load_encoder",
    "open_eval_data",
    "pool_tokens",
]

POOLINGS = ("cls", "mean", "cls+mean", "patch")
# Bump when the meaning of cached features changes (pooling code, transform): old cache files are then ignored.
CACHE_FORMAT = 1
_RANDOM_INIT_SEED = 0

ModelLike = Union[str, os.PathLike, nn.Module, Callable[[torch.Tensor], Any], "Encoder"]


class ModelSpecError(ConfigError):
    """A model argument that cannot be evaluated: not an sslkit run, an unknown timm name, a bad weights file,
    or a model whose output is not (B, D) or (B, N, D). Subclasses ConfigError so the CLI prints it as one line."""


# --------------------------------------------------------------------------------------------- encoders


@dataclass
class Encoder:
    """A frozen image model and what it expects as input.

    Attributes:
        name: short display name (run directory name, ``timm:resnet18``, class name).
        kind: ``"sslkit"``, ``"timm"`` or ``"module"``.
        module: the network (or plain callable), already in eval mode.
        fingerprint: hex digest that changes whenever the weights change (part of the cache key).
        in_chans: input channels the model takes (None: whatever the data has).
        image_size: input side length the model prefers (None: keep the data's size).
        mean, std: normalisation the model was trained with (None: use the dataset's statistics).
        n_prefix: leading non-patch tokens in a ViT sequence (CLS + registers); 0 for CNNs.
        description: one line for reports.
    """

    name: str
    kind: str
    module: Any
    fingerprint: str
    in_chans: Optional[int] = None
    image_size: Optional[int] = None
    mean: Optional[tuple] = None
    std: Optional[tuple] = None
    description: str = ""
    meta: dict = field(default_factory=dict)

    @torch.no_grad()
    def tokens(self, images: torch.Tensor, n_last_blocks: int = 1) -> dict[str, torch.Tensor]:
        """Run the model on normalised images (B, C, H, W).

        Returns a dict with some of ``cls`` (B, D) — or (B, n_last_blocks·D) when ``n_last_blocks > 1`` —,
        ``patch`` (B, N, D) and ``pooled`` (B, D) (a model's own pooled output, e.g. a CNN's global average pool
        or a user module's (B, D) output).
        """
        if self.kind == "sslkit":
            return _vit_tokens(self.module, images, n_last_blocks, sslkit_vit=True)
        if self.kind == "timm":
            return _timm_tokens(self.module, images, n_last_blocks)
        return _module_tokens(self.module, images, self.name)


def _vit_tokens(model: nn.Module, images: torch.Tensor, n_last_blocks: int, sslkit_vit: bool) -> dict:
    if n_last_blocks <= 1:
        if sslkit_vit:
            out = model.forward_features(images)
            return {"cls": out["cls"], "patch": out["patch"]}
        tokens = model.forward_features(images)  # (B, T, D) after the final norm
        return {"cls": tokens[:, 0], "patch": tokens[:, model.num_prefix_tokens:]}
    depth = len(model.blocks)
    if n_last_blocks > depth:
        raise ModelSpecError(f"n_last_blocks={n_last_blocks} exceeds the model depth {depth}; use at most {depth}.")
    # DINOv2 linear evaluation (facebookresearch/dinov2 dinov2/eval/linear.py, create_linear_input):
    # class tokens of the last n blocks, each through the final norm, concatenated; patch tokens of the last block.
    inter = model.forward_intermediates(images, indices=n_last_blocks, norm=True, output_fmt="NLC",
                                        return_prefix_tokens=True, intermediates_only=True)
    cls = torch.cat([prefix[:, 0] for _, prefix in inter], dim=1)
    return {"cls": cls, "patch": inter[-1][0]}


def _timm_tokens(model: nn.Module, images: torch.Tensor, n_last_blocks: int) -> dict:
    if hasattr(model, "blocks") and hasattr(model, "num_prefix_tokens") and model.num_prefix_tokens > 0:
        return _vit_tokens(model, images, n_last_blocks, sslkit_vit=False)
    if n_last_blocks > 1:
        raise ModelSpecError(f"n_last_blocks={n_last_blocks} needs a ViT with a class token; "
                             f"{type(model).__name__} has none.")
    fmap = model.forward_features(images)
    if fmap.ndim == 4:  # CNN feature map (B, C, H, W)
        pooled = model.forward_head(fmap, pre_logits=True)
        return {"pooled": pooled.flatten(1), "patch": fmap.flatten(2).transpose(1, 2)}
    if fmap.ndim == 3:  # token models without a class token (e.g. global-average-pooled ViTs)
        return {"pooled": model.forward_head(fmap, pre_logits=True), "patch": fmap}
    raise ModelSpecError(f"timm model {type(model).__name__} returned features of shape {tuple(fmap.shape)}; "
                         "expected (B, C, H, W) or (B, N, D).")


def _module_tokens(module: Any, images: torch.Tensor, name: str) -> dict:
    out = module(images)
    if isinstance(out, dict) and ("cls" in out or "patch" in out):  # an sslkit-style forward_features dict
        return {k: out[k] for k in ("cls", "patch") if k in out and isinstance(out[k], torch.Tensor)}
    if not isinstance(out, torch.Tensor) or out.ndim not in (2, 3) or out.shape[0] != images.shape[0]:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelSpecError(f"Model {name} returned {shape} for a batch of {images.shape[0]} images; "
                             "it must return features (B, D) or tokens (B, N, D).")
    return {"pooled": out} if out.ndim == 2 else {"patch": out}


def pool_tokens(tokens: dict[str, torch.Tensor], pooling: str, model_name: str = "the model") -> torch.Tensor:
    """Features from a :meth:`Encoder.tokens` dict.

    ``cls``: the class token (for models without one, their own pooled output); ``mean``: mean of the patch
    tokens; ``cls+mean``: both concatenated (DINOv2 linear evaluation, arXiv 2304.07193); ``patch``: the patch
    tokens themselves, (B, N, D), for dense tasks.
    """
    if pooling not in POOLINGS:
        raise ModelSpecError(f"Unknown pooling {pooling!r}; choose one of {list(POOLINGS)}.")
    cls = tokens.get("cls", tokens.get("pooled"))
    patch = tokens.get("patch")
    if pooling == "cls":
        if cls is None:
            raise ModelSpecError(f"{model_name} returns tokens (B, N, D) without a class token; "
                                 "use pooling 'mean' or 'patch'.")
        return cls
    if patch is None:
        raise ModelSpecError(f"{model_name} returns pooled features (B, D) only; pooling {pooling!r} needs "
                             "patch tokens, use pooling 'cls'.")
    if pooling == "patch":
        return patch
    mean = patch.mean(dim=1)
    if pooling == "mean":
        return mean
    if "cls" not in tokens:
        raise ModelSpecError(f"{model_name} has no class token; pooling 'cls+mean' needs one, use 'mean'.")
    return torch.cat([tokens["cls"], mean], dim=1)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _sha256_module(module: Any) -> str:
    digest = hashlib.sha256()
    digest.update(f"{type(module).__module__}.{type(module).__qualname__}".encode())
    if isinstance(module, nn.Module):
        for key, value in module.state_dict().items():
            digest.update(key.encode())
            digest.update(str(tuple(value.shape)).encode())
            digest.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    else:
        # A plain function: its code is its identity (e.g. sslkit.eval.features.raw_pixels).
        code = getattr(module, "__code__", None)
        digest.update(getattr(module, "__qualname__", repr(module)).encode())
        if code is not None:
            digest.update(code.co_code)
            digest.update(repr(code.co_consts).encode())
    return digest.hexdigest()


def is_features_file(spec: Any) -> bool:
    """True if ``spec`` names a ``.safetensors`` file holding a ``features`` tensor (plain or per split)."""
    if not isinstance(spec, (str, os.PathLike)) or str(spec).startswith("timm:"):
        return False
    path = Path(spec)
    if path.suffix != ".safetensors" or not path.is_file():
        return False
    return any(k == "features" or k.endswith(".features") for k in _safetensors_keys(path))


def _safetensors_keys(path: Path) -> list[str]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return list(f.keys())
    except (SafetensorError, OSError) as err:
        raise ModelSpecError(f"{path} is not a readable safetensors file ({err}).") from None


def _load_sslkit(path: Path, device: str) -> Encoder:
    from sslkit.nn.export import JSON_NAME, WEIGHTS_NAME, load_backbone

    json_path = path / JSON_NAME if path.is_dir() else path.with_suffix(".json")
    weights = path / WEIGHTS_NAME if path.is_dir() else path.with_suffix(".safetensors")
    if not json_path.is_file() or not weights.is_file():
        where = "directory" if path.is_dir() else "file"
        raise ModelSpecError(
            f"{path} is not an sslkit run: the {where} has no {JSON_NAME} + {WEIGHTS_NAME} pair (written by "
            "`sslkit pretrain`); pass a run directory, timm:<name>[@weights.safetensors] or a features .safetensors file.")
    try:
        model = load_backbone(path, map_location=device)
    except ValueError as err:
        raise ModelSpecError(f"{path} is not a loadable sslkit backbone: {err}") from None
    cfg = model.config
    name = path.name if path.is_dir() else path.parent.name
    if getattr(model, "is_vit", True) is False:  # a timm backbone pretrained by sslkit (model.arch=timm:NAME)
        image_size = model.meta.get("extra", {}).get("image_size")
        return Encoder(name=name, kind="timm", module=model.model, fingerprint=_sha256_file(weights),
                       in_chans=cfg.in_chans, image_size=int(image_size) if image_size else None,
                       mean=tuple(model.meta["mean"]), std=tuple(model.meta["std"]),
                       description=f"sslkit-pretrained timm {cfg.name} ({model.embed_dim}-d) from {path}",
                       meta={"extra": model.meta.get("extra", {}), "path": str(path)})
    # A run records the resolution it ended at (its last curriculum stage); older exports only the ViT's size.
    image_size = int(model.meta.get("extra", {}).get("image_size") or cfg.img_size)
    return Encoder(name=name, kind="sslkit", module=model, fingerprint=_sha256_file(weights),
                   in_chans=cfg.in_chans, image_size=image_size, mean=tuple(model.meta["mean"]),
                   std=tuple(model.meta["std"]),
                   description=f"sslkit ViT (D={cfg.embed_dim}, depth {cfg.depth}, patch {cfg.patch_size}, "
                               f"{cfg.num_registers} registers) from {path}",
                   meta={"extra": model.meta.get("extra", {}), "path": str(path)})


def _strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # Weights saved from a wrapped model (DDP, Lightning, torch.compile) carry a prefix on every key.
    for prefix in ("module.", "model.", "_orig_mod.", "backbone."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def _load_timm(spec: str, in_chans: Optional[int], device: str) -> Encoder:
    import timm

    body = spec[len("timm:"):]
    name, _, weights = body.partition("@")
    if not name:
        raise ModelSpecError(f"Model {spec!r} names no architecture; write e.g. timm:resnet18.")
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('_')[0]}*")[:8]
        raise ModelSpecError(f"timm has no model {name!r}" + (f"; similar names: {close}" if close else "") + ".")
    state = None
    if weights:
        weights_path = Path(weights).expanduser()
        if not weights_path.is_file():
            raise ModelSpecError(f"Weights file {weights_path} for {name} does not exist; pass a local .safetensors file.")
        if weights_path.suffix != ".safetensors":
            raise ModelSpecError(f"Weights file {weights_path} is not .safetensors; sslkit never unpickles weights, "
                                 "convert it with safetensors.torch.save_file first.")
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = _strip_prefixes(load_file(str(weights_path), device=device))
        except (SafetensorError, OSError) as err:
            raise ModelSpecError(f"Weights file {weights_path} is unreadable ({err}).") from None
    # Offline by construction: pretrained=False never touches a hub. The random init is seeded, without
    # disturbing the caller's global RNG, so "timm:resnet18" always means the same network.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_RANDOM_INIT_SEED)
        probe = timm.create_model(name, pretrained=False, num_classes=0)
        first_conv = probe.pretrained_cfg.get("first_conv")
        if state is not None:
            conv = state.get(f"{first_conv}.weight") if isinstance(first_conv, str) else None
            chans = int(conv.shape[1]) if conv is not None and conv.ndim == 4 else 3
        else:
            chans = in_chans or 3
        model = probe if chans == 3 else timm.create_model(name, pretrained=False, num_classes=0, in_chans=chans)
    cfg = dict(model.pretrained_cfg)
    if state is not None:
        classifier = cfg.get("classifier")
        heads = (classifier,) if isinstance(classifier, str) else tuple(classifier or ())
        state = {k: v for k, v in state.items() if not any(k.startswith(h + ".") for h in heads)}
        result = model.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise ModelSpecError(
                f"Weights {weights} do not fit timm:{name}: missing {result.missing_keys[:5]}, "
                f"unexpected {result.unexpected_keys[:5]}; check the architecture name.")
        fingerprint = _sha256_file(Path(weights).expanduser())
        mean, std = (tuple(cfg["mean"]), tuple(cfg["std"])) if chans == 3 and "mean" in cfg else (None, None)
        image_size = int(cfg["input_size"][-1]) if "input_size" in cfg else None
        init = f"weights {weights}"
    else:
        fingerprint = hashlib.sha256(
            f"timm:{name}:random{_RANDOM_INIT_SEED}:in{chans}:timm{timm.__version__}:torch{torch.__version__}".encode()
        ).hexdigest()
        # Random weights know no training statistics: normalise with the dataset's own.
        mean = std = None
        image_size = int(cfg["input_size"][-1]) if cfg.get("fixed_input_size") and "input_size" in cfg else None
        init = f"random init (seed {_RANDOM_INIT_SEED})"
    model = model.to(device).eval()
    n_params = sum(p.numel() for p in model.parameters())
    return Encoder(name=f"timm:{name}", kind="timm", module=model, fingerprint=fingerprint, in_chans=chans,
                   image_size=image_size, mean=mean, std=std,
                   description=f"timm {name} ({n_params / 1e6:.2f} M parameters), {init}",
                   meta={"weights": weights or None})


def load_encoder(spec: ModelLike, in_chans: Optional[int] = None, device: str = "cpu", name: Optional[str] = None) -> Encoder:
    """Build an :class:`Encoder` from a model spec (see the module docstring).

    Args:
        spec: run directory / backbone file, ``timm:<name>[@weights.safetensors]``, an ``nn.Module`` or a callable.
        in_chans: channels of the data to evaluate on; a randomly initialised timm model is built for it.
        device: where the model runs.
        name: display name for a module or callable.

    Raises:
        ModelSpecError: the spec cannot be loaded (one sentence naming it and what to pass instead).
    """
    if isinstance(spec, Encoder):
        return spec
    if isinstance(spec, (str, os.PathLike)):
        text = str(spec)
        if text.startswith("timm:"):
            return _load_timm(text, in_chans, device)
        path = Path(text).expanduser()
        if not path.exists():
            raise ModelSpecError(f"Model {text!r} does not exist; pass an sslkit run directory, "
                                 "timm:<name>[@weights.safetensors] or a features .safetensors file.")
        if path.suffix == ".ckpt":
            raise ModelSpecError(f"{path} is a training checkpoint, not an exported backbone; pass its run "
                                 "directory (the one holding backbone.safetensors).")
        if is_features_file(path):
            raise ModelSpecError(f"{path} is a features file, not a model; use compute_features on it directly.")
        if path.is_file() and path.suffix not in (".safetensors", ".json"):
            raise ModelSpecError(f"{path} is not an sslkit run: pass a run directory, timm:<name> or a "
                                 "features .safetensors file.")
        return _load_sslkit(path, device)
    if isinstance(spec, nn.Module) or callable(spec):
        label = name or getattr(spec, "__name__", None) or type(spec).__name__
        if isinstance(spec, nn.Module):
            spec = spec.to(device).eval()
        from sslkit.nn.vit import ViT

        if isinstance(spec, ViT):  # an in-memory sslkit backbone: read its token dict, not just forward()
            meta = getattr(spec, "meta", {}) or {}
            return Encoder(name=label, kind="sslkit", module=spec, fingerprint=_sha256_module(spec),
                           in_chans=spec.config.in_chans, image_size=spec.config.img_size,
                           mean=tuple(meta["mean"]) if "mean" in meta else None,
                           std=tuple(meta["std"]) if "std" in meta else None, description=f"sslkit ViT {label}")
        if isinstance(spec, nn.Module) and type(spec).__module__.startswith("timm.") and hasattr(spec, "forward_features"):
            return Encoder(name=label, kind="timm", module=spec, fingerprint=_sha256_module(spec),
                           in_chans=None, description=f"timm model {label}")
        return Encoder(name=label, kind="module", module=spec, fingerprint=_sha256_module(spec),
                       in_chans=getattr(spec, "in_chans", None), description=f"user model {label}")
    raise ModelSpecError(f"Cannot evaluate a {type(spec).__name__}; pass a run directory, timm:<name>, "
                         "a features file, an nn.Module or a callable.")


# --------------------------------------------------------------------------------------------- data


@dataclass
class EvalData:
    """The labelled splits of a data source for frozen-feature evaluation (images in [0, 1], untransformed)."""

    source: str
    splits: dict  # name -> Dataset
    channels: int
    num_classes: Optional[int]
    class_names: Optional[list]
    mean: tuple
    std: tuple
    image_size: int
    options: dict
    fingerprint: str
    builtin: bool = False


def _folder_fingerprint(dataset: Dataset) -> str:
    """Digest of the image files behind a folder / path-list dataset (paths, sizes, modification times)."""
    base = dataset
    while hasattr(base, "dataset"):
        base = base.dataset
    digest = hashlib.sha256()
    for p in getattr(base, "paths", []):
        try:
            st = os.stat(p)
            digest.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{p}\0missing\n".encode())
    digest.update(json.dumps(list(getattr(base, "labels", [])), default=str).encode())
    return digest.hexdigest()


def open_eval_data(data: str, image_size: Optional[int] = None, options: Optional[dict] = None) -> EvalData:
    """Open ``data`` ('shapes', 'digits', a folder or a path list) with ``train`` and ``test`` splits.

    Built-in sets use their fixed train/test splits; a labelled folder uses ``open_data``'s seeded 90/10
    hold-out (seed 0); an unlabelled folder has only ``train`` (all images).
    """
    from sslkit import __version__
    from sslkit.data.builtin import BUILTIN_DATASETS
    from sslkit.data.sources import open_data

    options = dict(options or {})
    builtin = data in BUILTIN_DATASETS
    # Default input side: the built-in sets' native 32 px; DINOv2's 224 px centre crop for image folders.
    size = int(image_size or options.pop("image_size", None) or (32 if builtin else 224))
    options.pop("image_size", None)
    allowed = {"num_samples", "background", "background_noise", "channels", "stats", "holdout_fraction", "seed"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ConfigError(f"Unknown data option(s) {unknown}; allowed: {sorted(allowed)}.")
    splits = open_data(data, image_size=size, **options)
    named = {"train": splits.bank if splits.bank is not None else splits.train}
    if splits.queries is not None:
        named["test"] = splits.queries
    digest = hashlib.sha256(json.dumps({"source": data, "size": size, "options": options}, sort_keys=True,
                                       default=str).encode())
    if builtin:
        digest.update(f"sslkit{__version__}".encode())  # rendered by code: a new version may draw differently
    else:
        digest.update(str(Path(data).resolve()).encode())
        digest.update(_folder_fingerprint(splits.train).encode())
    return EvalData(source=data, splits=named, channels=splits.channels, num_classes=splits.num_classes,
                    class_names=splits.class_names, mean=tuple(splits.mean), std=tuple(splits.std),
                    image_size=size, options=options, fingerprint=digest.hexdigest(), builtin=builtin)


class _ChannelAdapter:
    """Grey images to a 3-channel model: repeat the channel (before normalisation, so the model's RGB stats apply)."""

    def __init__(self, data_chans: int, model_chans: Optional[int], model_name: str):
        if model_chans is not None and data_chans != model_chans and not (data_chans == 1 and model_chans == 3):
            raise ModelSpecError(f"{model_name} takes {model_chans}-channel images but the data has {data_chans} "
                                 "channels; evaluate it on data with matching channels.")
        self.repeat = model_chans == 3 and data_chans == 1

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return image.repeat(3, 1, 1) if self.repeat else image


class _EvalView(Dataset):
    """Items as (normalised image, label) for the feature pass."""

    def __init__(self, dataset: Dataset, adapter: _ChannelAdapter, transform: Callable,
                 corruption: Optional["ImageCorruption"] = None):
        self.dataset, self.adapter, self.transform = dataset, adapter, transform
        self.corruption = corruption

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        item = self.dataset[index]
        label = item.get("label")
        image = item["image"]
        if self.corruption is not None:  # on the data's own channels, before resizing and normalising
            image = self.corruption(image, index)
        return self.transform(self.adapter(image)), -1 if label is None else int(label)


@dataclass(frozen=True)
class ImageCorruption:
    """An ImageNet-C-style corruption (``sslkit.data.corruptions``) applied to every evaluation image.

    Image ``i`` is corrupted with a generator seeded from (``seed``, ``i``), so the corrupted set is the same
    whatever the batch size, worker count or order. ``severity`` 0 is the identity.
    """

    name: str
    severity: int
    seed: int = 0

    def __post_init__(self) -> None:
        from sslkit.data.corruptions import CORRUPTIONS

        if self.name not in CORRUPTIONS:
            raise ConfigError(f"Unknown corruption {self.name!r}; choose from {sorted(CORRUPTIONS)}.")
        if not 0 <= int(self.severity) <= 5:
            raise ConfigError(f"Corruption severity must be 0..5, got {self.severity}.")

    def __call__(self, image: torch.Tensor, index: int) -> torch.Tensor:
        from sslkit.data.corruptions import corrupt

        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + int(index))
        return corrupt(image.float().clamp(0, 1), self.name, int(self.severity), generator)

    def cache_part(self) -> dict:
        from sslkit.data.corruptions import CORRUPTIONS_VERSION

        return {"name": self.name, "severity": int(self.severity), "seed": self.seed, "version": CORRUPTIONS_VERSION}


# --------------------------------------------------------------------------------------------- features


@dataclass
class FeatureSet:
    """Frozen features of one split.

    Attributes:
        features: (n, D) float32, or (n, N, D) for pooling ``patch``.
        labels: (n,) int64, −1 where unlabelled.
        info: how they were made (model, data, split, transform, pooling, cache hit, seconds).
    """

    features: torch.Tensor
    labels: torch.Tensor
    info: dict


def default_cache_dir() -> Path:
    """``$SSLKIT_CACHE_DIR`` or ``~/.cache/sslkit/features``."""
    env = os.environ.get("SSLKIT_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sslkit" / "features"


def _cache_key(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _write_safetensors_atomic(tensors: dict, path: Path, metadata: dict) -> None:
    from sslkit.atomic_files import save_safetensors_atomic

    save_safetensors_atomic(path, tensors, metadata)


def _read_cache(path: Path) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        return None
    try:
        tensors = load_file(str(path))
        return tensors["features"], tensors["labels"]
    except (SafetensorError, OSError, KeyError):
        return None  # a damaged cache entry is recomputed, never trusted


def _features_from_file(path: Path, split: str) -> FeatureSet:
    from safetensors.torch import load_file

    keys = _safetensors_keys(path)
    if f"{split}.features" in keys:
        prefix = f"{split}."
    elif "features" in keys and split in ("test", "all"):
        prefix = ""
    else:
        have = sorted(k[: -len(".features")] for k in keys if k.endswith(".features"))
        raise ModelSpecError(
            f"Features file {path} has no {split!r} split (it holds "
            + (f"splits {have}" if have else "one plain 'features' set") + f"); store '{split}.features' "
            f"[+ '{split}.labels'] in it.")
    tensors = load_file(str(path))
    features = tensors[prefix + "features"].float()
    if features.ndim not in (2, 3):
        raise ModelSpecError(f"{path}: '{prefix}features' has shape {tuple(features.shape)}; expected (n, D).")
    labels = tensors.get(prefix + "labels")
    if labels is None:
        labels = torch.full((features.shape[0],), -1, dtype=torch.long)
    labels = labels.long().reshape(-1)
    if labels.shape[0] != features.shape[0]:
        raise ModelSpecError(f"{path}: {labels.shape[0]} labels for {features.shape[0]} feature rows.")
    info = {"model": str(path), "model_kind": "features-file", "split": split, "key": prefix + "features",
            "n": int(features.shape[0]), "dim": int(features.shape[-1]), "cache": "n/a", "seconds": 0.0}
    return FeatureSet(features, labels, info)


def _run_encoder(encoder: Encoder, dataset: Dataset, pooling: str, n_last_blocks: int, batch_size: int,
                 num_workers: int, device: str, progress: bool, description: str) -> tuple[torch.Tensor, torch.Tensor]:
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        generator=torch.Generator().manual_seed(0))
    feats, labels = [], []
    bar = None
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                       transient=True)
        task = bar.add_task(description, total=len(dataset))
        bar.start()
    try:
        for images, y in loader:
            out = pool_tokens(encoder.tokens(images.to(device), n_last_blocks), pooling, encoder.name)
            feats.append(out.float().cpu())
            labels.append(y.long())
            if bar is not None:
                bar.advance(task, images.shape[0])
    finally:
        if bar is not None:
            bar.stop()
    if not feats:
        raise DataError(f"{description}: the split is empty; there is nothing to evaluate.")
    return torch.cat(feats), torch.cat(labels)


def feature_set(spec: ModelLike, data: Union[str, EvalData], split: str = "test", pooling: str = "cls", *,
                n_last_blocks: int = 1, image_size: Optional[int] = None, data_options: Optional[dict] = None,
                batch_size: int = 128, num_workers: int = 0, device: str = "cpu",
                cache_dir: Union[str, os.PathLike, None, bool] = True, progress: bool = False,
                encoder: Optional[Encoder] = None, corruption: Optional[ImageCorruption] = None) -> FeatureSet:
    """Features of ``spec`` on one split of ``data`` with their provenance (see :func:`compute_features`).

    ``corruption``: corrupt every image first (robustness evaluation); it is part of the cache key."""
    if pooling not in POOLINGS:
        raise ModelSpecError(f"Unknown pooling {pooling!r}; choose one of {list(POOLINGS)}.")
    if is_features_file(spec):
        return _features_from_file(Path(spec), split)
    started = time.perf_counter()
    if encoder is None:
        if isinstance(spec, str) and spec.startswith("timm:") and "@" not in spec and not isinstance(data, EvalData):
            # A randomly initialised timm model is built for the data's channel count: open the data first.
            data = open_eval_data(data, image_size, data_options)
        encoder = load_encoder(spec, in_chans=data.channels if isinstance(data, EvalData) else None, device=device)
    # Built-in sets are rendered at the size an sslkit model was trained at; other models get the set's
    # default rendering, resized by the transform to the input size they need (e.g. 224 for a timm ViT).
    render_size = image_size or (encoder.image_size if encoder.kind == "sslkit" else None)
    if not isinstance(data, EvalData):
        data = open_eval_data(data, render_size, data_options)
    elif data.builtin and render_size and data.image_size != render_size:
        data = open_eval_data(data.source, render_size, data.options)
    size = int(image_size or encoder.image_size or data.image_size)
    if split not in data.splits:
        raise DataError(f"Data '{data.source}' has no {split!r} split (it has {sorted(data.splits)}); "
                        "an unlabelled folder has only 'train'.")
    dataset = data.splits[split]
    adapter = _ChannelAdapter(data.channels, encoder.in_chans, encoder.name)
    chans = 3 if adapter.repeat else data.channels
    if encoder.mean is not None:
        mean, std = tuple(encoder.mean), tuple(encoder.std)
    else:
        mean, std = tuple(data.mean), tuple(data.std)
        if adapter.repeat:
            mean, std = mean * 3, std * 3
    if len(mean) != chans:
        raise ModelSpecError(f"{encoder.name} normalises {len(mean)} channels but receives {chans}; "
                             "evaluate it on data with matching channels.")
    from sslkit.data.augment import EvalTransform

    transform = EvalTransform(size, mean, std)
    key_parts = {"format": CACHE_FORMAT, "model": encoder.fingerprint, "data": data.fingerprint, "split": split,
                 "transform": {"name": "resize-centre-crop", "size": size, "mean": mean, "std": std,
                               "repeat_grey": adapter.repeat},
                 "pooling": pooling, "n_last_blocks": n_last_blocks}
    if corruption is not None:  # absent otherwise, so clean features keep their existing cache keys
        key_parts["transform"]["corruption"] = corruption.cache_part()
    key = _cache_key(key_parts)
    info = {"model": encoder.name, "model_kind": encoder.kind, "model_description": encoder.description,
            "data": data.source, "split": split, "pooling": pooling, "n_last_blocks": n_last_blocks,
            "image_size": size, "mean": list(mean), "std": list(std), "cache_key": key}
    if corruption is not None:
        info["corruption"] = {"name": corruption.name, "severity": int(corruption.severity), "seed": corruption.seed}
    cache_path = None
    if cache_dir not in (None, False):
        cache_path = (default_cache_dir() if cache_dir is True else Path(cache_dir)) / f"{key}.safetensors"
        cached = _read_cache(cache_path)
        if cached is not None:
            features, labels = cached
            info.update(n=int(features.shape[0]), dim=int(features.shape[-1]), cache="hit",
                        cache_file=str(cache_path), seconds=time.perf_counter() - started)
            return FeatureSet(features, labels, info)
    view = _EvalView(dataset, adapter, transform, corruption)
    was_training = isinstance(encoder.module, nn.Module) and encoder.module.training
    if isinstance(encoder.module, nn.Module):
        encoder.module.eval()
    try:
        features, labels = _run_encoder(encoder, view, pooling, n_last_blocks, batch_size, num_workers, device,
                                        progress, f"{encoder.name} · {data.source}/{split}"
                                        + (f" · {corruption.name}@{corruption.severity}" if corruption else ""))
    finally:
        if was_training:
            encoder.module.train()
    if not torch.isfinite(features).all():
        raise ModelSpecError(f"{encoder.name} produced non-finite features on {data.source}/{split}; "
                             "check the weights.")
    if cache_path is not None:
        _write_safetensors_atomic({"features": features, "labels": labels}, cache_path,
                                  metadata={"sslkit_features": json.dumps(key_parts, default=str)})
    info.update(n=int(features.shape[0]), dim=int(features.shape[-1]), cache="miss" if cache_path else "off",
                cache_file=str(cache_path) if cache_path else None, seconds=time.perf_counter() - started)
    return FeatureSet(features, labels, info)


def compute_features(spec: ModelLike, data: Union[str, EvalData], split: str = "test", pooling: str = "cls", *,
                     n_last_blocks: int = 1, image_size: Optional[int] = None, data_options: Optional[dict] = None,
                     batch_size: int = 128, num_workers: int = 0, device: str = "cpu",
                     cache_dir: Union[str, os.PathLike, None, bool] = True,
                     progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Frozen features of a model on one split of a dataset.

    Args:
        spec: sslkit run directory (or ``backbone.safetensors``), ``timm:<name>`` (random init, seed 0),
            ``timm:<name>@/path/weights.safetensors``, a features ``.safetensors`` file (``data`` then unused),
            an ``nn.Module`` or a callable (images (B, C, H, W) → (B, D) or (B, N, D)), or an :class:`Encoder`.
        data: ``'shapes'``, ``'digits'``, an image folder, a .csv/.txt path list, or an opened ``EvalData``.
        split: ``'train'`` or ``'test'`` (a labelled folder: the 90 % / 10 % hold-out; a plain features file
            answers ``'test'``/``'all'`` with its one set).
        pooling: ``'cls'``, ``'mean'`` (patch tokens), ``'cls+mean'`` (DINOv2 linear eval) or ``'patch'``.
        n_last_blocks: for ViTs, concatenate the class tokens of the last n blocks (DINOv2 uses 4 for ViT-S/B).
        image_size: input side (default: the model's native size, else the data's size, else 32).
        data_options: extra ``open_data`` options (``num_samples``, ``background``, ``channels``, ``stats``).
        cache_dir: directory of the feature cache; ``True`` = :func:`default_cache_dir`, ``None``/``False`` = off.

    Returns:
        ``features`` (n, D) float32 — (n, N, D) for ``'patch'`` — and ``labels`` (n,) int64, −1 where unlabelled.
    """
    result = feature_set(spec, data, split, pooling, n_last_blocks=n_last_blocks, image_size=image_size,
                         data_options=data_options, batch_size=batch_size, num_workers=num_workers, device=device,
                         cache_dir=cache_dir, progress=progress)
    return result.features, result.labels


def save_features_file(path: Union[str, os.PathLike], splits: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> Path:
    """Write ``{split: (features, labels)}`` as a features file that ``compute_features``/``sslkit evaluate`` read."""
    tensors = {}
    for split, (features, labels) in splits.items():
        tensors[f"{split}.features"] = features.float()
        tensors[f"{split}.labels"] = labels.long()
    path = Path(path)
    _write_safetensors_atomic(tensors, path, metadata={"format": "sslkit.features"})
    return path


def encoder_summary(encoder: Encoder) -> dict:
    """JSON-friendly description of an encoder for reports."""
    return {"name": encoder.name, "kind": encoder.kind, "description": encoder.description,
            "fingerprint": encoder.fingerprint[:16], "in_chans": encoder.in_chans, "image_size": encoder.image_size,
            "mean": list(encoder.mean) if encoder.mean else None, "std": list(encoder.std) if encoder.std else None}

