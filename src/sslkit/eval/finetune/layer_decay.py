"""AdamW parameter groups with layer-wise learning-rate decay (BEiT, arXiv 2106.08254 Sec. 2.4; the DINOv2
fine-tuning of arXiv 2506.19552 uses decay 0.65).

Layer ids: 0 for the embedding stage, i for block i (1-based), L + 1 for what follows the blocks (final norm)
and for the task head; a parameter of layer id ``k`` learns at ``lr · decay^(L + 1 − k)``, so the head gets
the full rate, block i ``decay^(L + 1 − i)`` and the embeddings the lowest, ``decay^(L + 1)``.

On an sslkit ViT the ids come from :meth:`sslkit.nn.vit.ViT.layer_id` (the rule of the pretraining groups,
``sslkit.engine.param_groups``). timm's ``param_groups_layer_decay`` is not used for it: its ViT matcher
groups the final norm with the last block and gives every name it does not match (here ``mask_token``) the
top id, so the number of layers, and with it every block's rate, shifts with the unmatched names. Other timm
models take their ids from their own ``group_matcher`` (timm ``group_parameters``: 0 for the stem, one id per
block or stage), with the head one above the deepest group. Biases, norms, LayerScale gammas and other 1-D parameters get no weight decay
(``sslkit.engine.param_groups.no_weight_decay``).
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from sslkit.engine.param_groups import no_weight_decay

__all__ = ["backbone_layer_ids", "layer_decay_groups"]


def backbone_layer_ids(backbone: nn.Module) -> tuple[Callable[[str], int], int]:
    """(``name -> layer id``, L) for a backbone: L + 1 is the id of the head (see the module docstring)."""
    if hasattr(backbone, "layer_id") and hasattr(backbone, "config"):  # sslkit ViT
        return backbone.layer_id, backbone.config.depth
    if hasattr(backbone, "group_matcher"):  # timm models
        from timm.models import group_parameters

        layer_map = group_parameters(backbone, backbone.group_matcher(coarse=False), reverse=True)
        top = max(layer_map.values(), default=0)
        return (lambda name: layer_map.get(name, top)), top
    return (lambda name: 0), -1  # a plain module: one layer, so every rate is lr·decay^0 = lr


def layer_decay_groups(backbone: nn.Module, head: nn.Module, lr: float, weight_decay: float,
                       layer_decay: float) -> list[dict]:
    """AdamW groups over ``backbone`` and ``head``: each holds ``params``, ``lr`` (its peak rate),
    ``lr_scale`` (its multiplier of ``lr``), ``weight_decay``, ``layer`` and the parameter ``names``."""
    layer_of, depth = backbone_layer_ids(backbone)
    groups: dict[tuple, dict] = {}
    named = [(f"backbone.{n}", layer_of(n), p) for n, p in backbone.named_parameters()]
    named += [(f"head.{n}", depth + 1, p) for n, p in head.named_parameters()]
    for name, layer, param in named:
        if not param.requires_grad:
            continue
        scale = layer_decay ** (depth + 1 - layer)
        decay = 0.0 if no_weight_decay(name, param) else weight_decay
        group = groups.setdefault((layer, decay), {"params": [], "names": [], "lr": lr * scale, "lr_scale": scale,
                                                   "weight_decay": decay, "layer": layer})
        group["params"].append(param)
        group["names"].append(name)
    return sorted(groups.values(), key=lambda g: (g["layer"], g["weight_decay"]))
