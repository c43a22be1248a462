"""The bad-input matrix (issue 23, item 2): each row runs the real CLI on one class of bad input.

Every row must exit with status 2, print one sentence on stderr that names the key, file or value,
and leave the working directory byte-identical (no file changed, no directory created).
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from sslkit.cli import main
from sslkit.engine.run_lock import LOCK_NAME, process_start_time
from bad_input_check import assert_refused_cleanly
from tiny_overrides import tiny_dinov2

ROOT = Path(__file__).resolve().parents[2]
RECIPE = str(ROOT / "recipes" / "dinov2-tiny.yaml")
TINY = tiny_dinov2({"monitor.knn_every_n_steps": 0, "trainer.max_steps": 2})


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A finished tiny run, a noisy 1-channel copy, an RGB denoiser, a binary file and a small labelled folder."""
    root = tmp_path_factory.mktemp("world")
    assert main(["pretrain", "--recipe", RECIPE, "--data", "digits", "--out", str(root / "run"), *TINY]) == 0
    assert main(["noise", "--data", "digits", "--split", "test", "--kind", "gaussian", "--level", "50",
                 "--out", str(root / "noisy")]) == 0
    assert main(["denoise", "train", "--data", str(root / "noisy"), "--out", str(root / "rgb-denoiser"), "--epochs", "1",
                 "--steps-per-epoch", "1", "--width", "8", "--depth", "2", "--channels", "3"]) == 0
    (root / "binary.yaml").write_bytes(bytes(range(256)) * 8)
    (root / "locked").mkdir()  # held by a live process (pid 1 never ends)
    (root / "locked" / LOCK_NAME).write_text(json.dumps({"host": socket.gethostname(), "pid": 1,
                                                          "started": process_start_time(1), "since": "then"}))
    (root / "corrupt" / "a").mkdir(parents=True)  # one readable image, one that is not an image
    from PIL import Image

    Image.new("L", (16, 16), 128).save(root / "corrupt" / "a" / "good.png")
    (root / "corrupt" / "a" / "bad.png").write_bytes(b"not a png at all")
    (root / "results").mkdir()
    (root / "results" / "report.json").write_text("{}")
    return root


