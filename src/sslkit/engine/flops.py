"""Training FLOPs of a recipe, per step and in total, counted with ``torch.utils.flop_counter``.

FastDINOv2 (arXiv 2507.03779, spec ``specs/fast-dinov2.md`` step 4) trains the first 75 % of the steps on
112/48 px crops and claims 2.25× fewer FLOPs than the 224/96 px recipe. This module counts the FLOPs of one
DINOv2 training step for any crop sizes and sums them over a curriculum of stages, without training:

* every model is built on the ``meta`` device (no memory, no arithmetic), and the forward passes run under
  :class:`~torch.utils.flop_counter.FlopCounterMode`, which counts matmul/conv/attention FLOPs from shapes
  (one multiply-add = 2 FLOPs);
* one image is pushed through; FLOPs are linear in the batch, so a step costs batch × that;
* the cost model is the spec's: 3 × forward for the student (forward + backward ≈ 2 × forward), 1 × forward
  for the teacher, for both the backbone and the heads.

Heads see n_g + n_l student class tokens and n_g teacher class tokens per image, plus the iBOT-masked patch
tokens of the global crops (expected count: ``mask_probability`` × mean(``mask_ratio``) × patches per crop,
for student and teacher alike).

Example::

    cfg = load_config("recipes/dinov2-vits16.yaml")
    step_flops(cfg, (224, 96))["total"]                       # FLOPs of one step at the global batch
    recipe_flops(cfg, stages=[(0.75, 112, 48), (0.25, 224, 96)])["ratio_to_full_resolution"]   # ≈ 2.27
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode

from sslkit.config import ConfigError, RunConfig

__all__ = ["build_on_meta", "count_forward_flops", "cumulative_flops", "step_flops", "recipe_flops", "parse_stages", "stages_from_config", "world_size"]

STUDENT_FWD_BWD = 3  # spec step 4: backward ≈ 2 × forward


def count_forward_flops(module: torch.nn.Module, *inputs: torch.Tensor, call: Optional[str] = None) -> int:
    """FLOPs of one forward of ``module`` (or of its method ``call``) on ``inputs``, gradients off."""
    fn = getattr(module, call) if call else module
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        fn(*inputs)
    return int(counter.get_total_flops())


def world_size(cfg: RunConfig) -> tuple[int, bool]:
    """(number of data-parallel workers, whether it was assumed): ``trainer.devices`` × ``trainer.num_nodes``;
    a device count Lightning resolves at run time ('auto', '0,1', -1) counts as 1 and is flagged."""
    devices = cfg.trainer.devices
    if isinstance(devices, int) and devices > 0:
        return devices * cfg.trainer.num_nodes, False
    return cfg.trainer.num_nodes, True


def build_on_meta(cfg: RunConfig, in_chans: int):
    """The run's method (student, teacher, heads) on the meta device: shapes only, no memory."""
    from sslkit.engine.builders import build_method  # the engine owns model construction

    with torch.device("meta"):
        return build_method(cfg, in_chans)


