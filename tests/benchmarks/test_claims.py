"""benchmarks/claims.py: the paired intervals and verdicts behind the claims table (issue 19, item 3)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def claims():
    spec = importlib.util.spec_from_file_location("claims", ROOT / "benchmarks" / "claims.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_paired_interval_is_the_student_t_interval(claims):
    values = [1.0, 2.0, 4.0, 3.0, 5.0]
    r = claims.paired(values, 0.0, "above")
    sd = math.sqrt(sum((v - 3.0) ** 2 for v in values) / 4)  # 1.5811
    half = 2.7764451 * sd / math.sqrt(5)  # t(0.975, 4)
    assert r["mean"] == pytest.approx(3.0)
    assert r["ci95"] == pytest.approx([3.0 - half, 3.0 + half], abs=1e-6)
    assert r["verdict"] == "holds" and not r["underpowered"]


@pytest.mark.parametrize(("values", "bound", "side", "verdict"), [
    ([4.0, 5.0, 6.0, 5.0, 5.0], 3.0, "above", "holds"),
    ([0.0, 1.0, -1.0, 0.5, -0.5], 3.0, "above", "refuted"),
    ([-2.0, 8.0, 3.0, 1.0, 6.0], 3.0, "above", "not shown"),
    ([-5.0, -4.0, -6.0, -5.0, -5.0], 0.0, "below", "holds"),
    ([2.0, 3.0, 4.0, 3.0, 3.0], 0.0, "below", "refuted"),
    ([2.0, 3.0, 4.0], 0.0, None, "no claim here"),
])
def test_verdicts(claims, values, bound, side, verdict):
    r = claims.paired(values, bound, side)
    assert r["verdict"] == verdict
    assert r["underpowered"] == (len(values) < claims.MIN_SEEDS)


def test_noisy_claim_pairs_arms_by_seed_and_level(claims, tmp_path):
    paths = []
    for seed in range(5):
        rows = []
        for sigma, gain in ((50.0, 0.05), (100.0, 0.0)):
            base = 0.30 + 0.01 * seed
            rows.append({"sigma": sigma, "arm": "noisy", "linear_top1": base, "knn_top1": base})
            rows.append({"sigma": sigma, "arm": "guided", "linear_top1": base + gain + 0.001 * seed,
                         "knn_top1": base + gain})
        path = tmp_path / f"noisy-{seed}.json"
        path.write_text(json.dumps({"data": "digits", "epochs": 6, "guidance": 2.0, "seed": seed, "rows": rows}))
        paths.append(path)
    out = claims.noisy_dinov2(paths)
    assert out["levels"]["50"]["seeds"] == [0, 1, 2, 3, 4]
    assert out["levels"]["50"]["linear_points"]["per_seed"] == pytest.approx([5.0, 5.1, 5.2, 5.3, 5.4])
    assert out["levels"]["50"]["linear_points"]["verdict"] == "holds"
    assert out["levels"]["100"]["linear_points"]["verdict"] == "refuted"
    assert out["verdict"]["linear_at_every_level"] == "refuted"
