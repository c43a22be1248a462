"""The learning-curve figure of a pretraining run: kNN of the model against steps, with its baselines.

A run that learns something useful rises above two flat lines: the same architecture at random
initialisation and the raw pixels, both scored by the same kNN evaluator on the same split. The
figure is what ``sslkit pretrain`` writes as ``RUN_DIR/learning_curve.png``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from sslkit.figures import save_figure, subplots

__all__ = ["plot_learning_curve"]

_BASELINES = (("random_init", "random-init backbone", "tab:gray"), ("raw_pixels", "raw pixels", "tab:orange"))


def plot_learning_curve(history: Sequence[tuple[int, float]], baselines: Mapping[str, float], path: str | Path,
                        title: str = "", k: int = 20) -> Path:
    """Write a PNG of ``history`` [(step, top-1 in [0, 1])] with horizontal ``baselines`` lines; returns ``path``.

    ``baselines`` may hold ``random_init`` and ``raw_pixels`` (other keys are ignored). Written
    atomically: an existing figure is replaced whole or not at all.
    """
    if not history:
        raise ValueError("plot_learning_curve needs at least one (step, accuracy) point.")
    steps = [int(s) for s, _ in history]
    accuracy = [100 * float(a) for _, a in history]
    with subplots(figsize=(5.6, 3.6), dpi=110) as (fig, ax):
        ax.plot(steps, accuracy, marker="o", color="tab:blue", label="pretrained")
        for key, label, colour in _BASELINES:
            if key in baselines and baselines[key] is not None:
                ax.axhline(100 * float(baselines[key]), linestyle="--", color=colour,
                           label=f"{label} ({100 * float(baselines[key]):.1f} %)")
        ax.set_xlabel("training step")
        ax.set_ylabel(f"kNN top-1 % (k = {k})")
        ax.set_xlim(left=0)
        if title:
            ax.set_title(title, fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="best")
        fig.tight_layout()
        return save_figure(fig, path)
