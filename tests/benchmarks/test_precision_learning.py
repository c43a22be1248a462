"""benchmarks/precision_learning.py: bf16 vs fp32 learning outcomes paired by seed (issue 18, item 5)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def precision():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("precision_learning", ROOT / "benchmarks" / "precision_learning.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(values: dict, breakage=None) -> dict:
    return {"rows": [{"method": m, "seed": s, "breakage": breakage, "pretrained": v} for (m, s), v in values.items()]}


def test_verdicts_and_pairing(precision, tmp_path):
    fp32 = {("a", s): 70 + s for s in range(5)} | {("b", s): 60 + 2 * s for s in range(5)}
    bf16 = {("a", s): 70 + s + d for s, d in enumerate([0.2, -0.1, 0.1, -0.2, 0.0])}  # same within noise
    bf16 |= {("b", s): 60 + 2 * s - 5 + d for s, d in enumerate([0.3, -0.3, 0.2, -0.2, 0.0])}  # 5 points worse
    (tmp_path / "f.json").write_text(json.dumps(_rows(fp32) | {"x": 1}))
    broken = _rows({("a", 0): 10.0}, breakage="loss_sign")["rows"]
    (tmp_path / "b.json").write_text(json.dumps({"rows": _rows(bf16)["rows"] + broken}))
    result = precision.compare(precision.clean_runs(tmp_path / "f.json"), precision.clean_runs(tmp_path / "b.json"))
    assert result["a"]["verdict"] == "within seed noise" and result["b"]["verdict"] == "worse"
    assert result["a"]["bf16"][0] == pytest.approx(70.2)  # the breakage row is not a clean run
    assert result["b"]["difference"]["mean"] == pytest.approx(-5.0)
    low, high = result["b"]["difference"]["ci95"]
    assert low < -5.0 < high < 0
    assert "| b |" in precision.table(result)
