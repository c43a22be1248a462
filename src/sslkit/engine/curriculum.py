"""The curriculum resolved once: every stage with its sizes filled in and its first step.

A recipe's ``curriculum`` lists stages whose unset keys fall back to the run's ``crops`` (and its data to
``data.source``); a recipe without one is a single stage at ``crops``. This module is the one place that
applies those fallbacks. The backbone's position grid (first stage), the training views of each stage, the
kNN monitor's and the export's image size (last stage), the FLOP count and the schedules' stage starts all
read :func:`resolve_stages`, so they cannot disagree about a stage's size.
"""

from __future__ import annotations

from dataclasses import dataclass

from sslkit.config import RunConfig, StageConfig


@dataclass(frozen=True)
class Stage:
    """One curriculum stage as the run trains it."""

    index: int
    fraction: float  # share of the run's steps
    global_size: int  # global crop side, px (the stage's value, else ``crops.global_size``)
    local_size: int  # local crop side, px (the stage's value, else ``crops.local_size``)
    settings: StageConfig  # the recipe's entry: whole-image transforms, data, paired data, guidance, restart


def resolve_stages(cfg: RunConfig) -> list[Stage]:
    """The recipe's curriculum with every size filled in, or one stage at ``crops`` without a curriculum."""
    c = cfg.crops
    entries = list(getattr(cfg, "curriculum", None) or []) or [StageConfig()]
    return [Stage(index=k, fraction=float(entry.fraction), global_size=int(entry.global_size or c.global_size),
                  local_size=int(entry.local_size or c.local_size), settings=entry)
            for k, entry in enumerate(entries)]


def stage_starts(cfg: RunConfig, total_iters: int) -> list[int]:
    """First iteration of each stage: the cumulative fractions of ``total_iters``, rounded."""
    starts, cumulative = [], 0.0
    for stage in resolve_stages(cfg):
        starts.append(int(round(cumulative * total_iters)))
        cumulative += stage.fraction
    return starts


def first_global_size(cfg: RunConfig) -> int:
    """The first stage's global crop side: the grid the ViT's position table is learned on."""
    return resolve_stages(cfg)[0].global_size


def final_global_size(cfg: RunConfig) -> int:
    """The last stage's global crop side: what the kNN monitor evaluates and the export records."""
    return resolve_stages(cfg)[-1].global_size
