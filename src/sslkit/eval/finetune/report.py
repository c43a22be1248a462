"""The files a fine-tuning run leaves: ``report.json`` and ``learning_curve.png`` (training loss and validation
score per epoch, the restored best epoch marked)."""

from __future__ import annotations

import os
from pathlib import Path

from sslkit.atomic_files import write_json_atomic
from sslkit.figures import save_figure, subplots
from sslkit.json_values import json_ready

__all__ = ["REPORT_NAME", "CURVE_NAME", "write_report"]

REPORT_NAME = "report.json"
CURVE_NAME = "learning_curve.png"


def write_report(report: dict, out: str | os.PathLike) -> dict[str, Path]:
    """Write ``report.json`` and ``learning_curve.png`` into ``out`` (each atomically); returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": write_json_atomic(out / REPORT_NAME, json_ready(report))}
    with subplots(1, 2, figsize=(9, 3.5)) as (fig, (loss_ax, score_ax)):
        draw_learning_curve(loss_ax, score_ax, report)
        fig.tight_layout()
        paths["curve"] = save_figure(fig, out / CURVE_NAME, dpi=110)
    return paths


def draw_learning_curve(loss_ax, score_ax, report: dict) -> None:
    """Training loss (left) and validation score (right) against the epoch, the best epoch as a dashed line."""
    epochs = [row["epoch"] for row in report["curve"]]
    loss_ax.plot(epochs, [row["train_loss"] for row in report["curve"]], marker="o")
    loss_ax.set(xlabel="epoch", ylabel="training loss", title="training loss")
    metric = report["results"]["val_metric"]
    score_ax.plot(epochs, [row["val_score"] for row in report["curve"]], marker="o", color="tab:green")
    score_ax.set(xlabel="epoch", ylabel=f"validation {metric}", title=f"validation {metric}")
    if report.get("best_epoch") is not None:
        for ax in (loss_ax, score_ax):
            ax.axvline(report["best_epoch"], color="grey", linestyle="--", linewidth=1, label="best (restored)")
        score_ax.legend(loc="lower right")
