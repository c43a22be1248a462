"""Corruption robustness in `sslkit evaluate`: two tiny random-init sslkit ViTs on 1-channel digits, the report's
cells recomputed by hand (corrupt, normalise, encode, kNN), mCE against the reference, cache keys, errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from sslkit.cli import main
from sslkit.data.augment import EvalTransform
from sslkit.eval.knn import KNNConfig, knn_protocol
from sslkit.eval.models import ImageCorruption, feature_set, load_encoder, open_eval_data, pool_tokens
from sslkit.eval.linear import LinearProbeConfig, linear_probe
from sslkit.eval.robustness import corruption_errors, fit_linear_classifier
from sslkit.nn.export import save_backbone
from sslkit.nn.vit import build_vit

CORRUPTIONS = "gaussian_noise,weather"
EXPANDED = ["gaussian_noise", "snow", "fog", "brightness"]


def _tiny_run(directory: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    vit = build_vit("vit_tiny", img_size=16, patch_size=4, in_chans=1, embed_dim=32, depth=1, num_heads=2,
                    layerscale_init=None)
    return save_backbone(vit, directory, mean=[0.3], std=[0.3])


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    root = tmp_path_factory.mktemp("robustness")
    run_a, run_b = _tiny_run(root / "vit-a", 0), _tiny_run(root / "vit-b", 1)
    out = root / "report"
    code = main(["evaluate", str(run_a), str(run_b), "--data", "digits", "--protocols", "knn", "--knn-k", "5",
                 "--robustness", "--robustness-samples", "40", "--robustness-k", "5", "--corruptions", CORRUPTIONS,
                 "--severities", "1,5", "--reference", str(run_b), "--robustness-linear",
                 "--linear-lrs", "0.01,0.1", "--linear-wds", "0,0.001", "--cache-dir", str(root / "cache"),
                 "--out", str(out)])
    assert code == 0
    return {"root": root, "runs": (run_a, run_b), "out": out,
            "report": json.loads((out / "report.json").read_text())}


def test_report_has_grid_means_and_reference_normalisation(evaluated):
    report = evaluated["report"]
    assert report["protocols"] == ["knn", "robustness"]
    a, b = (m["results"]["robustness"] for m in report["models"])
    for r in (a, b):
        assert list(r["accuracy"]) == EXPANDED
        assert all(list(row) == ["1", "5"] for row in r["accuracy"].values())
        assert r["n_test"] == 40 and r["k"] == 5 and r["reference"] == "vit-b"
        cells = [v for row in r["accuracy"].values() for v in row.values()]
        assert r["mean_corruption_accuracy"] == pytest.approx(sum(cells) / len(cells))
    assert b["mce"] == pytest.approx(1.0)  # the reference against itself
    # model A's corruption errors from the two grids, by hand (Hendrycks & Dietterich, arXiv 1903.12261)
    ces = []
    for name in EXPANDED:
        err = sum(1 - v for v in a["accuracy"][name].values())
        ref = sum(1 - v for v in b["accuracy"][name].values())
        ces.append(err / ref)
        assert a["ce"][name] == pytest.approx(err / ref)
    assert a["mce"] == pytest.approx(sum(ces) / len(ces))
    for r in (a, b):  # the linear probe, trained once on clean features, on every corrupted set
        assert list(r["linear"]["accuracy"]) == EXPANDED
        assert 0 <= r["linear"]["mean_corruption_accuracy"] <= 1 and r["linear"]["clean_accuracy"] > 0.15
    rows = {row["metric"].split(" (")[0]: row for row in report["table"]["rows"]}
    assert "robustness: mCE %" in rows and rows["robustness: mCE %"]["values"][1] == "100.0"


def test_a_cell_recomputed_by_hand(evaluated):
    """Corrupt the same 40 test images, normalise, encode and vote: the same accuracy as the report."""
    run_a = evaluated["runs"][0]
    report = evaluated["report"]
    data = open_eval_data("digits", 16)
    test = data.splits["test"]
    idx = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[:40].sort().values.tolist()
    encoder = load_encoder(str(run_a))
    transform = EvalTransform(16, (0.3,), (0.3,))
    corruption = ImageCorruption("fog", 5, seed=0)
    images = torch.stack([transform(corruption(test[i]["image"], position)) for position, i in enumerate(idx)])
    labels = torch.tensor([int(test[i]["label"]) for i in idx])
    with torch.no_grad():
        feats = pool_tokens(encoder.tokens(images), "cls")
    train = feature_set(encoder, data, "train", encoder=encoder, cache_dir=False)
    acc = knn_protocol(train.features, train.labels, feats, labels, KNNConfig(ks=(5,))).accuracy[5]
    assert report["models"][0]["results"]["robustness"]["accuracy"]["fog"]["5"] == pytest.approx(acc)
    # and the corruption really changed what the model sees
    clean = torch.stack([transform(test[i]["image"]) for i in idx])
    assert (clean - images).abs().mean() > 0.05


def test_heatmap_and_html(evaluated):
    out = evaluated["out"]
    png = out / "robustness_heatmap.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "robustness_heatmap.png" in evaluated["report"]["plots"]
    assert "mean corruption accuracy" in (out / "report.html").read_text()


def test_corruption_is_part_of_the_cache_key(evaluated, tmp_path):
    encoder = load_encoder(str(evaluated["runs"][0]))
    data = open_eval_data("digits", 16)
    kwargs = dict(encoder=encoder, cache_dir=tmp_path)
    clean = feature_set(encoder, data, "test", **kwargs)
    fog3 = feature_set(encoder, data, "test", corruption=ImageCorruption("fog", 3), **kwargs)
    fog5 = feature_set(encoder, data, "test", corruption=ImageCorruption("fog", 5), **kwargs)
    again = feature_set(encoder, data, "test", corruption=ImageCorruption("fog", 3), **kwargs)
    keys = {clean.info["cache_key"], fog3.info["cache_key"], fog5.info["cache_key"]}
    assert len(keys) == 3
    assert again.info["cache"] == "hit" and torch.equal(again.features, fog3.features)
    assert not torch.allclose(clean.features, fog3.features)
    # severity 0 is the identity: same features as clean (its own cache entry)
    zero = feature_set(encoder, data, "test", corruption=ImageCorruption("fog", 0), **kwargs)
    assert torch.allclose(zero.features, clean.features, atol=1e-6)


def test_corruption_errors_closed_form_and_nan():
    grid = {"x": {1: 0.8, 2: 0.6}}
    ref = {"x": {1: 0.6, 2: 0.4}}
    out = corruption_errors({"accuracy": grid, "clean_accuracy": 0.9}, {"accuracy": ref, "clean_accuracy": 0.7})
    assert out["ce"]["x"] == pytest.approx((0.2 + 0.4) / (0.4 + 0.6))
    assert out["relative_ce"]["x"] == pytest.approx((0.1 + 0.3) / (0.1 + 0.3))
    flat = corruption_errors({"accuracy": grid, "clean_accuracy": 0.9},
                             {"accuracy": {"x": {1: 1.0, 2: 1.0}}, "clean_accuracy": 1.0})
    assert math.isnan(flat["ce"]["x"]) and math.isnan(flat["mce"])


def test_user_errors_exit_2(evaluated, capsys):
    run_a = str(evaluated["runs"][0])
    assert main(["evaluate", run_a, "--data", "digits", "--protocols", "knn", "--knn-k", "5", "--robustness",
                 "--corruptions", "frost", "--no-cache"]) == 2
    assert "Unknown corruption" in capsys.readouterr().err
    assert main(["evaluate", run_a, "--data", "digits", "--protocols", "robustness", "--severities", "0,6",
                 "--no-cache"]) == 2
    assert main(["evaluate", run_a, run_a, "--data", "digits", "--protocols", "robustness", "--reference", "nope",
                 "--robustness-samples", "5", "--corruptions", "contrast", "--severities", "1", "--robustness-k", "5",
                 "--no-cache", "--out", str(evaluated["root"] / "bad")]) == 2


def test_linear_classifier_is_the_head_linear_probe_selects():
    g = torch.Generator().manual_seed(0)
    centres = 0.6 * torch.randn(4, 16, generator=g)
    y_train = torch.arange(400) % 4
    y_test = torch.arange(120) % 4
    x_train = centres[y_train] + 1.5 * torch.randn(400, 16, generator=g)
    x_test = centres[y_test] + 1.5 * torch.randn(120, 16, generator=g)
    config = LinearProbeConfig(lrs=(0.001, 0.01, 0.1), weight_decays=(0.0, 0.01), epochs=2, min_steps=200)
    probe = linear_probe(x_train, y_train, x_test, y_test, config)
    predict = fit_linear_classifier(x_train, y_train, 4, config)
    assert float((predict(x_test) == y_test).double().mean()) == pytest.approx(probe.test_accuracy)
    assert 0.5 < probe.test_accuracy < 1.0  # a task with an answer that is neither trivial nor hopeless
