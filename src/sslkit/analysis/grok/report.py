"""The race of ``sslkit grok``: every regime from every seed on one task, and how their steps compare."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from sslkit.analysis.grok.config import GrokConfig
from sslkit.analysis.grok.tasks import build_task
from sslkit.analysis.grok.training import GrokRun, train_grok

__all__ = ["GrokReport", "race_summary", "run_grok"]


@dataclass
class GrokReport:
    """Runs per regime (``arms[reg]``) and the resolved config of each regime."""

    setup: str
    description: str
    threshold: float
    configs: dict[str, dict[str, Any]]
    arms: dict[str, list[GrokRun]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "setup": self.setup,
            "description": self.description,
            "threshold": self.threshold,
            "configs": self.configs,
            "arms": {reg: {"runs": [dataclasses.asdict(r) for r in runs], "summary": _arm_summary(runs)}
                     for reg, runs in self.arms.items()},
            "race": race_summary(self) if {"wd", "grokalign"} <= set(self.arms) else None,
        }


def _arm_summary(runs: list[GrokRun]) -> dict[str, Any]:
    hits = [r.steps_to_threshold for r in runs if r.steps_to_threshold is not None]
    return {
        "steps_to_threshold": [r.steps_to_threshold for r in runs],
        "median_steps_to_threshold": float(np.median(hits)) if len(hits) == len(runs) and hits else None,
        "reached": f"{len(hits)}/{len(runs)}",
        "wall_time_s": [round(r.wall_time_s, 2) for r in runs],
        "train_time_s": [round(r.train_time_s, 2) for r in runs],
        "final_test_acc": [r.curves["test_acc"][-1] for r in runs],
        "final_train_acc": [r.curves["train_acc"][-1] for r in runs],
    }


def race_summary(report: GrokReport, base: str = "wd", other: str = "grokalign",
                 target_ratio: float = 0.5) -> dict[str, Any]:
    """Per seed: ``steps(other) / steps(base)`` to the threshold and wall-time ratio.

    A seed where ``base`` never reached the threshold within its cap counts its cap as a lower
    bound (ratio is then an upper bound, marked); a seed where ``other`` never reached it has no ratio.
    """
    rows = []
    for b, o in zip(report.arms[base], report.arms[other]):
        b_steps = b.steps_to_threshold if b.steps_to_threshold is not None else b.steps_run
        ratio = None if o.steps_to_threshold is None else o.steps_to_threshold / b_steps
        rows.append({
            "seed": b.seed,
            f"{base}_steps": b.steps_to_threshold,
            f"{other}_steps": o.steps_to_threshold,
            "step_ratio": ratio,
            "ratio_is_upper_bound": b.steps_to_threshold is None and ratio is not None,
            f"{base}_wall_s": round(b.wall_time_s, 2),
            f"{other}_wall_s": round(o.wall_time_s, 2),
            "wall_ratio": round(o.wall_time_s / b.wall_time_s, 3) if b.wall_time_s > 0 else None,
        })
    met = sum(1 for r in rows if r["step_ratio"] is not None and r["step_ratio"] <= target_ratio)
    return {"per_seed": rows, "target_ratio": target_ratio, "seeds_meeting_target": met, "seeds": len(rows)}


def run_grok(cfg: GrokConfig, seeds: Sequence[int], regimes: Sequence[str] | None = None,
             on_eval: Callable[[str, int, int, dict[str, float]], None] | None = None) -> GrokReport:
    """Train every regime in ``regimes`` (default ``[cfg.reg]``) from every seed on one task."""
    regimes = list(regimes or [cfg.reg])
    resolved = {reg: dataclasses.replace(cfg, reg=reg).resolved() for reg in regimes}
    task = build_task(resolved[regimes[0]])
    arms: dict[str, list[GrokRun]] = {}
    for reg in regimes:
        arms[reg] = []
        for seed in seeds:
            callback = None if on_eval is None else (lambda step, row, reg=reg, seed=seed: on_eval(reg, seed, step, row))
            arms[reg].append(train_grok(task, resolved[reg], seed, callback))
    configs = {reg: {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(c).items()}
               for reg, c in resolved.items()}
    thresholds = {c.threshold for c in resolved.values()}
    return GrokReport(setup=cfg.setup, description=task.description, threshold=thresholds.pop(),
                      configs=configs, arms=arms)
