"""SIGTERM and Ctrl-C: a checkpoint at the next step boundary, a resume hint, and an exact resume (issue 23, item 3)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sslkit.cli import main
from sslkit.engine.module import PretrainModule
from tiny_overrides import tiny_dinov2

RECIPE = str(Path(__file__).resolve().parents[2] / "recipes" / "dinov2-tiny.yaml")
TINY = tiny_dinov2({"monitor.knn_every_n_steps": 0, "trainer.checkpoint_every_n_steps": 100})  # 8 steps


def pretrain(out: Path, *extra: str) -> int:
    return main(["pretrain", "--recipe", RECIPE, "--data", "digits", "--out", str(out), *TINY, *extra])


def send_at_step(monkeypatch, signum: int, step: int) -> None:
    """Make the training step of ``step`` deliver ``signum`` to this process, as a scheduler or a user would."""
    original = PretrainModule.training_step

    def training_step(self, batch, batch_idx):
        if self.trainer.global_step == step:
            signal.raise_signal(signum)
        return original(self, batch, batch_idx)

    monkeypatch.setattr(PretrainModule, "training_step", training_step)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_checkpoints_the_step_and_resume_equals_an_uninterrupted_run(tmp_path, monkeypatch, capsys,
                                                                               signum, code):
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert pretrain(straight) == 0
    sigint_before = signal.getsignal(signal.SIGINT)
    with monkeypatch.context() as patch:
        send_at_step(patch, signum, 3)
        assert pretrain(stopped) == code
    err = capsys.readouterr().err
    assert f"stopped by {signal.Signals(signum).name} at step 4" in err  # step 3 (0-based) completes first
    assert f"sslkit pretrain --out {stopped} --resume" in err
    assert signal.getsignal(signal.SIGINT) == sigint_before  # Ctrl-C handling is given back
    assert (stopped / "checkpoints" / "last.ckpt").is_file() and not (stopped / "backbone.safetensors").exists()
    assert torch.load(stopped / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4

    assert main(["pretrain", "--out", str(stopped), "--resume"]) == 0
    wa, wb = load_file(straight / "backbone.safetensors"), load_file(stopped / "backbone.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    steps = [json.loads(line)["step"] for line in (stopped / "metrics.jsonl").read_text().splitlines()
             if "train/loss" in line]
    assert steps == list(range(8))  # every step logged once


@pytest.mark.slow
def test_sigterm_to_the_real_cli_exits_143_with_a_checkpoint(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "sslkit.cli", "pretrain", "--recipe", RECIPE, "--data", "digits", "--out", str(out),
           *tiny_dinov2({"optim.epochs": 200, "trainer.checkpoint_every_n_steps": 10_000})]
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    metrics, deadline = out / "metrics.jsonl", time.time() + 300
    while proc.poll() is None and time.time() < deadline and not (
            metrics.is_file() and metrics.read_text().count("train/loss") >= 2):
        time.sleep(0.1)
    assert proc.poll() is None, "the run ended before the signal"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err
    assert "stopped by SIGTERM" in err and "--resume" in err and "Traceback" not in err
    assert (out / "checkpoints" / "last.ckpt").is_file()
