"""An sslkit ViT written for other libraries (issue 21, item 6): a transformers ``Dinov2Model`` folder, or a timm
checkpoint with the ``timm.create_model`` arguments that rebuild it.

The inverse of the ``hf`` layout of :mod:`sslkit.nn.pretrained_weights`: ``qkv`` split into query/key/value,
LayerScale as ``layer_scale{1,2}.lambda1`` (ones when the ViT has none), the final norm as ``layernorm``;
``config.json`` carries the shape. ``Dinov2Model.from_pretrained(folder)`` then computes the sslkit ViT's
tokens (tested to 1e-5 at the native size). Register tokens have their own transformers class
(``Dinov2WithRegistersModel``), not written here: such a ViT is refused with one sentence.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from sslkit.atomic_files import save_safetensors_atomic, write_json_atomic

__all__ = ["hf_dinov2_state", "write_hf_dinov2", "timm_state", "write_timm"]


def hf_dinov2_state(model) -> tuple[dict[str, torch.Tensor], dict]:
    """(state dict in ``Dinov2Model``'s names, its ``config.json`` values) of the sslkit ViT ``model``."""
    c = model.config
    if c.num_registers:
        raise ValueError(f"This ViT has {c.num_registers} register tokens; transformers' Dinov2Model has none "
                         f"(its Dinov2WithRegistersModel is not written by sslkit yet): export --format timm.")
    own = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    dim = c.embed_dim
    state = {"embeddings.cls_token": own["cls_token"], "embeddings.mask_token": own["mask_token"].reshape(1, dim),
             "embeddings.position_embeddings": own["pos_embed"],
             "embeddings.patch_embeddings.projection.weight": own["patch_embed.proj.weight"],
             "embeddings.patch_embeddings.projection.bias": own["patch_embed.proj.bias"],
             "layernorm.weight": own["norm.weight"], "layernorm.bias": own["norm.bias"]}
    for i in range(c.depth):
        b, h = f"blocks.{i}.", f"encoder.layer.{i}."
        for kind in ("weight", "bias"):
            if f"{b}attn.qkv.{kind}" in own:
                q, k, v = own[f"{b}attn.qkv.{kind}"].chunk(3, dim=0)
                state |= {f"{h}attention.attention.query.{kind}": q.contiguous(),
                          f"{h}attention.attention.key.{kind}": k.contiguous(),
                          f"{h}attention.attention.value.{kind}": v.contiguous()}
            state |= {f"{h}norm1.{kind}": own[f"{b}norm1.{kind}"], f"{h}norm2.{kind}": own[f"{b}norm2.{kind}"],
                      f"{h}attention.output.dense.{kind}": own[f"{b}attn.proj.{kind}"],
                      f"{h}mlp.fc1.{kind}": own[f"{b}mlp.fc1.{kind}"], f"{h}mlp.fc2.{kind}": own[f"{b}mlp.fc2.{kind}"]}
        for n in (1, 2):
            gamma = own.get(f"{b}ls{n}.gamma")
            state[f"{h}layer_scale{n}.lambda1"] = gamma if gamma is not None else torch.ones(dim)
    hidden = own["blocks.0.mlp.fc1.weight"].shape[0]
    if hidden % dim:
        raise ValueError(f"The MLP width {hidden} is not a whole multiple of the width {dim}; transformers' "
                         f"Dinov2Config takes an integer mlp_ratio.")
    config = {"architectures": ["Dinov2Model"], "model_type": "dinov2", "hidden_size": dim,
              "num_hidden_layers": c.depth, "num_attention_heads": c.num_heads, "mlp_ratio": hidden // dim,
              "hidden_act": "gelu", "layer_norm_eps": 1e-6, "image_size": c.img_size, "patch_size": c.patch_size,
              "num_channels": c.in_chans, "qkv_bias": "blocks.0.attn.qkv.bias" in own,
              "layerscale_value": 1.0, "use_swiglu_ffn": False, "drop_path_rate": 0.0,
              "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    return state, config


def write_hf_dinov2(model, out: str | Path, extra: dict | None = None) -> Path:
    """Write ``out/config.json`` and ``out/model.safetensors`` (and ``out/sslkit.json`` with ``extra``: mean,
    std, source run) for ``Dinov2Model.from_pretrained(out)``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state, config = hf_dinov2_state(model)
    save_safetensors_atomic(out / "model.safetensors", state, metadata={"format": "pt"})
    write_json_atomic(out / "config.json", config)
    if extra:
        write_json_atomic(out / "sslkit.json", json.loads(json.dumps(extra, default=str)))
    return out


# timm's plain ViT entry, every shape argument overridden below (its own defaults are ViT-B/16's).
TIMM_BASE_NAME = "vit_base_patch16_224"


def timm_state(model) -> tuple[dict[str, torch.Tensor], dict]:
    """(timm state dict, ``timm.create_model`` keyword arguments) of the sslkit ViT ``model``.

    sslkit keeps DINOv2's position table (a class-token row, no register rows); timm's equivalent is
    ``no_embed_class=True``: the class token's (constant) position is folded into ``cls_token``.
    """
    c = model.config
    own = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k != "mask_token"}
    own["cls_token"] = (own["cls_token"] + own["pos_embed"][:, :1]).contiguous()
    own["pos_embed"] = own["pos_embed"][:, 1:].contiguous()
    hidden = own["blocks.0.mlp.fc1.weight"].shape[0]
    kwargs = {"img_size": c.img_size, "patch_size": c.patch_size, "in_chans": c.in_chans, "num_classes": 0,
              "embed_dim": c.embed_dim, "depth": c.depth, "num_heads": c.num_heads, "mlp_ratio": hidden / c.embed_dim,
              "qkv_bias": "blocks.0.attn.qkv.bias" in own, "init_values": c.layerscale_init or None,
              "reg_tokens": c.num_registers, "no_embed_class": True, "class_token": True,
              "dynamic_img_size": True}
    return own, kwargs


def write_timm(model, out: str | Path, extra: dict | None = None) -> Path:
    """Write ``out/model.safetensors`` and ``out/timm.json`` ({"model_name", "kwargs"}): then
    ``timm.create_model(model_name, pretrained=False, **kwargs).load_state_dict(load_file(...))``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state, kwargs = timm_state(model)
    save_safetensors_atomic(out / "model.safetensors", state, metadata={"format": "pt"})
    write_json_atomic(out / "timm.json", {"model_name": TIMM_BASE_NAME, "kwargs": kwargs,
                                           **json.loads(json.dumps(extra or {}, default=str))})
    return out
