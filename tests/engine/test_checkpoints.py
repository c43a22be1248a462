"""Crash-safe checkpoints: atomic writes, full disk, damaged newest file, pickles that run code, kill -9."""

import errno
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sslkit.engine import checkpoints
from sslkit.engine.checkpoints import candidate_checkpoints, readable_checkpoint, save_atomically
from tiny_overrides import tiny_dinov2


def state(step):
    return {"global_step": step, "state_dict": {"w": torch.full((3,), float(step))}}


def test_atomic_save_replaces_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "ck" / "last.ckpt"
    save_atomically(state(1), path)
    save_atomically(state(2), path)
    assert torch.load(path, weights_only=True)["global_step"] == 2
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]


def test_full_disk_is_one_clear_error_and_the_old_file_survives(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    save_atomically(state(1), path)

    def no_space(obj, f):
        f.write(b"partial bytes")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoints.torch, "save", no_space)
    with pytest.raises(OSError, match="No space left on device.*last.ckpt"):
        save_atomically(state(2), path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["global_step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_resume_skips_a_truncated_newest_checkpoint(tmp_path):
    for step in (4, 8):
        save_atomically(state(step), tmp_path / f"step{step:07d}.ckpt")
    save_atomically(state(12), tmp_path / "last.ckpt")
    assert [p.name for p in candidate_checkpoints(tmp_path)] == ["last.ckpt", "step0000008.ckpt", "step0000004.ckpt"]
    blob = (tmp_path / "last.ckpt").read_bytes()
    (tmp_path / "last.ckpt").write_bytes(blob[: len(blob) // 2])  # a crash by another tool mid-copy
    messages = []
    path, step = readable_checkpoint(tmp_path, log=messages.append)
    assert path.name == "step0000008.ckpt" and step == 8
    assert len(messages) == 1 and "last.ckpt" in messages[0] and "cannot be read" in messages[0]


def test_no_readable_checkpoint_names_every_file(tmp_path):
    (tmp_path / "last.ckpt").write_bytes(b"garbage")
    (tmp_path / "step0000004.ckpt").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="no checkpoint .* can be read: 'last.ckpt'.*'step0000004.ckpt'") as err:
        readable_checkpoint(tmp_path, log=lambda _: None)
    # Whole reasons, not a cut-off first line that blames weights_only.
    assert "'last.ckpt' (not a torch checkpoint" in str(err.value) and "'step0000004.ckpt' (empty file)" in str(err.value)
    assert "weights_only" not in str(err.value)
    with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
        readable_checkpoint(tmp_path / "empty", log=lambda _: None)


class _RunsCode:
    """Unpickling this object would create a file: the classic malicious checkpoint."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_pickle_that_runs_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    evil = {"global_step": 3, "payload": _RunsCode(str(marker))}
    with open(tmp_path / "last.ckpt", "wb") as f:
        torch.save(evil, f)
    assert not marker.exists()
    with pytest.raises(FileNotFoundError, match="other than tensors and numbers: not a checkpoint sslkit wrote"):
        readable_checkpoint(tmp_path, log=lambda _: None)
    assert not marker.exists()
    # Sanity: the file really would run code under a plain unpickler.
    with open(tmp_path / "plain.pkl", "wb") as f:
        pickle.dump(_RunsCode(str(marker)), f)
    pickle.loads((tmp_path / "plain.pkl").read_bytes())
    assert marker.exists()


RECIPE = str(Path(__file__).resolve().parents[2] / "recipes" / "dinov2-tiny.yaml")
TINY = tiny_dinov2({"optim.epochs": 5, "monitor.knn_every_n_steps": 0})


def _cli(out, *extra):
    return [sys.executable, "-m", "sslkit.cli", "pretrain", "--recipe", RECIPE, "--data", "digits",
            "--out", str(out), *TINY, *extra]


@pytest.mark.slow
def test_kill_9_then_resume_equals_an_uninterrupted_run(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run(_cli(straight), check=True, env=env, capture_output=True)

    proc = subprocess.Popen(_cli(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = killed / "checkpoints" / "step0000004.ckpt"
    deadline = time.time() + 300
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert not (killed / "backbone.safetensors").exists()

    resumed = subprocess.run([sys.executable, "-m", "sslkit.cli", "pretrain", "--out", str(killed), "--resume"],
                             env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    wa, wb = load_file(straight / "backbone.safetensors"), load_file(killed / "backbone.safetensors")
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)
    rows = [json.loads(line) for line in (killed / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows if "train/loss" in r]
    assert steps == list(range(20))  # every step once: nothing lost, nothing logged twice


@pytest.mark.slow
def test_nan_loss_stops_with_the_step_and_terms_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    from sslkit.cli import main
    from sslkit.methods.dinov2 import DINOv2

    original = DINOv2.forward
    calls = {"n": 0}

    def poisoned(self, batch, teacher_temp):
        out = original(self, batch, teacher_temp)
        calls["n"] += 1
        if calls["n"] > 5:  # the sixth step (index 5) blows up
            out["loss"] = out["loss"] * float("nan")
            out["dino_loss"] = out["dino_loss"] * float("nan")
        return out

    monkeypatch.setattr(DINOv2, "forward", poisoned)
    out = tmp_path / "run"
    code = main(["pretrain", "--recipe", RECIPE, "--data", "digits", "--out", str(out), *TINY,
                 "trainer.checkpoint_every_n_steps=2"])
    assert code == 2
    err = capsys.readouterr().err
    assert "at step 5" in err and "dino_loss=nan" in err and "last good checkpoint" in err
    path, step = readable_checkpoint(out / "checkpoints", log=lambda _: None)
    assert step == 4
    assert not (out / "backbone.safetensors").exists()
