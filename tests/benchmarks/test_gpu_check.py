"""benchmarks/gpu_check.sh (issue 22, item 4): without a GPU it says so in one sentence and exits 0; its GPU
path's code runs end to end on the CPU (``--rehearse-on-cpu``: a tiny ViT, DDP equality on two gloo ranks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _env(**extra) -> dict:
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", **extra}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    return env


def test_without_a_gpu_it_says_so_and_exits_0(tmp_path):
    out = tmp_path / "gpu.json"
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--json", str(out)],
                          capture_output=True, text=True, timeout=120, env=_env(CUDA_VISIBLE_DEVICES=""))
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu_check: no NVIDIA GPU") and "exit 0" in lines[0]
    assert not out.exists()


@pytest.mark.slow
def test_the_gpu_path_rehearsed_on_the_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--rehearse-on-cpu", "--no-compile",
                           "--steps", "2", "--batch-size", "4", "--json", str(out)],
                          capture_output=True, text=True, timeout=600, env=_env())
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    record = json.loads(out.read_text())
    ddp = record["equality"][0]
    assert ddp["strategy"] == "ddp" and ddp["equal"] and ddp["max_abs_weight_diff"] < 1e-3
    (row,) = record["throughput"]
    assert row["images_per_s"] > 0 and row["step_tflop"] > 0 and not row["compiled"]
    assert "EQUAL" in proc.stdout and "img/s" in proc.stdout
