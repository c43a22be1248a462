"""Figures as files: the one matplotlib set-up of sslkit.

sslkit only ever writes figures to files, from the CLI or a headless job, so pyplot runs on the
non-interactive Agg backend (no display is needed). :func:`subplots` opens a figure that is closed when
its ``with`` block ends, whatever happens in it (pyplot keeps every open figure alive otherwise);
:func:`figure_png` renders a figure to PNG bytes and :func:`save_figure` writes them through
:mod:`sslkit.atomic_files`, so a crash never leaves half a PNG.

Example::

    with subplots(figsize=(5.6, 3.6), dpi=110) as (fig, ax):
        ax.plot(steps, accuracy)
        fig.tight_layout()
        save_figure(fig, run_dir / "learning_curve.png")
"""

from __future__ import annotations

import io
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from sslkit.atomic_files import write_bytes_atomic

__all__ = ["figure_png", "pyplot", "save_figure", "subplots"]


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@contextmanager
def subplots(*args, **kwargs) -> Iterator[tuple[Any, Any]]:
    """``pyplot.subplots(*args, **kwargs)`` as ``(fig, axes)``, closed when the block ends."""
    plt = pyplot()
    fig, axes = plt.subplots(*args, **kwargs)
    try:
        yield fig, axes
    finally:
        plt.close(fig)


def figure_png(fig: Any, **savefig_options) -> bytes:
    """The PNG bytes of ``fig`` (``savefig_options``: e.g. ``dpi``, ``bbox_inches``); the figure is closed."""
    try:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", **savefig_options)
        return buffer.getvalue()
    finally:
        pyplot().close(fig)


def save_figure(fig: Any, path: str | os.PathLike, **savefig_options) -> Path:
    """Write ``fig`` as a PNG at ``path``, atomically, and close it. Returns the path."""
    return write_bytes_atomic(path, figure_png(fig, **savefig_options))
