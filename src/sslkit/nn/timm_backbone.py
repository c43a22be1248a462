"""Any timm architecture as a pretraining backbone: ``model.arch=timm:NAME`` with ``model.timm_kwargs``.

sslkit's own ``ViT`` carries what DINOv2's iBOT and MAE need (a mask token, patch tokens, position
interpolation). Methods that only compare pooled embeddings — SimCLR, VICReg — run on any network, and
on a CPU budget a small CNN learns far more per second than a ViT. This wrapper gives them timm's
catalogue (huggingface/pytorch-image-models ``timm.create_model``) behind the interface the engine
reads: ``backbone(x)`` → (B, D) pooled features, ``forward_features(x)`` → ``{"cls": (B, D)}`` and
``embed_dim``.

The wrapped network is a plain timm model built with ``num_classes=0`` (its classifier replaced by the
identity, so its output is the pooled feature), and its ``state_dict`` is exported as is: the exported
``backbone.safetensors`` loads into ``timm.create_model(name, num_classes=0, in_chans=C, **kwargs)``
without sslkit (``backbone.json`` records name, channels and kwargs).

The same wrapper carries sslkit's own small CNN (``model.arch=cnn_small``, ``sslkit.nn.convnet``), the
backbone that learns fastest on a CPU at 16–32 px; its export records ``kind: sslkit_cnn``.

Example::

    net = TimmBackbone("resnet18", in_chans=1)
    features = net(torch.randn(8, 1, 32, 32))   # (8, 512)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from sslkit.nn.bounds import MAX_DEPTH, MAX_EMBED_DIM, MAX_IN_CHANS, is_int

__all__ = ["TIMM_PREFIX", "TimmBackbone", "TimmBackboneConfig", "is_pooled_arch", "is_timm_arch", "timm_kwargs_problem",
           "timm_name"]

TIMM_PREFIX = "timm:"


def is_timm_arch(arch: str) -> bool:
    return isinstance(arch, str) and arch.startswith(TIMM_PREFIX)


def is_pooled_arch(arch: str) -> bool:
    """A backbone without patch tokens: ``timm:NAME`` or one of sslkit's small CNNs (``cnn_small``)."""
    from sslkit.nn.convnet import SSLKIT_CNNS

    return is_timm_arch(arch) or arch in SSLKIT_CNNS


def timm_name(arch: str) -> str:
    """The network name inside ``model.arch``: the timm name after ``timm:``, or an sslkit CNN preset."""
    return arch[len(TIMM_PREFIX):] if is_timm_arch(arch) else arch


# timm keyword arguments that count blocks: their integers together must stay within MAX_DEPTH.
_DEPTH_KWARGS = ("depth", "depths", "layers")
_MAX_KWARG_ITEMS = 256


def _numbers(value: Any) -> list:
    """The numbers inside a kwarg value, nested lists/tuples flattened in order (iteratively: JSON may nest deep)."""
    out, stack = [], [value]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)):
            stack.extend(reversed(item))
        elif isinstance(item, (int, float)) and not isinstance(item, bool):
            out.append(item)
    return out


def timm_kwargs_problem(kwargs: dict[str, Any]) -> tuple[str, str] | None:
    """The first absurd ``timm.create_model`` keyword argument as ``(key, "must ..., got ...")``, or None.

    Shared by recipe validation (``model.timm_kwargs``) and :class:`TimmBackboneConfig` (``backbone.json``):
    every number is finite and within ±MAX_EMBED_DIM (widths, sizes, channels, ratios), block counts
    (``depth``/``depths``/``layers``) are whole numbers >= 0 summing to at most MAX_DEPTH, and no value holds
    more than 256 numbers, so an absurd value fails before timm builds anything.
    """
    for key, value in kwargs.items():
        numbers = _numbers(value)
        if len(numbers) > _MAX_KWARG_ITEMS:
            return key, f"holds {len(numbers)} numbers, more than the {_MAX_KWARG_ITEMS} any timm model takes"
        for n in numbers:
            if not abs(n) <= MAX_EMBED_DIM:  # false for NaN too; no float() of a huge int
                return key, f"must hold finite numbers within ±{MAX_EMBED_DIM}, got {n!r}"
        if key in _DEPTH_KWARGS and (not all(is_int(n) and n >= 0 for n in numbers) or sum(numbers) > MAX_DEPTH):
            return key, f"must count 0 to {MAX_DEPTH} blocks in all (whole numbers >= 0), got {value!r}"
    return None