ROWS = {
    # pretrain: values passed through to Lightning and to the model
    "precision": (["pretrain", "--recipe", RECIPE, "--out", "{root}/new", "trainer.precision=bogus"], "trainer.precision"),
    "strategy": (["pretrain", "--recipe", RECIPE, "--out", "{root}/new", "trainer.strategy=bogus"], "trainer.strategy"),
    "zero devices": (["pretrain", "--recipe", RECIPE, "--out", "{root}/new", "trainer.devices=0"], "trainer.devices"),
    "gpu without gpu": (["pretrain", "--recipe", RECIPE, "--data", "digits", "--out", "{root}/new",
                         "trainer.accelerator=gpu"], "no CUDA GPU"),
    "heads do not divide width": (["pretrain", "--recipe", RECIPE, "--out", "{root}/new", "model.num_heads=5"],
                                  "model.num_heads"),
    "absurd width": (["pretrain", "--recipe", RECIPE, "--out", "{root}/new", "model.embed_dim=1000000000"],
                     "model.embed_dim"),
    "negative depth": (["pretrain", "--recipe", RECIPE, "--out", "{root}/new", "model.depth=-1"], "model.depth"),
    "zero max_steps": (["pretrain", "--recipe", RECIPE, "--out", "{root}/new", "trainer.max_steps=0"],
                       "trainer.max_steps"),
    "non-numeric": (["pretrain", "--recipe", RECIPE, "--out", "{root}/new", "optim.batch_size=big"],
                    "optim.batch_size"),
    "unknown key": (["pretrain", "--recipe", RECIPE, "--out", "{root}/new", "optim.base_lrr=0.1"], "optim.base_lrr"),
    "binary recipe": (["pretrain", "--recipe", "{root}/binary.yaml", "--out", "{root}/new"], "binary.yaml"),
    "missing recipe": (["pretrain", "--recipe", "{root}/nope.yaml", "--out", "{root}/new"], "nope.yaml"),
    "missing data": (["pretrain", "--recipe", RECIPE, "--data", "{root}/no-such-folder", "--out", "{root}/new", *TINY],
                     "no-such-folder"),
    "no recipe on a cpu": (["pretrain", "--data", "digits", "--out", "{root}/new"], "Without --recipe"),
    "conflicting data flags": (["pretrain", "--recipe", RECIPE, "--data", "digits", "--out", "{root}/new",
                                "data.source=shapes"], "both name the data"),
    # pretrain --resume
    "resume other data": (["pretrain", "--out", "{root}/run", "--resume", "--data", "shapes"], "data.source"),
    "resume other recipe": (["pretrain", "--out", "{root}/run", "--resume", "--recipe", RECIPE], "--recipe"),
    "resume finished": (["pretrain", "--out", "{root}/run", "--resume"], "is finished"),
    "resume not a run": (["pretrain", "--out", "{root}/noisy", "--resume"], "config.yaml"),
    "run directory in use": (["pretrain", "--recipe", RECIPE, "--data", "digits", "--out", "{root}/locked", *TINY],
                             "in use by process 1"),
    "existing run": (["pretrain", "--recipe", RECIPE, "--data", "digits", "--out", "{root}/run", *TINY], "--resume"),
    # evaluate
    "evaluate cuda": (["evaluate", "{root}/run", "--data", "digits", "--out", "{root}/new", "--device", "cuda"],
                      "--device cuda"),
    "evaluate bad device": (["evaluate", "{root}/run", "--data", "digits", "--out", "{root}/new", "--device", "gpu:x"],
                            "--device"),
    "evaluate zero batch": (["evaluate", "{root}/run", "--data", "digits", "--out", "{root}/new", "--batch-size", "0",
                             "--no-cache"], "--batch-size"),
    "evaluate unknown reference": (["evaluate", "{root}/run", "--data", "digits", "--out", "{root}/new", "--protocols",
                                    "knn", "--robustness", "--reference", "nope"], "--reference 'nope'"),
    "evaluate unknown protocol": (["evaluate", "{root}/run", "--data", "digits", "--out", "{root}/new", "--protocols",
                                   "magic"], "magic"),
    "evaluate k above the data": (["evaluate", "{root}/run", "--data", "digits", "--out", "{root}/new", "--protocols",
                                   "knn", "--knn-k", "10,5000", "--no-cache"], "k=5000"),
    "evaluate existing out": (["evaluate", "{root}/run", "--data", "digits", "--out", "{root}/results", "--protocols",
                               "knn"], "--overwrite"),
    "evaluate missing model": (["evaluate", "{root}/no-run", "--data", "digits", "--out", "{root}/new"], "no-run"),
    # noise / denoise
    "noise existing out": (["noise", "--data", "digits", "--split", "test", "--kind", "gaussian", "--level", "50",
                            "--out", "{root}/noisy"], "--overwrite"),
    "noise unreadable image": (["noise", "--data", "{root}/corrupt", "--kind", "gaussian", "--level", "50", "--out",
                                "{root}/new"], "bad.png"),
    "denoise unreadable image": (["denoise", "train", "--data", "{root}/corrupt", "--out", "{root}/new", "--epochs",
                                  "1", "--steps-per-epoch", "1", "--width", "8", "--depth", "2"], "bad.png"),
    "denoise depth": (["denoise", "train", "--data", "{root}/noisy", "--out", "{root}/new", "--depth", "9"], "depth"),
    "denoise zero epochs": (["denoise", "train", "--data", "{root}/noisy", "--out", "{root}/new", "--epochs", "0"],
                            "epochs"),
    "denoise channels": (["denoise", "apply", "--model", "{root}/rgb-denoiser", "--data", "{root}/noisy", "--out",
                          "{root}/new"], "3-channel"),
}


@pytest.mark.parametrize("row", sorted(ROWS))
def test_bad_input_is_one_sentence_and_changes_nothing(world, capsys, row):
    argv, needle = ROWS[row]
    argv = [a.replace("{root}", str(world)) for a in argv]
    assert_refused_cleanly(world, capsys, row, argv, needle, (f"sslkit {argv[0]}: ",))