def step_flops(cfg: RunConfig, crops: tuple[int, int], in_chans: int = 3, method=None) -> dict:
    """FLOPs of one DINOv2 training step with global/local crops of side ``crops = (global, local)``.

    Args:
        cfg: the run's config (model, heads, ``crops.n_global``/``n_local``, masking, batch, devices).
        crops: (global_size, local_size) in pixels, multiples of ``model.patch_size``.
        in_chans: image channels.
        method: a method already built on the meta device (reused across stages to save time).

    Returns:
        dict of FLOPs per step at the global batch (``batch`` = ``optim.batch_size`` × world size):
        ``student_backbone`` (3 × forward), ``teacher_backbone``, ``student_heads`` (3 × forward),
        ``teacher_heads``, ``backbone`` (student + teacher), ``heads``, ``total``; ``per_image`` (the same
        keys for one image), ``backbone_forward`` ({global, local}: one crop's forward), ``tokens``
        ({global, local}: tokens per crop incl. class/register tokens), ``batch``, ``crops``.
    """
    from sslkit.methods.registry import method_spec, registered_methods

    if not method_spec(cfg.method).counts_flops:
        counted = [name for name, spec in registered_methods().items() if spec.counts_flops]
        raise ConfigError(f"sslkit flops counts {'/'.join(counted)} steps; recipe key 'method' is {cfg.method!r}. "
                          f"Use a {' or '.join(counted)} recipe.")
    global_size, local_size = int(crops[0]), int(crops[1])
    p = cfg.model.patch_size
    for name, size in (("global", global_size), ("local", local_size)):
        if size <= 0 or size % p:
            raise ConfigError(f"{name} crop size {size} must be a positive multiple of model.patch_size = {p}.")
    method = method if method is not None else build_on_meta(cfg, in_chans)
    backbone = method.student["backbone"]
    n_g, n_l = cfg.crops.n_global, cfg.crops.n_local

    def crop_forward(size: int) -> int:
        return count_forward_flops(backbone, torch.zeros(1, in_chans, size, size, device="meta"),
                                   call="forward_features")

    fwd_global = crop_forward(global_size)
    fwd_local = crop_forward(local_size) if n_l else 0
    width = backbone.embed_dim
    token = torch.zeros(1, width, device="meta")
    dino_head = count_forward_flops(method.student["dino_head"], token)
    ibot_head = count_forward_flops(method.student["ibot_head"], token) if "ibot_head" in method.student \
        else dino_head
    d = cfg.dinov2
    patches = (global_size // p) ** 2
    masked_per_image = n_g * patches * d.mask_probability * 0.5 * (d.mask_ratio[0] + d.mask_ratio[1])

    per_image = {
        "student_backbone": STUDENT_FWD_BWD * (n_g * fwd_global + n_l * fwd_local),
        "teacher_backbone": n_g * fwd_global,
        "student_heads": STUDENT_FWD_BWD * ((n_g + n_l) * dino_head + masked_per_image * ibot_head),
        "teacher_heads": n_g * dino_head + masked_per_image * ibot_head,
    }
    per_image["backbone"] = per_image["student_backbone"] + per_image["teacher_backbone"]
    per_image["heads"] = per_image["student_heads"] + per_image["teacher_heads"]
    per_image["total"] = per_image["backbone"] + per_image["heads"]
    workers, _ = world_size(cfg)
    batch = cfg.optim.batch_size * workers
    extra = backbone.num_prefix_tokens  # class + register tokens
    result = {key: value * batch for key, value in per_image.items()}
    result.update(per_image=per_image, batch=batch, crops=(global_size, local_size),
                  backbone_forward={"global": fwd_global, "local": fwd_local},
                  tokens={"global": patches + extra, "local": (local_size // p) ** 2 + extra})
    return result


def parse_stages(text: str) -> list[tuple[float, int, int]]:
    """``"0.75:112:48,0.25:224:96"`` -> [(0.75, 112, 48), (0.25, 224, 96)]; fractions must sum to 1."""
    stages = []
    for part in (s.strip() for s in text.split(",")):
        if not part:
            continue
        bits = part.split(":")
        try:
            if len(bits) != 3:
                raise ValueError
            stages.append((float(bits[0]), int(bits[1]), int(bits[2])))
        except ValueError:
            raise ConfigError(f"Stage {part!r} is not FRACTION:GLOBAL:LOCAL (e.g. 0.75:112:48).") from None
    _check_stages(stages)
    return stages


def _check_stages(stages: Sequence[tuple[float, int, int]]) -> None:
    if not stages:
        raise ConfigError("The curriculum has no stage; give at least one FRACTION:GLOBAL:LOCAL.")
    if any(f <= 0 for f, _, _ in stages):
        raise ConfigError(f"Every stage fraction must be positive, got {[f for f, _, _ in stages]}.")
    total = sum(f for f, _, _ in stages)
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        raise ConfigError(f"Stage fractions must sum to 1, got {total:g} ({[f for f, _, _ in stages]}).")


def _stage_steps(total_steps: int, fractions: Sequence[float]) -> list[int]:
    """Whole steps per stage: stage boundaries at round(cumulative fraction × total), so they sum exactly."""
    bounds, cumulative = [0], 0.0
    for f in fractions:
        cumulative += f
        bounds.append(int(round(cumulative * total_steps)))
    bounds[-1] = total_steps
    return [b - a for a, b in zip(bounds, bounds[1:])]


def stages_from_config(cfg: RunConfig) -> list[tuple[float, int, int]]:
    """(fraction, global_size, local_size) per stage of the recipe's ``curriculum`` (unset sizes fall back to
    ``crops``), or one stage at ``crops`` when the recipe has no curriculum."""
    from sslkit.engine.curriculum import resolve_stages

    return [(stage.fraction, stage.global_size, stage.local_size) for stage in resolve_stages(cfg)]


def recipe_flops(cfg: RunConfig, stages: Optional[Sequence[tuple[float, int, int]]] = None, in_chans: int = 3,
                 total_steps: Optional[int] = None) -> dict:
    """Total pretraining FLOPs of a recipe, optionally split into curriculum stages.

    Args:
        cfg: the run config. Steps = ceil(``optim.epochs`` × ``optim.iters_per_epoch``), cut at
            ``trainer.max_steps`` when set (the run stops there).
        stages: [(fraction_of_steps, global_size, local_size), ...] summing to 1; ``None`` = the recipe's
            ``curriculum`` (:func:`stages_from_config`), or one stage at ``crops`` without one.
        total_steps: override the step count (needed when ``optim.iters_per_epoch`` is null, i.e. one pass
            over a dataset whose size only a run knows).

    Returns:
        dict: ``stages`` (list of {fraction, global_size, local_size, steps, step_flops, flops, backbone_flops}),
        ``total``, ``backbone_total``, ``full_resolution_total`` / ``full_resolution_backbone_total`` (the same
        steps all at the recipe's ``crops`` sizes), ``ratio_to_full_resolution`` (full / this; > 1 = saving),
        ``backbone_ratio``, ``steps``, ``batch``, ``world_size_assumed``.
    """
    if total_steps is None:
        o = cfg.optim
        if o.iters_per_epoch is None:
            raise ConfigError("Recipe key 'optim.iters_per_epoch' is null, so the step count depends on the "
                              "dataset; set optim.iters_per_epoch=N to count FLOPs.")
        total_steps = max(1, int(math.ceil(o.epochs * o.iters_per_epoch)))
    if stages is None:
        stages = stages_from_config(cfg)
    stages = [(float(f), int(g), int(l)) for f, g, l in stages]
    _check_stages(stages)
    steps = _stage_steps(total_steps, [f for f, _, _ in stages])
    if cfg.trainer.max_steps is not None:  # the run stops early; later stages lose their steps first
        remaining, cut = cfg.trainer.max_steps, []
        for n in steps:
            cut.append(min(n, remaining))
            remaining -= cut[-1]
        steps = cut

    method = build_on_meta(cfg, in_chans)
    cache: dict[tuple[int, int], dict] = {}

    def per_step(g: int, l: int) -> dict:
        if (g, l) not in cache:
            cache[(g, l)] = step_flops(cfg, (g, l), in_chans, method=method)
        return cache[(g, l)]

    rows = []
    for (fraction, g, l), n in zip(stages, steps):
        s = per_step(g, l)
        rows.append({"fraction": fraction, "global_size": g, "local_size": l, "steps": n,
                     "step_flops": s["total"], "flops": s["total"] * n, "backbone_flops": s["backbone"] * n})
    full = per_step(cfg.crops.global_size, cfg.crops.local_size)
    n_steps = sum(steps)
    total = sum(r["flops"] for r in rows)
    backbone_total = sum(r["backbone_flops"] for r in rows)
    _, assumed = world_size(cfg)
    return {"stages": rows, "steps": n_steps, "batch": full["batch"], "world_size_assumed": assumed,
            "total": total, "backbone_total": backbone_total,
            "full_resolution_total": full["total"] * n_steps,
            "full_resolution_backbone_total": full["backbone"] * n_steps,
            "ratio_to_full_resolution": full["total"] * n_steps / total if total else float("nan"),
            "backbone_ratio": full["backbone"] * n_steps / backbone_total if backbone_total else float("nan")}


def cumulative_flops(result: dict, steps_done: int) -> float:
    """FLOPs spent after ``steps_done`` optimiser steps of the run that :func:`recipe_flops` described.

    A function of the step alone (stage by stage, each at its own per-step cost), so a resumed run logs the same
    running total as an uninterrupted one without keeping any state. For the engine's ``flops`` metric::

        plan = recipe_flops(cfg, stages)            # once, at the start of the run
        log("flops", cumulative_flops(plan, global_step))
    """
    if steps_done < 0:
        raise ValueError(f"cumulative_flops: steps_done must be >= 0, got {steps_done}.")
    total, left = 0.0, int(steps_done)
    for row in result["stages"]:
        taken = min(left, row["steps"])
        total += taken * row["step_flops"]
        left -= taken
    if left > 0:  # past the planned steps (e.g. a longer run than planned): keep paying the last stage's cost
        total += left * result["stages"][-1]["step_flops"]
    return total
