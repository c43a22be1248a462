"""The valid range of every numeric recipe key, in one table.

A recipe is user input: ``dinov2.teacher_temp=-1`` or ``optim.base_lr=-1`` would otherwise train
(and produce nonsense, or NaN some hours later). :data:`RANGES` gives each numeric key of
:class:`sslkit.config.RunConfig` an interval in the usual notation (``"(0, 10]"``: above 0, at most
10); a tuple-valued key holds every element to it; ``None`` (an unset optional key) always passes;
NaN and infinities never do. A method's own keys come from its ``MethodSpec.ranges`` (in its file under
``sslkit/methods``). ``tests/config/test_config_ranges.py`` fails when a numeric key is added to the config
without a row, so no key goes unchecked. Cross-field rules (heads dividing
the width, crop sizes being multiples of the patch, fractions summing to 1) stay in
``sslkit.config.validate``.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any, Iterator, Optional

from sslkit.nn.bounds import MAX_DEPTH, MAX_EMBED_DIM, MAX_IMAGE_SIZE, MAX_PATCH, MAX_REGISTERS

__all__ = ["RANGES", "UNRANGED", "interval", "numeric_leaves", "range_problem"]


_GENERIC_RANGES: dict[str, str] = {
    "data.image_size": f"[1, {MAX_IMAGE_SIZE}]",
    "data.num_samples": "[1, 100000000]",
    "data.background_noise": "[0, 10]",
    "data.holdout_fraction": "[0, 1)",
    "data.dicom_window": "[-1000000000, 1000000000]",
    "data.num_workers": "[0, 1024]",
    "crops.global_size": f"[1, {MAX_IMAGE_SIZE}]",
    "crops.local_size": f"[1, {MAX_IMAGE_SIZE}]",
    "crops.n_global": "[1, 64]",
    "crops.n_local": "[0, 256]",
    "crops.global_scale": "(0, 1]",
    "crops.local_scale": "(0, 1]",
    "crops.blur_sigma": "(0, 100]",
    "crops.jitter_strength": "[0, 10]",
    "crops.global_blur_p": "[0, 1]",
    "crops.solarize_p": "[0, 1]",
    "model.patch_size": f"[1, {MAX_PATCH}]",
    "model.embed_dim": f"[1, {MAX_EMBED_DIM}]",
    "model.depth": f"[1, {MAX_DEPTH}]",
    "model.num_heads": f"[1, {MAX_EMBED_DIM}]",
    "model.num_registers": f"[0, {MAX_REGISTERS}]",
    "model.drop_path_rate": "[0, 1)",
    "model.layerscale_init": "(0, 10]",
    "optim.epochs": "(0, 1000000]",
    "optim.iters_per_epoch": "[1, 100000000]",
    "optim.batch_size": "[2, 1000000]",
    "optim.base_lr": "(0, 10]",
    "optim.min_lr": "[0, 10]",
    "optim.warmup_epochs": "[0, 1000000]",
    "optim.weight_decay": "[0, 10]",
    "optim.weight_decay_end": "[0, 10]",
    "optim.momentum_teacher": "[0, 1]",
    "optim.momentum_teacher_end": "[0, 1]",
    "optim.freeze_last_layer_epochs": "[0, 1000000]",
    "optim.freeze_backbone_epochs": "[0, 1000000]",
    "optim.layer_decay": "(0, 1]",
    "optim.patch_embed_lr_mult": "[0, 100]",
    "optim.clip_grad": "[0, 1000000]",
    "optim.betas": "[0, 1)",
    "trainer.num_nodes": "[1, 100000]",
    "trainer.seed": f"[0, {2 ** 32 - 1}]",
    "trainer.checkpoint_every_n_steps": "[0, 1000000000]",
    "trainer.log_every_n_steps": "[1, 1000000000]",
    "trainer.max_steps": "[1, 1000000000]",
    "monitor.knn_every_n_steps": "[0, 1000000000]",
    "monitor.knn_k": "[1, 100000]",
    "monitor.knn_temperature": "(0, 100]",
    "monitor.max_bank_size": "[1, 100000000]",
    "monitor.repr_every_n_steps": "[1, 1000000000]",
    "monitor.repr_samples": "[2, 10000000]",
    "curriculum.fraction": "(0, 1]",
    "curriculum.global_size": f"[1, {MAX_IMAGE_SIZE}]",
    "curriculum.local_size": f"[1, {MAX_IMAGE_SIZE}]",
    "curriculum.noise_patch": "[0, 100]",
    "curriculum.lowpass_cutoff": "(0, 1]",
    "curriculum.teacher_guidance": "[0, 1000]",
}


def _all_ranges() -> dict[str, str]:
    """The generic keys' rows plus every registered method's own (``MethodSpec.ranges``, under its section)."""
    from sslkit.methods.registry import registered_methods

    rows = dict(_GENERIC_RANGES)
    for name, spec in registered_methods().items():
        rows.update({f"{name}.{key}": spec for key, spec in spec.ranges.items()})
    return rows


RANGES: dict[str, str] = _all_ranges()

# Numeric-typed keys whose values are checked elsewhere as a whole ('auto' or 1 or 3; an int or "auto").
UNRANGED = frozenset({"data.channels", "trainer.devices"})


def interval(spec: str) -> tuple[float, float, bool, bool]:
    """``"(0, 1]"`` → ``(0.0, 1.0, False, True)``: bounds and whether each end is included."""
    low, high = spec[1:-1].split(",")
    return float(low), float(high), spec[0] == "[", spec[-1] == "]"


def range_problem(key: str, value: Any, spec: str) -> Optional[str]:
    """One sentence if ``value`` (a number, a tuple of them, or None) lies outside ``spec``, else None."""
    if value is None:
        return None
    low, high, low_in, high_in = interval(spec)
    for v in value if isinstance(value, (tuple, list)) else (value,):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue  # a non-number was already refused by the type check
        inside = math.isfinite(v) and (v >= low if low_in else v > low) and (v <= high if high_in else v < high)
        if not inside:
            shown = list(value) if isinstance(value, (tuple, list)) else value
            what = "every value of " if isinstance(value, (tuple, list)) else ""
            return f"Config key '{key}' = {shown} is out of range: {what}'{key}' must lie in {spec}."
    return None


def _numeric(tp: Any) -> bool:
    args = typing.get_args(tp)
    if tp in (int, float):
        return True
    if typing.get_origin(tp) is tuple:
        return all(a in (int, float) for a in args if a is not Ellipsis)
    return typing.get_origin(tp) is typing.Union and any(_numeric(a) for a in args if a is not type(None))


def numeric_fields(cls: type, prefix: str = "") -> Iterator[str]:
    """Dotted keys of every numeric field of a config dataclass (curriculum stages as ``curriculum.NAME``)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            yield from numeric_fields(tp, f"{prefix}{f.name}.")
        elif typing.get_origin(tp) is list and dataclasses.is_dataclass(typing.get_args(tp)[0]):
            yield from numeric_fields(typing.get_args(tp)[0], f"{prefix}{f.name}.")
        elif _numeric(tp):
            yield f"{prefix}{f.name}"


def numeric_leaves(cfg: Any, prefix: str = "") -> Iterator[tuple[str, str, Any]]:
    """``(table key, shown key, value)`` for every numeric value of a config (``curriculum[1].fraction``
    is looked up as ``curriculum.fraction``)."""
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value, tp = getattr(cfg, f.name), hints[f.name]
        if dataclasses.is_dataclass(value):
            yield from numeric_leaves(value, f"{prefix}{f.name}.")
        elif isinstance(value, list) and value and dataclasses.is_dataclass(value[0]):
            for i, stage in enumerate(value):
                for table_key, _, v in numeric_leaves(stage, f"{f.name}."):
                    yield table_key, table_key.replace(f"{f.name}.", f"{f.name}[{i}].", 1), v
        elif _numeric(tp):
            yield f"{prefix}{f.name}", f"{prefix}{f.name}", value


def check_ranges(cfg: Any) -> Optional[str]:
    """The first out-of-range value of a :class:`~sslkit.config.RunConfig` as one sentence, or None."""
    for table_key, shown, value in numeric_leaves(cfg):
        if table_key in UNRANGED:
            continue
        problem = range_problem(shown, value, RANGES[table_key])
        if problem:
            return problem
    return None
