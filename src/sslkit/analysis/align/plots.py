"""The figures of ``sslkit align``: annotated heat maps of the alignment matrices and of identifiability."""

from __future__ import annotations

import textwrap
from typing import Any, Optional, Sequence

import numpy as np
import torch

from sslkit.analysis.align.identifiability import Identifiability
from sslkit.analysis.align.metrics import ALIGNMENT_METRICS
from sslkit.figures import figure_png, subplots

__all__ = ["heatmap_png", "identifiability_png", "report_plots"]


def _annotated_grid(ax, values: np.ndarray, rows: list, cols: list, vmin: float, vmax: float, cmap: str = "viridis"):
    image = ax.imshow(values, vmin=vmin, vmax=vmax, cmap=cmap, aspect="auto")
    ax.set_xticks(range(len(cols)), labels=cols, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), labels=rows)
    span = vmax - vmin if vmax > vmin else 1.0
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            v = values[i, j]
            text = "–" if not np.isfinite(v) else f"{v:.2f}"
            # Dark text on the bright (high) end of viridis, light text on the dark end.
            dark = np.isfinite(v) and (v - vmin) / span > 0.6
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="black" if dark else "white")
    return image


def heatmap_png(matrix: Any, names: Sequence[str], title: str, note: Optional[str] = None) -> bytes:
    """An annotated (M, M) heat map (colour scale 0–1, values printed in the cells) as PNG bytes."""
    values = np.asarray(torch.as_tensor(matrix, dtype=torch.float64))
    side = 1.2 + 0.75 * len(names)
    with subplots(figsize=(max(4.2, side + 1.2), max(3.4, side)), dpi=110) as (fig, ax):
        low = min(0.0, float(np.nanmin(values))) if np.isfinite(values).any() else 0.0
        image = _annotated_grid(ax, values, list(names), list(names), vmin=low, vmax=1.0)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        ax.set_title(title, fontsize=10)
        lines = textwrap.wrap(note, width=int(fig.get_figwidth() * 15)) if note else []
        if lines:
            fig.text(0.01, 0.01, "\n".join(lines), fontsize=7, ha="left", va="bottom")
        fig.tight_layout(rect=(0, 0.035 * len(lines), 1, 1))
        return figure_png(fig)


def identifiability_png(result: Identifiability) -> bytes:
    """Two annotated panels, models × latent factors: held-out linear R² and MCC, as PNG bytes."""
    rows, cols = list(result.names), list(result.latents)
    r2 = np.array([[result.r2[m][c] for c in cols] for m in rows], dtype=float)
    corr = np.array([[result.mcc[m][c] for c in cols] for m in rows], dtype=float)
    width = max(5.0, 1.6 + 0.75 * len(cols))
    height = max(2.4, 1.4 + 0.45 * len(rows))
    with subplots(1, 2, figsize=(2 * width, height + 0.6), dpi=110) as (fig, axes):
        low = min(0.0, float(np.nanmin(r2))) if np.isfinite(r2).any() else 0.0
        image = _annotated_grid(axes[0], r2, rows, cols, vmin=max(low, -1.0), vmax=1.0)
        fig.colorbar(image, ax=axes[0], fraction=0.046, pad=0.04)
        axes[0].set_title(f"linear R² (held out, {result.test_size} rows)", fontsize=10)
        image = _annotated_grid(axes[1], corr, rows, cols, vmin=0.0, vmax=1.0)
        fig.colorbar(image, ax=axes[1], fraction=0.046, pad=0.04)
        axes[1].set_title(f"MCC ({result.mcc_method}, matched)", fontsize=10)
        axes[1].set_yticks(range(len(rows)), labels=[""] * len(rows))
        fig.tight_layout()
        return figure_png(fig)


def report_plots(report: dict) -> dict[str, bytes]:
    """PNG bytes per figure of an ``sslkit align`` report: one heat map per metric, ``identifiability``."""
    plots: dict[str, bytes] = {}
    alignment = report.get("alignment")
    if alignment:
        n, k = alignment["n"], alignment["k"]
        for metric, matrix in alignment["matrices"].items():
            note = f"n = {n} samples of {report['data']['source']}/{report['data']['split']}"
            if metric in ("mutual_knn", "cknna"):
                note += f", k = {k}"
            if metric == "mutual_knn":
                note += f"; random baseline k/(n−1) = {alignment['random_baseline']['mutual_knn']:.3f}"
            null = (alignment.get("permutation_null") or {}).get(metric)
            if null is not None:
                off = [null[i][j] for i in range(len(null)) for j in range(len(null)) if i != j] or [null[0][0]]
                note += f"; shuffled-rows null ≤ {max(off):.3f}"
            plots[metric] = heatmap_png(matrix, alignment["names"], ALIGNMENT_METRICS[metric][1], note)
    ident = report.get("identifiability")
    if ident:
        fields = {k: ident[k] for k in Identifiability.__dataclass_fields__}
        plots["identifiability"] = identifiability_png(Identifiability(**fields))
    return plots
