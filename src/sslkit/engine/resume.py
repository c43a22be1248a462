"""What ``--resume`` may change, and when there is nothing left to resume (issue 23, item 1).

A resumed run is exact only if it continues with the configuration it was started with: the data,
the model, the schedules and the seed decide every batch and every weight. So a resume compares the
configuration it was asked for with the run's ``config.yaml`` and refuses any difference outside
:data:`RESUMABLE_KEYS` (how long to run, how often to log or save, how many loader workers), naming
the differing keys. The check runs before anything in the run directory is touched.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from sslkit.config import ConfigError

__all__ = ["RESUMABLE_KEYS", "check_resume", "config_differences", "flatten"]

# Keys a resume may change without changing what the run computes.
RESUMABLE_KEYS = frozenset({
    "trainer.max_steps", "trainer.progress_bar", "trainer.log_every_n_steps", "trainer.checkpoint_every_n_steps",
    "data.num_workers", "monitor.knn_every_n_steps", "monitor.repr_every_n_steps",
})


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``; lists and scalars are leaves."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _normalise(value: Any) -> Any:
    # YAML round trips turn tuples into lists; compare them as lists.
    return [_normalise(v) for v in value] if isinstance(value, (list, tuple)) else value


def config_differences(saved: dict, asked: dict) -> dict[str, tuple[Any, Any]]:
    """Keys (dotted) whose values differ between two config trees, without the resumable ones."""
    a, b = flatten({k: v for k, v in saved.items() if k != "resolved"}), flatten(
        {k: v for k, v in asked.items() if k != "resolved"})
    # A key the saved config lacks was added to sslkit after the run started; the run used its default.
    return {key: (a.get(key), b.get(key)) for key in sorted(set(a) | set(b))
            if key in a and key not in RESUMABLE_KEYS and _normalise(a.get(key)) != _normalise(b.get(key))}


def check_resume(out: Path, asked: dict, max_steps: int | None) -> None:
    """Refuse a resume that would change the run, or one of a run that has already finished.

    ``asked`` is the full config tree of the resumed run (``to_dict(cfg)``); ``max_steps`` its
    ``trainer.max_steps``.
    """
    path = out / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"Cannot resume '{out}': it holds no config.yaml (not a run directory, or the run "
                          "failed before it started); start it again without --resume.")
    saved = yaml.safe_load(path.read_text()) or {}
    differences = config_differences(saved, asked)
    if differences:
        shown = "; ".join(f"{key}: run has {old!r}, asked {new!r}" for key, (old, new) in list(differences.items())[:6])
        more = f" (and {len(differences) - 6} more)" if len(differences) > 6 else ""
        raise ConfigError(f"Cannot resume '{out}' with a different configuration — {shown}{more}. A resumed run keeps "
                          f"the config it started with (only {', '.join(sorted(RESUMABLE_KEYS))} may change): drop "
                          "those options, or start a new run with another --out.")
    report = out / "report.json"
    if report.is_file():
        done = json.loads(report.read_text()).get("steps", 0)
        total = (saved.get("resolved") or {}).get("total_steps")
        target = min(total, max_steps) if (total and max_steps) else (max_steps or total)
        if target is not None and done >= target:
            extend = (f"raise trainer.max_steps (up to {total}) to continue it" if total and done < total else
                      "to train longer, start a new run with a larger optim.epochs (the schedules span the whole run)")
            raise ConfigError(f"Run '{out}' is finished ({done} of {target} steps; report.json and the backbone are "
                              f"written), so there is nothing to resume; {extend}.")
