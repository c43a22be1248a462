"""What ``sslkit align`` writes: ``align.json`` and one PNG heat map per metric (+ ``identifiability.png``)."""

from __future__ import annotations

import os
from pathlib import Path

from sslkit.analysis.align.plots import report_plots
from sslkit.atomic_files import write_bytes_atomic, write_json_atomic
from sslkit.json_values import json_ready

__all__ = ["write_align_report"]


def write_align_report(report: dict, out: str | os.PathLike) -> dict[str, Path]:
    """Write ``align.json`` and one PNG heat map per metric (+ ``identifiability.png``) into ``out``, atomically."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    plots = report_plots(report)
    for name, png in plots.items():
        paths[name] = out / f"{name}.png"
        write_bytes_atomic(paths[name], png)
    report = dict(report, plots=[f"{name}.png" for name in plots])
    paths["json"] = write_json_atomic(out / "align.json", json_ready(report))
    return paths
