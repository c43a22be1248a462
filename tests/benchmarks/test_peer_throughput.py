"""benchmarks/peer_throughput.py: the DINOv2 step-throughput comparison with peers (issue 22, item 1).

The test venv has neither lightly nor stable-pretraining: the smoke run times sslkit and bare only and must
skip the peers with one sentence each; the ratio arithmetic is checked against a direct computation.
"""

from __future__ import annotations

import importlib.util
import json
import statistics
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("peer_throughput", ROOT / "benchmarks" / "peer_throughput.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["peer_throughput"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_quick_run_times_sslkit_and_bare_and_skips_absent_peers(bench, tmp_path, capsys):
    if all(importlib.util.find_spec(m) for m in ("lightly", "stable_pretraining")):
        pytest.skip("both peers are installed here; this test is about the test venv, which has neither")
    out = tmp_path / "throughput.json"
    assert bench.main(["--quick", "--sides", "sslkit,bare,lightly,stable-pretraining", "--no-memory",
                       "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    run = result["runs"][0]
    absent = [p for p, m in (("lightly", "lightly"), ("stable-pretraining", "stable_pretraining"))
              if importlib.util.find_spec(m) is None]
    assert sorted(run["skipped"]) == sorted(absent)
    for peer in absent:
        sentence = run["skipped"][peer]
        assert sentence in printed and sentence.count(". ") == 0 and sentence.endswith(".")
    assert set(run["sides"]) == {"sslkit", "bare"} and "rounds" not in result["settings"]
    bare, ours = run["sides"]["bare"], run["sides"]["sslkit"]
    rounds = run["rounds"]
    assert len(ours["step_s_all"]) == len(bare["step_s_all"]) == rounds == 2
    assert bare["ratio_to_bare"]["per_round"] == [1.0, 1.0]
    expected = [b / s for b, s in zip(bare["step_s_all"], ours["step_s_all"])]
    assert ours["ratio_to_bare"]["per_round"] == pytest.approx(expected, rel=1e-12)
    assert ours["images_per_s"] == pytest.approx(4 / statistics.median(ours["step_s_all"]))
    # The DINOv2 step does the bare student's work plus a teacher forward and the heads: more FLOPs.
    assert ours["gflop"] > bare["gflop"] > 0
    assert ours["flop_ratio_to_bare"] == pytest.approx(bare["gflop"] / ours["gflop"])
    assert ours["peak_rss_mib"] is None and run["paired"] == {}


def test_ratios_point_the_documented_way(bench):
    times = {"bare": [1.0, 2.0, 1.0], "sslkit": [2.0, 4.0, 1.25], "lightly": [3.0, 4.0, 2.5]}
    flops = {"bare": 100, "sslkit": 125, "lightly": 200}
    rss = {"bare": 50.0, "sslkit": 60.0, "lightly": None}
    res = bench.summarise(times, flops, rss, batch_size=8)
    ours = res["sides"]["sslkit"]
    assert ours["ratio_to_bare"]["per_round"] == pytest.approx([0.5, 0.5, 0.8])  # bare time / side time
    assert ours["ratio_to_bare"]["median"] == pytest.approx(0.5)
    assert ours["images_per_s"] == pytest.approx(8 / 2.0)
    assert ours["flop_ratio_to_bare"] == pytest.approx(0.8)
    assert ours["rss_ratio_to_bare"] == pytest.approx(1.2)
    assert res["sides"]["lightly"]["rss_ratio_to_bare"] is None
    paired = res["paired"]["sslkit/lightly"]  # peer time / sslkit time: > 1 when sslkit is faster
    assert paired["per_round"] == pytest.approx([1.5, 1.0, 2.0])
    assert (paired["q1"], paired["median"], paired["q3"]) == pytest.approx((1.25, 1.5, 1.75))
    with pytest.raises(ValueError, match="cannot be paired"):
        bench.per_round_ratios([1.0, 2.0], [1.0])


def test_peers_backbone_holds_sslkits_weights(bench):
    """The peers' plain timm ViT computes what sslkit's ViT computes at the native size (same weights)."""
    import torch

    cfg = bench.side_config(bench.QUICK, "bare")
    vit = bench.seeded_backbone(cfg).eval()
    twin = bench.timm_twin(vit).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = vit.forward_features(x), twin.forward_features(x)
    assert torch.equal(ours["cls"], theirs[:, 0]) and torch.equal(ours["patch"], theirs[:, 1:])
    assert sum(p.numel() for p in twin.parameters()) == sum(p.numel() for p in vit.parameters()) - vit.embed_dim
