"""--resume continues the run it names, exactly, or refuses before touching it (issue 23, item 1)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sslkit.cli import main
from sslkit.engine.resume import RESUMABLE_KEYS, config_differences, flatten
from tiny_overrides import tiny_dinov2

RECIPE = str(Path(__file__).resolve().parents[2] / "recipes" / "dinov2-tiny.yaml")
TINY = tiny_dinov2({"monitor.knn_every_n_steps": 0, "trainer.max_steps": 4})


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_flatten_and_differences():
    assert flatten({"a": {"b": 1, "c": [1, 2]}, "d": None}) == {"a.b": 1, "a.c": [1, 2], "d": None}
    saved = {"data": {"source": "digits", "num_workers": 0}, "crops": {"global_scale": [0.3, 1.0]},
             "resolved": {"total_steps": 8}}
    asked = {"data": {"source": "shapes", "num_workers": 4}, "crops": {"global_scale": (0.3, 1.0)},
             "model": {"new_key": 1}}
    # num_workers may change; a tuple equals its YAML list; a key the old run did not have is its default.
    assert config_differences(saved, asked) == {"data.source": ("digits", "shapes")}
    assert "trainer.max_steps" in RESUMABLE_KEYS


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    assert main(["pretrain", "--recipe", RECIPE, "--data", "digits", "--out", str(out), *TINY]) == 0
    return out


@pytest.mark.parametrize(("args", "message"), [
    (["--data", "shapes"], "data.source: run has 'digits', asked 'shapes'"),
    (["model.depth=3"], "model.depth: run has 2, asked 3"),
    (["--recipe", "recipes/mae-tiny.yaml"], "cannot be combined with --resume"),
    (["--data", "digits", "data.source=shapes"], "both name the data"),
    ([], "is finished (4 of 4 steps"),
    (["trainer.max_steps=4"], "raise trainer.max_steps (up to 8)"),
])
def test_a_refused_resume_names_the_reason_and_changes_nothing(finished_run, capsys, args, message):
    before = snapshot(finished_run)
    assert main(["pretrain", "--out", str(finished_run), "--resume", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert snapshot(finished_run) == before


def test_a_stopped_run_is_extended_by_raising_max_steps(tmp_path, finished_run):
    out = tmp_path / "run"
    import shutil

    shutil.copytree(finished_run, out)
    assert main(["pretrain", "--out", str(out), "--resume", "trainer.max_steps=8"]) == 0
    import json

    assert json.loads((out / "report.json").read_text())["steps"] == 8


def test_a_pretrain_that_fails_before_training_leaves_no_directory(tmp_path, capsys):
    out = tmp_path / "new"
    assert main(["pretrain", "--recipe", RECIPE, "--data", str(tmp_path / "missing"), "--out", str(out), *TINY]) == 2
    assert not out.exists()
    assert "missing" in capsys.readouterr().err
