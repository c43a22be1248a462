"""Frozen image models for evaluation: what a model ``spec`` names, how it is loaded, and its token outputs.

A model ``spec`` is one of

* an sslkit run directory, or its ``backbone.safetensors`` / ``backbone.json`` (``sslkit pretrain`` output);
* ``timm:<name>`` — any timm architecture, randomly initialised under a fixed seed (nothing is downloaded),
  or ``timm:<name>@/path/weights.safetensors`` with weights from a local safetensors file;
* ``vit:<path>`` — public ViT weights in any layout ``sslkit.nn.pretrained_weights`` reads (a timm checkpoint,
  the facebookresearch/dinov2 hub ``.pth``, a transformers ``Dinov2Model`` folder), shaped from the file;
* in Python also an ``nn.Module`` or any callable mapping images (B, C, H, W) to (B, D) or (B, N, D).

:func:`load_encoder` turns a spec into an :class:`Encoder`; :meth:`Encoder.tokens` runs it and
:func:`pool_tokens` turns its tokens into features. A features file (:mod:`sslkit.eval.features_file`) is
refused here: it holds features, not a model.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

import torch
from torch import nn

from sslkit.eval.errors import ModelSpecError
from sslkit.eval.features_file import is_features_file
from sslkit.training_loop import seeded

__all__ = ["POOLINGS", "Encoder", "ModelLike", "encoder_summary", "load_encoder", "pool_tokens"]

POOLINGS = ("cls", "mean", "cls+mean", "patch")
_RANDOM_INIT_SEED = 0

ModelLike = Union[str, os.PathLike, nn.Module, Callable[[torch.Tensor], Any], "Encoder"]


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


def _load_public_vit(spec: str, in_chans: Optional[int], device: str) -> Encoder:
    """``vit:PATH``: public ViT weights (timm checkpoint, facebookresearch/dinov2 hub .pth, transformers
    Dinov2Model folder) in an sslkit ViT shaped from the file, evaluated at 224 px with ImageNet statistics
    (DINOv2's evaluation setting), RGB filters summed for one-channel data."""
    from sslkit.nn.pretrained_weights import WeightsError, vit_from_weights

    path = Path(spec[len("vit:"):]).expanduser()
    try:
        model, info = vit_from_weights(path, in_chans=in_chans or 3)
    except WeightsError as err:
        raise ModelSpecError(f"Model {spec!r}: {err}") from None
    channels = model.config.in_chans
    mean, std = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)) if channels == 3 else ((0.449,), (0.226,))
    size = 224 if 224 % model.patch_size == 0 else model.config.img_size
    c = model.config
    return Encoder(name=path.name, kind="sslkit", module=model.to(device), fingerprint=_sha256_module(model),
                   in_chans=channels, image_size=size, mean=mean, std=std,
                   description=f"public ViT weights ({info['layout']} layout): width {c.embed_dim}, depth {c.depth}, "
                               f"patch {c.patch_size}, {c.num_registers} registers, from {path}")


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
    with seeded(_RANDOM_INIT_SEED):
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
        if text.startswith("vit:"):
            return _load_public_vit(text, in_chans, device)
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


def encoder_summary(encoder: Encoder) -> dict:
    """JSON-friendly description of an encoder for reports."""
    return {"name": encoder.name, "kind": encoder.kind, "description": encoder.description,
            "fingerprint": encoder.fingerprint[:16], "in_chans": encoder.in_chans, "image_size": encoder.image_size,
            "mean": list(encoder.mean) if encoder.mean else None, "std": list(encoder.std) if encoder.std else None}
