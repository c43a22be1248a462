"""End-to-end `sslkit sae train|compare` on tiny activations, an sslkit backbone, timm and the bundled LM."""

import csv
import json

import numpy as np
import pytest
import torch

from sslkit.cli import main
from sslkit.nn.export import save_backbone
from sslkit.nn.sae import load_sae
from sslkit.nn.vit import build_vit

FAST = ["--latents", "32", "--k", "4", "--epochs", "3", "--batch-size", "64"]


@pytest.fixture
def acts_file(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = 3.0 + 2.0 * (torch.randn(300, 4, generator=g) @ torch.randn(4, 16, generator=g)) + 0.1 * torch.randn(300, 16, generator=g)
    path = tmp_path / "acts.npy"
    np.save(path, x.numpy())
    return path, x


def test_train_from_an_activation_file(tmp_path, acts_file):
    path, x = acts_file
    out = tmp_path / "run"
    assert main(["sae", "train", "--acts", str(path), *FAST, "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["n_train"] + report["n_test"] == 300 and report["dim"] == 16
    assert report["test"]["l0"] == 4.0 and report["test"]["fvu"] < 0.5
    history = list(csv.DictReader((out / "history.csv").open()))
    assert [int(r["epoch"]) for r in history] == [1, 2, 3]
    assert (out / "training_curve.png").stat().st_size > 1000
    # The saved SAE with the saved standardisation reproduces the reported errors.
    sae = load_sae(out)
    scale = sae.meta["standardisation"]
    z = (x - scale["mean"]) / scale["std"]
    with torch.no_grad():
        total = float((sae(z)["recon"] - z).pow(2).sum())
    expected = (report["train"]["mse"] * report["n_train"] + report["test"]["mse"] * report["n_test"]) * 16
    assert total == pytest.approx(expected, rel=1e-4)
    assert sae.w_dec is not None  # PAM: untied


def test_train_with_adam_is_tied_by_default(tmp_path, acts_file):
    path, _ = acts_file
    assert main(["sae", "train", "--acts", str(path), *FAST, "--trainer", "adam", "--out", str(tmp_path / "a")]) == 0
    assert load_sae(tmp_path / "a").w_dec is None
    assert main(["sae", "train", "--acts", str(path), *FAST, "--trainer", "adam", "--no-tied", "--activation", "relu",
                 "--out", str(tmp_path / "b")]) == 0
    assert load_sae(tmp_path / "b").kind == "relu"


def test_train_on_an_sslkit_backbone_layer(tmp_path):
    torch.manual_seed(0)
    vit = build_vit({"img_size": 16, "patch_size": 4, "in_chans": 1, "embed_dim": 24, "depth": 2, "num_heads": 2})
    save_backbone(vit, tmp_path / "backbone", mean=[0.3], std=[0.3])
    out = tmp_path / "sae"
    code = main(["sae", "train", "--model", str(tmp_path / "backbone"), "--layer", "blocks.0", "--data", "digits",
                 "--max-samples", "480", "--save-acts", str(tmp_path / "acts.safetensors"), *FAST, "--out", str(out)])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["dim"] == 24 and report["n_train"] + report["n_test"] == 480
    assert report["source"]["layer"] == "blocks.0" and report["source"]["image_size"] == 16
    from sslkit.analysis.activations import load_activations

    assert load_activations(tmp_path / "acts.safetensors").shape == (480, 24)


def test_train_on_a_timm_layer(tmp_path):
    out = tmp_path / "sae"
    assert main(["sae", "train", "--model", "timm:resnet10t", "--layer", "layer1", "--data", "digits", "--image-size",
                 "16", "--tokens", "all", "--max-samples", "400", *FAST, "--out", str(out)]) == 0
    assert json.loads((out / "report.json").read_text())["dim"] == 64


def test_compare_writes_the_curve_and_the_plot(tmp_path, acts_file):
    path, _ = acts_file
    out = tmp_path / "cmp"
    code = main(["sae", "compare", "--acts", str(path), "--fractions", "10,100", "--untied-adam", *FAST,
                 "--out", str(out)])
    assert code == 0
    summary = list(csv.DictReader((out / "summary.csv").open()))
    assert {(r["trainer"], float(r["fraction"])) for r in summary} == {
        (t, f) for t in ("PAM-SGD", "Adam (tied)", "Adam (untied)") for f in (0.1, 1.0)}
    assert len(list(csv.DictReader((out / "curve.csv").open()))) == 6
    report = json.loads((out / "report.json").read_text())
    by = {(r["trainer"], r["fraction"]): r["test_mse"] for r in report["summary"]}
    assert report["pam_over_adam_tied_test_mse"]["10%"] == pytest.approx(by[("PAM-SGD", 0.1)] / by[("Adam (tied)", 0.1)])
    assert (out / "sample_efficiency.png").stat().st_size > 1000


@pytest.mark.parametrize("args,message", [
    ([], "exactly one source"),
    (["--acts", "ACTS", "--model", "smollm2"], "exactly one source"),
    (["--model", "timm:resnet10t"], "--layer"),
    (["--model", "timm:resnet10t", "--layer", "layer9", "--max-samples", "10"], "close names"),
    (["--acts", "ACTS", "--k", "40", "--latents", "32"], "k=40"),
    (["--acts", "ACTS", "--tied"], "untied"),
    (["--acts", "missing.npy"], "does not exist"),
])
def test_user_errors_are_one_line_with_exit_code_2(tmp_path, acts_file, capsys, args, message):
    path, _ = acts_file
    args = [str(path) if a == "ACTS" else a for a in args]
    assert main(["sae", "train", *args, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.mark.slow
def test_train_on_the_bundled_language_model(tmp_path):
    pytest.importorskip("transformers")
    out = tmp_path / "lm"
    code = main(["sae", "train", "--model", "smollm2", "--layer", "model.layers.3", "--max-samples", "300",
                 "--max-length", "32", *FAST, "--out", str(out)])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["dim"] == 576 and report["source"]["layer"] == "model.layers.3"
    # (held-out FVU of a 32-latent, 3-epoch SAE on 300 token rows is noisy: a few rows carry the
    # LM's massive activations, so only the training fit and the sparsity are asserted)
    assert report["train"]["fvu"] < 0.5 and report["test"]["l0"] == 4.0


def test_help_names_the_sources_and_subverbs(capsys):
    assert main(["sae"]) == 0
    text = capsys.readouterr().out
    assert "train" in text and "compare" in text
    with pytest.raises(SystemExit) as info:
        main(["sae", "train", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "--acts" in text and "smollm2" in text and "load_sae" in text
