"""SLURM preemption (issue 23, item 3): SIGUSR1 checkpoints at a step boundary and requeues the job;
the requeued job, running the same command line, resumes, and its weights equal an uninterrupted run's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sslkit.engine.slurm import requeued_restart, slurm_job_id, under_slurm
from tiny_overrides import tiny_dinov2

ROOT = Path(__file__).resolve().parents[2]
RECIPE = str(ROOT / "recipes" / "dinov2-tiny.yaml")
TINY = tiny_dinov2({"optim.epochs": 50, "trainer.max_steps": 80, "trainer.checkpoint_every_n_steps": 10_000,
                    "monitor.knn_every_n_steps": 0})
SLURM = {"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "pretrain", "SLURM_JOB_ID": "777", "SLURM_PROCID": "0",
         "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_NODELIST": "localhost", "SLURM_NTASKS_PER_NODE": "1"}


def test_job_id_and_detection(monkeypatch):
    for key in list(os.environ):
        if key.startswith("SLURM_"):
            monkeypatch.delenv(key)
    assert not under_slurm() and slurm_job_id() is None
    for key, value in SLURM.items():
        monkeypatch.setenv(key, value)
    assert under_slurm() and slurm_job_id() == "777"
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "770")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert slurm_job_id() == "770_3"
    monkeypatch.setenv("SLURM_JOB_NAME", "interactive")  # salloc + srun --job-name=interactive: not a batch job
    assert not under_slurm()


def test_only_the_same_jobs_restart_resumes(tmp_path, monkeypatch):
    (tmp_path / "config.yaml").write_text("resolved:\n  slurm_job_id: '777'\n")
    for key, value in SLURM.items():
        monkeypatch.setenv(key, value)
    assert not requeued_restart(tmp_path)  # first start
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert requeued_restart(tmp_path)
    monkeypatch.setenv("SLURM_JOB_ID", "778")  # another job given the same --out
    assert not requeued_restart(tmp_path)


@pytest.mark.slow
def test_sigusr1_requeues_and_the_restart_continues_bit_for_bit(tmp_path):

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "scontrol.calls"
    (bin_dir / "scontrol").write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\n")
    (bin_dir / "scontrol").chmod(0o755)
    env = {**os.environ, **SLURM, "OMP_NUM_THREADS": "1", "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(ROOT / "src")}
    # The reference runs in a process like the others: same thread count, so the same float sums.
    reference = tmp_path / "reference"
    plain = {k: v for k, v in env.items() if not k.startswith("SLURM_")}
    subprocess.run([sys.executable, "-m", "sslkit.cli", "pretrain", "--recipe", RECIPE, "--data", "digits", "--out",
                    str(reference), *TINY], env=plain, check=True, capture_output=True, timeout=300)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "sslkit.cli", "pretrain", "--recipe", RECIPE, "--data", "digits", "--out", str(run),
           *TINY]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics, deadline = run / "metrics.jsonl", time.time() + 300
    while proc.poll() is None and time.time() < deadline and not (
            metrics.is_file() and metrics.read_text().count("train/loss") >= 3):
        time.sleep(0.05)
    assert proc.poll() is None, f"the run ended before the signal: {proc.communicate()[1][-2000:]}"
    proc.send_signal(signal.SIGUSR1)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGUSR1, err
    assert "requeued" in err and "Traceback" not in err, err
    assert calls.read_text().split() == ["requeue", "777"]
    assert (run / "checkpoints" / "last.ckpt").is_file() and not (run / "report.json").exists()

    # The requeued job: the same command line, SLURM_RESTART_COUNT=1.
    done = subprocess.run(cmd, env={**env, "SLURM_RESTART_COUNT": "1"}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "requeued job" in done.stdout
    want, got = load_file(str(reference / "backbone.safetensors")), load_file(str(run / "backbone.safetensors"))
    assert all(torch.equal(want[k], got[k]) for k in want)
