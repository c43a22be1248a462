"""Optimiser parameter groups with layer-wise lr decay, patch-embed lr and weight-decay masks.

Spec dinov2.md step 6; reference facebookresearch/dinov2 ``dinov2/utils/param_groups.py``:
lr multiplier ``decay^(L+1-id)`` with id 0 for embeddings and tokens, ``i+1`` for block ``i`` and
``L+1`` for everything after the blocks (so heads get 1); patch-embed ×0.2; no weight decay on
biases and on names containing ``norm`` or ``gamma``. Parameters are grouped by identical
multipliers so the optimiser keeps a handful of groups, not one per tensor.
"""

from __future__ import annotations

from torch import nn


def no_weight_decay(name: str, param: nn.Parameter) -> bool:
    """Biases, norms and LayerScale gammas are not decayed: the dinov2 reference's rule by name, plus every
    1-D parameter, so that BatchNorm scales named by position (``projector.net.1.weight``) are exempt
    too, as in google-research/simclr and facebookresearch/vicreg (LARS excludes BatchNorm and biases).
    On a ViT the two rules pick the same parameters."""
    return name.endswith(".bias") or "norm" in name or "gamma" in name or param.ndim <= 1


def dinov2_param_groups(student: nn.ModuleDict, layer_decay: float = 0.9, patch_embed_lr_mult: float = 0.2) -> list[dict]:
    """Groups for ``student = {"backbone": ViT, "dino_head": ..., ["ibot_head": ...]}``.

    Each group carries ``lr_multiplier``, ``wd_multiplier``, ``is_last_layer`` and ``is_backbone``; the engine
    sets ``lr = lr_t · lr_multiplier`` (× 0 for the last layer, or the backbone, while it is frozen) and
    ``weight_decay = wd_t · wd_multiplier`` every step.
    """
    backbone = student["backbone"]
    # Layer-wise decay needs ViT blocks; other backbones (timm CNNs) get multiplier 1 (config validation
    # requires optim.layer_decay=1 for them).
    vit = hasattr(backbone, "layer_id") and hasattr(backbone, "blocks")
    depth = len(backbone.blocks) if vit else 0
    groups: dict[tuple, dict] = {}
    for module_name, module in student.items():
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            if module_name == "backbone" and vit:
                layer = backbone.layer_id(name)
                lr_mult = layer_decay ** (depth + 1 - layer)
                if name.startswith("patch_embed"):
                    lr_mult *= patch_embed_lr_mult
            else:
                lr_mult = 1.0
            wd_mult = 0.0 if no_weight_decay(name, param) else 1.0
            last = "last_layer" in name
            in_backbone = module_name == "backbone"
            key = (lr_mult, wd_mult, last, in_backbone)
            if key not in groups:
                groups[key] = {"params": [], "names": [], "lr_multiplier": lr_mult, "wd_multiplier": wd_mult,
                               "is_last_layer": last, "is_backbone": in_backbone}
            groups[key]["params"].append(param)
            groups[key]["names"].append(f"{module_name}.{name}")
    return list(groups.values())
