"""Public ViT weights into an sslkit ViT: the three layouts people have on disk (issue 21, item 1).

- **timm** (a ``.safetensors``/``.pth`` state dict of e.g. ``vit_small_patch14_dinov2`` or
  ``vit_small_patch14_reg4_dinov2``): sslkit's ViT is a timm ``VisionTransformer``, so the names match; the
  register variants store no class-token position (``no_embed_class``: timm folded it into ``cls_token``),
  which becomes a zero row.
- **official** facebookresearch/dinov2 hub ``.pth`` (``dinov2_vits14_pretrain.pth``): ``register_tokens`` →
  ``reg_token``, ``mask_token`` (1, D) → (1, 1, D), chunked blocks ``blocks.<chunk>.<i>.`` → ``blocks.<i>.``;
  position table at 518 px (37 × 37 patches).
- **hf**: a ``transformers`` ``Dinov2Model`` directory (``config.json`` + ``model.safetensors``): embeddings,
  ``encoder.layer.N`` with separate query/key/value (concatenated into ``qkv``), ``layer_scale{1,2}.lambda1``,
  final ``layernorm``.

Then the table is fitted to the model being loaded: the patch rows of the position table are resampled to
its grid with DINOv2's own interpolation (:func:`sslkit.nn.vit.resample_patch_positions`, so features at the
new size equal the source model's run at that size), the patch-embedding filters to its patch size
(timm's ``resample_patch_embed``, FlexiViT's pseudo-inverse), and to one input channel by summing the RGB
filters (what timm does for ``in_chans=1``). Every key must be used and every parameter filled: anything
left over is one error naming the keys, never a partial load.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from sslkit.nn.state_dict_check import mismatch

__all__ = ["WeightsError", "read_weights", "convert_to_sslkit", "load_pretrained_vit", "vit_from_weights"]


class WeightsError(ValueError):
    """A weights file that cannot be read or does not fit the model; the message names the file and keys."""


# ---------------------------------------------------------------------------------------- reading

def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict | None]:
    """(state dict, transformers config or None) of a weights file or a transformers directory."""
    path = Path(path)
    if path.is_dir():
        config_file = path / "config.json"
        files = sorted(path.glob("*.safetensors")) or sorted(path.glob("pytorch_model*.bin"))
        if not config_file.is_file() or not files:
            raise WeightsError(f"Folder '{path}' is not a transformers model directory (config.json and "
                               f"model.safetensors); pass that folder, or a .safetensors/.pth file.")
        state: dict[str, torch.Tensor] = {}
        for file in files:
            state.update(_read_file(file))
        return state, json.loads(config_file.read_text(encoding="utf-8"))
    if not path.is_file():
        raise WeightsError(f"Weights '{path}' do not exist; pass a .safetensors/.pth file or a transformers folder.")
    return _read_file(path), None


def _read_file(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:  # never unpickles code: tensors and plain containers only
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - every reader failure becomes one sentence naming the file
        raise WeightsError(f"Cannot read weights '{path}' ({type(err).__name__}: {str(err).splitlines()[0]}); "
                           f"pass a .safetensors or a weights-only .pth state dict.") from None
    for key in ("model", "state_dict", "teacher", "student"):  # common wrappers of a state dict
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"Weights '{path}' hold no state dict of tensors.")
    return {_strip_prefix(k): v for k, v in state.items()}


def _strip_prefix(key: str) -> str:
    for prefix in ("module.", "backbone.", "encoder.backbone."):
        if key.startswith(prefix) and not key.startswith("encoder.layer"):
            return key[len(prefix):]
    return key


# ---------------------------------------------------------------------------------------- layouts

def detect_layout(state: dict[str, torch.Tensor], hf_config: dict | None) -> str:
    """'hf', 'official' or 'timm' from the keys (one error when it is none of them)."""
    if hf_config is not None or any(k.startswith("embeddings.patch_embeddings") for k in state):
        return "hf"
    if "patch_embed.proj.weight" not in state:
        shown = ", ".join(sorted(state)[:5])
        raise WeightsError(f"The weights are not a ViT in a layout sslkit reads (timm, facebookresearch/dinov2, "
                           f"transformers Dinov2Model): no 'patch_embed.proj.weight' (first keys: {shown}).")
    if "register_tokens" in state or "mask_token" in state or any(re.match(r"blocks\.\d+\.\d+\.", k) for k in state):
        return "official"
    return "timm"


def _hf_to_sslkit(state: dict[str, torch.Tensor], config: dict | None) -> dict[str, torch.Tensor]:
    if config and config.get("use_swiglu_ffn"):
        raise WeightsError("This Dinov2Model uses the SwiGLU feed-forward (ViT-g); sslkit's ViT has the plain MLP.")
    out: dict[str, torch.Tensor] = {}
    renames = {"embeddings.cls_token": "cls_token", "embeddings.mask_token": "mask_token",
               "embeddings.position_embeddings": "pos_embed", "embeddings.register_tokens": "reg_token",
               "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
               "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
               "layernorm.weight": "norm.weight", "layernorm.bias": "norm.bias"}
    inner = {"norm1": "norm1", "norm2": "norm2", "attention.output.dense": "attn.proj", "mlp.fc1": "mlp.fc1",
             "mlp.fc2": "mlp.fc2", "layer_scale1.lambda1": "ls1.gamma", "layer_scale2.lambda1": "ls2.gamma"}
    qkv: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if key in renames:
            out[renames[key]] = value
            continue
        match = re.match(r"encoder\.layer\.(\d+)\.(.+)\.(weight|bias|lambda1)$", key)
        if not match:
            out[key] = value  # left for the unused-key check
            continue
        i, name, kind = int(match.group(1)), match.group(2), match.group(3)
        qkv_part = re.match(r"attention\.attention\.(query|key|value)$", name)
        if qkv_part:
            qkv.setdefault((i, kind), {})[qkv_part.group(1)] = value
        elif kind == "lambda1":
            out[f"blocks.{i}.{inner[name + '.lambda1']}"] = value
        elif name in inner:
            out[f"blocks.{i}.{inner[name]}.{kind}"] = value
        else:
            out[key] = value
    for (i, kind), parts in qkv.items():
        if set(parts) != {"query", "key", "value"}:
            raise WeightsError(f"Layer {i} of the Dinov2Model has only {sorted(parts)} of query/key/value {kind}.")
        out[f"blocks.{i}.attn.qkv.{kind}"] = torch.cat([parts["query"], parts["key"], parts["value"]], dim=0)
    return out


def _official_to_sslkit(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        key = re.sub(r"^blocks\.\d+\.(\d+)\.", r"blocks.\1.", key)  # block chunks (FSDP layout)
        if key == "register_tokens":
            key = "reg_token"
        out[key] = value
    return out


def convert_to_sslkit(state: dict[str, torch.Tensor], layout: str, hf_config: dict | None = None
                      ) -> dict[str, torch.Tensor]:
    """The state dict in sslkit's (timm's) names, with ``mask_token`` as (1, 1, D) and a class-token row in
    ``pos_embed`` (sizes not yet fitted to a model)."""
    if layout == "hf":
        state = _hf_to_sslkit(state, hf_config)
    elif layout == "official":
        state = _official_to_sslkit(state)
    state = dict(state)
    if "mask_token" in state and state["mask_token"].ndim == 2:
        state["mask_token"] = state["mask_token"][None]
    pos = state.get("pos_embed")
    if pos is not None:
        n = pos.shape[1]
        if int(round(n ** 0.5)) ** 2 == n:  # no class-token row (timm's no_embed_class): it is in cls_token
            state["pos_embed"] = torch.cat([torch.zeros_like(pos[:, :1]), pos], dim=1)
    return state


# ---------------------------------------------------------------------------------------- fitting

def _fit(state: dict[str, torch.Tensor], model) -> dict[str, torch.Tensor]:
    """``state`` resized to ``model``: position grid, patch size, input channels."""
    from timm.layers import resample_patch_embed

    from sslkit.nn.vit import resample_patch_positions

    state = dict(state)
    weight = state.get("patch_embed.proj.weight")
    if weight is not None:
        target = model.patch_embed.proj.weight
        if weight.shape[-2:] != target.shape[-2:]:
            weight = resample_patch_embed(weight.float(), list(target.shape[-2:])).to(weight.dtype)
        if weight.shape[1] != target.shape[1]:
            if target.shape[1] != 1:
                raise WeightsError(f"The weights take {weight.shape[1]} input channels and the model "
                                   f"{target.shape[1]}; only 3 → 1 (summed RGB filters) is converted.")
            weight = weight.sum(dim=1, keepdim=True)
        state["patch_embed.proj.weight"] = weight
    pos = state.get("pos_embed")
    if pos is not None and pos.shape[1] != model.pos_embed.shape[1]:
        n0 = int(round((pos.shape[1] - 1) ** 0.5))
        state["pos_embed"] = resample_patch_positions(pos, (n0, n0), model.native_grid)
    return state


def load_pretrained_vit(model, path: str | Path) -> dict:
    """Load public weights at ``path`` (any of the three layouts) into the sslkit ViT ``model`` in place.

    Returns ``{"layout", "source", "resampled": [...]}``. Raises :class:`WeightsError` naming the file and
    the keys when a key is unused, a parameter is left unfilled or a shape cannot be fitted.
    """
    raw, hf_config = read_weights(path)
    layout = detect_layout(raw, hf_config)
    converted = convert_to_sslkit(raw, layout, hf_config)
    fitted = _fit(converted, model)
    # timm checkpoints have no mask token; sslkit's then stays zero, as DINOv2 initialises it
    problem = mismatch({k: tuple(v.shape) for k, v in fitted.items()},
                       {k: tuple(v.shape) for k, v in model.state_dict().items()}, frozenset({"mask_token"}))
    if problem:
        raise WeightsError(f"Weights '{path}' ({layout} layout) do not fit the model "
                           f"(embed_dim {model.embed_dim}, depth {len(model.blocks)}, "
                           f"{model.config.num_registers} registers): {problem}. Set model.* to the "
                           f"checkpoint's architecture.")
    model.load_state_dict(fitted, strict=False)
    resampled = [k for k in ("pos_embed", "patch_embed.proj.weight") if k in converted
                 and converted[k].shape != fitted[k].shape]
    return {"layout": layout, "source": str(path), "resampled": resampled}


def vit_from_weights(path: str | Path, in_chans: int = 3):
    """An sslkit ViT shaped like the checkpoint at ``path`` (width, depth, patch size, registers and native
    size read from its tensors; heads = width / 64, as every DINOv2 and timm ViT size), with its weights.

    For evaluating public weights without a recipe (``sslkit evaluate vit:PATH``). Returns ``(model, info)``.
    """
    from sslkit.nn.vit import ViT, ViTConfig

    raw, hf_config = read_weights(path)
    layout = detect_layout(raw, hf_config)
    state = convert_to_sslkit(raw, layout, hf_config)
    try:
        dim = int(state["cls_token"].shape[-1])
        patch = int(state["patch_embed.proj.weight"].shape[-1])
        depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
        grid = int(round((state["pos_embed"].shape[1] - 1) ** 0.5))
    except (KeyError, ValueError) as err:
        raise WeightsError(f"Weights '{path}' ({layout} layout) lack the tensors that give a ViT's shape ({err}).") from None
    heads = int(hf_config["num_attention_heads"]) if hf_config else max(1, dim // 64)
    registers = int(state["reg_token"].shape[1]) if "reg_token" in state else 0
    config = ViTConfig(img_size=grid * patch, patch_size=patch, embed_dim=dim, depth=depth, num_heads=heads,
                       in_chans=in_chans, num_registers=registers,
                       layerscale_init=1e-5 if "blocks.0.ls1.gamma" in state else None, drop_path_rate=0.0,
                       qkv_bias="blocks.0.attn.qkv.bias" in state)
    model = ViT(config)
    info = load_pretrained_vit(model, path)
    return model.eval(), info
