"""What ``sslkit grok`` writes: ``grok.json`` and the ``grok.png`` curves."""

from __future__ import annotations

from pathlib import Path

from sslkit.analysis.grok.report import GrokReport
from sslkit.atomic_files import write_json_atomic
from sslkit.figures import pyplot, save_figure
from sslkit.json_values import json_ready

__all__ = ["plot_grok_curves", "write_grok_outputs"]


_COLOURS = {"none": "tab:gray", "wd": "tab:blue", "grokalign": "tab:red"}


def plot_grok_curves(report: GrokReport, path: str | Path) -> Path:
    """Accuracy, centroid alignment and Jacobian norm against steps, one colour per regime."""
    fig, axes = pyplot().subplots(1, 3, figsize=(15, 4.2))
    for reg, runs in report.arms.items():
        colour = _COLOURS.get(reg, None)
        for i, run in enumerate(runs):
            c = run.curves
            label = reg if i == 0 else None
            axes[0].plot(c["step"], c["test_acc"], color=colour, label=f"{reg} test" if i == 0 else None)
            axes[0].plot(c["step"], c["train_acc"], color=colour, ls="--", alpha=0.6,
                         label=f"{reg} train" if i == 0 else None)
            axes[1].plot(c["step"], c["train_alignment"], color=colour, label=label)
            axes[2].plot(c["step"], c["jacobian_norm"], color=colour, label=label)
            if run.steps_to_threshold is not None:
                axes[0].axvline(run.steps_to_threshold, color=colour, lw=0.8, alpha=0.5)
    axes[0].axhline(report.threshold, color="k", lw=0.8, ls=":")
    axes[0].set(title=f"{report.setup}: accuracy (threshold {report.threshold:g})", xlabel="step", ylabel="accuracy")
    axes[1].set(title="centroid alignment cos(c(x), x), train probe", xlabel="step")
    axes[2].set(title="Jacobian norm (mean R(x)), train probe", xlabel="step", yscale="log")
    for ax in axes:
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def write_grok_outputs(report: GrokReport, out: str | Path) -> dict[str, Path]:
    """Write ``grok.json`` (configs, curves, steps to threshold, wall times) and ``grok.png``."""
    out = Path(out)
    json_path = write_json_atomic(out / "grok.json", json_ready(report.to_dict()), indent=1)
    png_path = plot_grok_curves(report, out / "grok.png")
    return {"json": json_path, "png": png_path}
