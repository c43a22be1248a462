"""The run's learning-curve figure: a PNG with the model's kNN curve and its two baselines."""

import pytest

from sslkit.engine.learning_curve import plot_learning_curve


def test_writes_a_png_and_replaces_it_whole(tmp_path):
    path = tmp_path / "learning_curve.png"
    plot_learning_curve([(0, 0.1), (50, 0.3), (100, 0.55)], {"random_init": 0.2, "raw_pixels": 0.35}, path,
                        title="simclr · glyphs")
    first = path.read_bytes()
    assert first[:8] == b"\x89PNG\r\n\x1a\n" and len(first) > 5000
    plot_learning_curve([(0, 0.1)], {}, path)  # baselines are optional
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.read_bytes() != first
    assert [p.name for p in tmp_path.iterdir()] == ["learning_curve.png"]  # no temporary left behind


def test_empty_history_is_refused(tmp_path):
    with pytest.raises(ValueError, match="at least one"):
        plot_learning_curve([], {"random_init": 0.2}, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
