"""The method registry: everything the config, the engine and the commands may know about a method.

A method lives in one file, ``sslkit/methods/<name>.py``: its recipe section (a dataclass), its
``SSLMethod`` subclass and a :class:`MethodSpec` passed to :func:`register`. ``sslkit.methods``
imports every module of the package, so a new file is found without editing any other. The engine
then reads only the spec: how to build the method from a backbone, which batch collate (masks) it
needs, which crop rules and value ranges its section has, whether it needs a ViT's patch tokens,
whether it uses the teacher schedules, its FSDP wrap units and what it evaluates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional

if TYPE_CHECKING:  # the config sits above the methods; only its type is named here
    from torch import nn

    from sslkit.data.collate import MultiCropCollate
    from sslkit.methods.base import SSLMethod

__all__ = ["MethodSpec", "register", "method_spec", "registered_methods"]

Need = Callable[[bool, str], None]


def _no_check(cfg: Any, need: Need) -> None:
    """No rule beyond the generic ones."""


def _no_problem(cfg: Any) -> Optional[str]:
    return None


def _one_view(cfg: Any) -> int:
    return 1


@dataclass(frozen=True)
class MethodSpec:
    """What a method declares about itself.

    Attributes:
        name: the recipe's ``method:`` value and the name of its section (``<name>:``).
        config: the section's dataclass; every field is a recipe key ``<name>.<field>``.
        build: ``(cfg, backbone, in_chans) -> SSLMethod``; the backbone is built by the engine.
        collate: ``(cfg) -> MultiCropCollate``: the batch collate with the masks the method needs.
        check: ``(cfg, need)``: the method's own config rules (crop counts, value combinations);
            ``need(ok, sentence)`` raises the one-sentence error.
        ranges: interval of every numeric key of ``config`` (``config_ranges`` syntax, e.g. ``"(0, 1)"``).
        patch_token_problem: ``(cfg) -> sentence | None``: the error when the run needs a ViT's patch
            tokens but ``model.arch`` is a pooled backbone (timm, CNN); None when it can run.
        runs_on_pooled_backbones: the method can run on a timm/CNN backbone at all (named in the
            sentences that refuse one).
        embedding_views: ``(cfg) -> int``: how many views the method's ``embedding`` output holds.
        teacher_schedules: ``(cfg) -> dict`` of the teacher-temperature schedule and last-layer freeze
            (``DINOv2Schedules`` keywords ``teacher_temp_start``, ``teacher_temp_end``,
            ``teacher_temp_warmup_epochs``, ``freeze_last_layer_epochs``), or None: no temperature
            warm-up, no freeze. lr, weight decay and EMA momentum are scheduled for every method.
        teacher_guidance: a curriculum stage may set ``teacher_guidance`` (noisy DINOv2).
        counts_flops: ``sslkit flops`` and ``monitor.count_flops`` can count its steps.
        wrap_units: module classes that become their own FSDP unit (every head an EMA pairs by name).
        evaluated: what kNN monitoring and export read, in words (``"EMA teacher"``, ``"encoder"``).
        heldout_metrics: optional ``(cfg, method, queries, seed) -> dict[str, float]`` computed on the
            held-out images at the end of a run (e.g. MAE's masked-patch loss), reported for the
            pretrained method and for the same method at random init.
    """

    name: str
    config: type
    build: Callable[..., "SSLMethod"]
    collate: Callable[[Any], "MultiCropCollate"]
    check: Callable[[Any, Need], None] = _no_check
    ranges: dict[str, str] = field(default_factory=dict)
    patch_token_problem: Callable[[Any], Optional[str]] = _no_problem
    runs_on_pooled_backbones: bool = True
    embedding_views: Callable[[Any], int] = _one_view
    teacher_schedules: Optional[Callable[[Any], dict[str, Any]]] = None
    teacher_guidance: bool = False
    counts_flops: bool = False
    wrap_units: tuple[type["nn.Module"], ...] = ()
    evaluated: str = "encoder"
    heldout_metrics: Optional[Callable[..., dict[str, float]]] = None


_REGISTRY: dict[str, MethodSpec] = {}


def register(spec: MethodSpec) -> MethodSpec:
    """Add ``spec``; a second method of the same name is a programming error."""
    if spec.name in _REGISTRY and _REGISTRY[spec.name] is not spec:
        raise ValueError(f"A method named {spec.name!r} is already registered "
                         f"(by {_REGISTRY[spec.name].build.__module__}).")
    _REGISTRY[spec.name] = spec
    return spec


def registered_methods() -> dict[str, MethodSpec]:
    """Every registered method by name, in name order (the order of the recipe sections)."""
    _discover()
    return dict(sorted(_REGISTRY.items()))


def method_spec(name: str) -> MethodSpec:
    """The spec of ``name``; an unknown name is a ``KeyError`` naming the known ones."""
    methods = registered_methods()
    if name not in methods:
        raise KeyError(f"Unknown method {name!r}; known: {', '.join(methods)}.")
    return methods[name]


def _discover() -> None:
    """Import every module of ``sslkit.methods`` (each registers itself): a new method file is found
    without an edit anywhere else."""
    import importlib
    import pkgutil

    import sslkit.methods as package

    for info in pkgutil.iter_modules(package.__path__):
        if info.name not in ("base", "registry"):
            importlib.import_module(f"{package.__name__}.{info.name}")
