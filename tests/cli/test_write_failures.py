"""A full disk or a read-only directory at each of pretrain's write sites (issue 23, item 4).

Each row makes one write fail as the operating system would (``ENOSPC``, ``EROFS``) and runs the real
CLI: exit status 2 with one sentence naming the file and what to do, no traceback, no temporary file
left behind, and every file written before the failure whole. A failure after the first checkpoint
leaves a run that ``--resume`` finishes. Running as root, a read-only directory cannot be made with
``chmod``, so the failure is injected where the bytes are handed to the operating system.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from sslkit.cli import main
from sslkit.engine import jsonl_logger
from run_files import assert_whole
from tiny_overrides import tiny_dinov2

ROOT = Path(__file__).resolve().parents[2]
RECIPE = str(ROOT / "recipes" / "dinov2-tiny.yaml")
TINY = tiny_dinov2({"optim.epochs": 1, "trainer.checkpoint_every_n_steps": 2, "monitor.knn_every_n_steps": 0})

# site -> the file name whose write fails (os.replace onto it, or the append for metrics.jsonl)
SITES = ["config.yaml", "metrics.jsonl", "last.ckpt", "backbone.safetensors", "backbone.json", "metrics.csv",
         "report.json", "learning_curve.png"]
ROWS = [(site, errno.ENOSPC) for site in SITES] + [("last.ckpt", errno.EROFS)]


def _inject(monkeypatch, site: str, code: int) -> None:
    real_replace, real_open = os.replace, open

    def replace(src, dst, *args, **kwargs):
        if Path(dst).name == site:
            raise OSError(code, os.strerror(code), str(dst))
        return real_replace(src, dst, *args, **kwargs)

    def append(path, mode="r", *args, **kwargs):
        if Path(path).name == site and "a" in mode:
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(jsonl_logger, "open", append, raising=False)


def _whole(run: Path) -> None:
    """Every file whole, no temporary file left, and the run lock released."""
    assert_whole(run)
    assert not list(run.rglob("*.tmp")), list(run.rglob("*.tmp"))
    assert not (run / ".lock").exists(), "the run lock outlived the failed command"


@pytest.mark.parametrize("site,code", ROWS, ids=[f"{s}-{errno.errorcode[c]}" for s, c in ROWS])
def test_a_failed_write_is_one_sentence_and_leaves_whole_files(tmp_path, monkeypatch, capsys, site, code):
    run = tmp_path / "run"
    argv = ["pretrain", "--recipe", RECIPE, "--data", "digits", "--out", str(run), *TINY]
    with monkeypatch.context() as patch:
        _inject(patch, site, code)
        status = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 2, err
    assert lines[-1].startswith("sslkit pretrain: ") and site in lines[-1] and "Traceback" not in err, err
    assert os.strerror(code) in lines[-1]
    if not run.exists():
        return  # failed before its first checkpoint: nothing of the run is kept
    _whole(run)
    assert "--resume" in lines[-1]
    # The fault gone, --resume finishes the run.
    assert main(["pretrain", "--out", str(run), "--resume"]) == 0, capsys.readouterr().err
    report = json.loads((run / "report.json").read_text())
    assert report["steps"] == 4 and (run / "backbone.safetensors").is_file()
    assert report["knn_history"][-1][0] == 4 and (run / "learning_curve.png").is_file()
    _whole(run)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS], ids=["ENOSPC", "EROFS"])
def test_a_folder_writer_that_fails_leaves_no_folder_and_one_sentence(tmp_path, monkeypatch, capsys, code):
    """The other verbs write their output folder whole (sslkit.atomic_files.write_folder_atomic); the
    rename of the finished folder failing leaves neither the folder nor its temporary sibling."""
    out = tmp_path / "noisy"
    with monkeypatch.context() as patch:
        _inject(patch, "noisy", code)
        status = main(["noise", "--data", "digits", "--split", "test", "--kind", "gaussian", "--level", "50",
                       "--out", str(out)])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 2 and lines[-1].startswith("sslkit noise: ") and "noisy" in lines[-1], err
    assert os.strerror(code) in lines[-1] and "run the command again" in lines[-1] and "Traceback" not in err
    assert list(tmp_path.iterdir()) == [], list(tmp_path.iterdir())