@dataclass
class TimmBackboneConfig:
    """What rebuilds the network: timm name, input channels and the keyword arguments of ``create_model``."""

    name: str
    in_chans: int = 3
    kwargs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from sslkit.nn.convnet import SSLKIT_CNNS

        kind = "sslkit_cnn" if self.name in SSLKIT_CNNS else "timm"
        return {"kind": kind, "name": self.name, "in_chans": self.in_chans, "kwargs": dict(self.kwargs)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TimmBackboneConfig":
        """Inverse of :meth:`to_dict`; a bad value raises ``ValueError`` naming its key."""
        if d.get("kind") not in ("timm", "sslkit_cnn") or not isinstance(d.get("name"), str):
            raise ValueError(f"not a timm backbone config: {d!r}")
        kwargs = d.get("kwargs") or {}
        if not isinstance(kwargs, dict):
            raise ValueError(f"timm kwargs must be a mapping, got {kwargs!r}")
        in_chans = d.get("in_chans", 3)
        if not is_int(in_chans) or not 1 <= in_chans <= MAX_IN_CHANS:
            raise ValueError(f"in_chans must be an integer in [1, {MAX_IN_CHANS}], got {in_chans!r}")
        problem = timm_kwargs_problem(kwargs)
        if problem is not None:
            raise ValueError(f"kwargs.{problem[0]} {problem[1]}")
        return cls(name=d["name"], in_chans=in_chans, kwargs=dict(kwargs))


def check_timm_name(name: str) -> None:
    """Raise ValueError with close names when timm has no architecture ``name`` (sslkit's CNN presets pass)."""
    import timm

    from sslkit.nn.convnet import SSLKIT_CNNS

    if name in SSLKIT_CNNS:
        return
    if not name or not timm.is_model(name):
        close = timm.list_models(f"*{name.split('_')[0]}*")[:8] if name else []
        raise ValueError(f"timm has no model {name!r}" + (f"; similar names: {close}" if close else "")
                         + " (timm.list_models() lists them all).")


class TimmBackbone(nn.Module):
    """A timm model with its classifier removed, seen by the engine as a pooled-feature backbone."""

    is_vit = False

    def __init__(self, name: str, in_chans: int = 3, **kwargs: Any) -> None:
        super().__init__()
        import timm

        from sslkit.nn.convnet import SSLKIT_CNNS, ConvNet

        check_timm_name(name)
        if name in SSLKIT_CNNS:
            self.model = ConvNet(in_chans=in_chans, **{**SSLKIT_CNNS[name], **kwargs})
        else:
            # pretrained=False: nothing is ever downloaded; weights come from a run or a local file.
            self.model = timm.create_model(name, pretrained=False, num_classes=0, in_chans=in_chans, **kwargs)
        self.config = TimmBackboneConfig(name=name, in_chans=in_chans, kwargs=dict(kwargs))
        self.embed_dim = int(self.model.num_features)

    def forward(self, x: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, C, H, W) -> pooled features (B, embed_dim)."""
        if masks is not None and bool(masks.any()):
            raise ValueError(f"timm:{self.config.name} has no patch tokens to mask; masked-patch methods "
                             "(DINOv2's iBOT, MAE) need an sslkit ViT (model.arch=vit_tiny|vit_small|...).")
        return self.model(x)

    def forward_features(self, x: torch.Tensor, masks: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return {"cls": self.forward(x, masks)}

    def extra_repr(self) -> str:
        return f"{self.config.name}, in_chans={self.config.in_chans}, embed_dim={self.embed_dim}"
