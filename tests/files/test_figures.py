"""sslkit.figures: figures on the Agg backend, rendered to PNG, written atomically and always closed."""

from __future__ import annotations

import matplotlib
import pytest

from sslkit.figures import figure_png, pyplot, save_figure, subplots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_a_figure_is_written_whole_and_closed(tmp_path):
    plt = pyplot()
    assert matplotlib.get_backend().lower() == "agg"
    before = set(plt.get_fignums())
    with subplots(1, 2, figsize=(3, 2), dpi=50) as (fig, axes):
        axes[0].plot([0, 1], [1, 0])
        path = save_figure(fig, tmp_path / "sub" / "a.png")
    assert path.read_bytes().startswith(PNG_MAGIC) and sorted(p.name for p in tmp_path.rglob("*")) == ["a.png", "sub"]
    assert set(plt.get_fignums()) == before
    fig, ax = plt.subplots()
    assert figure_png(fig, dpi=20).startswith(PNG_MAGIC) and set(plt.get_fignums()) == before


def test_a_drawing_error_still_closes_the_figure():
    plt = pyplot()
    before = set(plt.get_fignums())
    with pytest.raises(ZeroDivisionError):
        with subplots() as (fig, ax):
            ax.plot([1 / 0])
    assert set(plt.get_fignums()) == before
