"""`sslkit taskprior` end to end on tiny data: features files, an sslkit run, prior files, the report."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from sklearn.datasets import load_digits

from sslkit.cli import main
from sslkit.eval.models import compute_features
from sslkit.eval.taskprior import task_prior_moments
from sslkit.functional import taskprior as tp
from sslkit.nn.export import save_backbone
from sslkit.nn.vit import ViT, ViTConfig


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Two labelled features files of graded quality and one unlabelled .npy, all on the same 300 digits."""
    root = tmp_path_factory.mktemp("taskprior")
    d = load_digits()
    x = torch.tensor(d.data[:300], dtype=torch.float32)
    y = torch.tensor(d.target[:300])
    g = torch.Generator().manual_seed(0)
    z = (x - x.mean(0)) @ torch.randn(64, 16, generator=g)
    paths = {"good": root / "good.safetensors", "noisy": root / "noisy.safetensors", "plain": root / "plain.npy"}
    save_file({"features": z, "labels": y}, str(paths["good"]))
    save_file({"features": z + 40 * torch.randn(z.shape, generator=g), "labels": y}, str(paths["noisy"]))
    np.save(paths["plain"], (z + 10 * torch.randn(z.shape, generator=g)).numpy())
    return paths, {"good": z, "labels": y}


def test_features_files_side_by_side_with_the_label_prior(files, tmp_path, capsys):
    paths, raw = files
    out = tmp_path / "out"
    code = main(["taskprior", str(paths["good"]), str(paths["noisy"]), "--T", "1", "0.01", "--tasks", "24",
                 "--epochs", "1", "--out", str(out)])
    assert code == 0
    result = json.loads((out / "taskprior.json").read_text())
    assert [m["name"] for m in result["models"]] == ["good", "noisy"]
    assert result["settings"]["prior"].startswith("labels")
    good = result["models"][0]
    e, v = task_prior_moments(raw["good"], raw["labels"], temperature=[1.0, 0.01], center=True)
    assert [c["expectation"] for c in good["closed_form"]] == pytest.approx(e.tolist(), rel=1e-9)
    assert [c["variance"] for c in good["closed_form"]] == pytest.approx(v.tolist(), rel=1e-9)
    assert len(good["probe"]["heldout_accuracy"]) == 24
    assert good["probe"]["mean"] > result["models"][1]["probe"]["mean"]  # the noisy copy probes worse
    assert good["closed_form"][0]["expectation"] > result["models"][1]["closed_form"][0]["expectation"]
    assert (out / "taskprior_accuracy_hist.png").stat().st_size > 10_000
    assert (out / "taskprior_expectation_vs_accuracy.png").is_file()
    text = capsys.readouterr().out
    assert "good" in text and "noisy" in text and "E[S]" in text


def test_models_prior_with_an_unlabelled_npy_and_report_merge(files, tmp_path):
    paths, raw = files
    out = tmp_path / "eval"
    out.mkdir()
    # A minimal evaluation report as `sslkit evaluate` leaves it (report.json with models, report.html).
    (out / "report.json").write_text(json.dumps({"models": [{"name": "good"}], "protocols": ["knn"]}))
    (out / "report.html").write_text("<html><body><h2>Results</h2><h2>Settings (every default used)</h2></body></html>")
    code = main(["taskprior", str(paths["good"]), str(paths["plain"]), "--prior", "models", "--tasks", "0",
                 "--no-center", "--T", "0.5", "--out", str(out)])
    assert code == 0
    result = json.loads((out / "taskprior.json").read_text())
    assert result["settings"]["prior"].startswith("models")
    plain = torch.from_numpy(np.load(paths["plain"]))
    prior = (tp.cosine_kernel(raw["good"]) + tp.cosine_kernel(plain)) / 2
    e, _ = tp.expectation_variance(model_kernel=tp.cosine_kernel(plain), prior_kernel=prior, temperature=0.5)
    assert result["models"][1]["closed_form"][0]["expectation"] == pytest.approx(float(e), rel=1e-9)
    report = json.loads((out / "report.json").read_text())
    assert report["protocols"] == ["knn"] and "taskprior" in report
    page = (out / "report.html").read_text()
    assert page.count('id="taskprior"') == 1 and page.index("Task priors") < page.index("<h2>Settings")
    # A second run replaces the section instead of adding another one.
    assert main(["taskprior", str(paths["good"]), str(paths["plain"]), "--tasks", "0", "--out", str(out)]) == 0
    assert (out / "report.html").read_text().count('id="taskprior"') == 1


def test_prior_from_a_kernel_file(files, tmp_path):
    paths, raw = files
    kernel = tp.rbf_kernel(raw["good"])
    np.save(tmp_path / "prior.npy", kernel.numpy())
    out = tmp_path / "out"
    assert main(["taskprior", str(paths["noisy"]), "--prior", str(tmp_path / "prior.npy"), "--tasks", "8",
                 "--epochs", "1", "--out", str(out)]) == 0
    result = json.loads((out / "taskprior.json").read_text())
    noisy = torch.from_numpy(np.asarray(
        __import__("safetensors.torch", fromlist=["load_file"]).load_file(str(paths["noisy"]))["features"]))
    e, v = task_prior_moments(noisy, prior_kernel=kernel, center=True)
    assert result["models"][0]["closed_form"][0]["expectation"] == pytest.approx(float(e), rel=1e-9)


def test_sslkit_run_directory_on_builtin_digits(tmp_path, monkeypatch):
    monkeypatch.setenv("SSLKIT_CACHE_DIR", str(tmp_path / "cache"))
    torch.manual_seed(0)
    vit = ViT(ViTConfig(img_size=16, patch_size=4, in_chans=1, embed_dim=32, depth=1, num_heads=2))
    run_dir = tmp_path / "tiny-run"
    save_backbone(vit, run_dir, mean=[0.3054], std=[0.3237])
    out = tmp_path / "out"
    assert main(["taskprior", str(run_dir), "--data", "digits", "--tasks", "8", "--epochs", "1",
                 "--kernel", "rbf", "--out", str(out)]) == 0
    result = json.loads((out / "taskprior.json").read_text())
    x, y = compute_features(str(run_dir), "digits", split="test", cache_dir=tmp_path / "cache")
    assert result["models"][0]["num_samples"] == len(y) == 360
    e, _ = task_prior_moments(x, y, kernel="rbf", center=True)
    assert result["models"][0]["closed_form"][0]["expectation"] == pytest.approx(float(e), rel=1e-6)


def test_default_prior_follows_the_labels(files, tmp_path):
    paths, _ = files
    # Unlabelled alone: the prior comes from the models; with a labelled file beside it, its labels are used.
    assert main(["taskprior", str(paths["plain"]), "--tasks", "0", "--out", str(tmp_path / "a")]) == 0
    assert json.loads((tmp_path / "a" / "taskprior.json").read_text())["settings"]["prior"].startswith("models")
    assert main(["taskprior", str(paths["plain"]), str(paths["good"]), "--tasks", "0", "--out", str(tmp_path / "b")]) == 0
    assert json.loads((tmp_path / "b" / "taskprior.json").read_text())["settings"]["prior"].startswith("labels")


def test_user_errors_are_one_line_with_exit_code_2(files, tmp_path, capsys):
    paths, _ = files
    missing = tmp_path / "nope.safetensors"
    assert main(["taskprior", str(missing), "--out", str(tmp_path / "o")]) == 2
    assert str(missing) in capsys.readouterr().err
    np.save(tmp_path / "small.npy", np.eye(5))
    assert main(["taskprior", str(paths["good"]), "--prior", str(tmp_path / "small.npy"), "--out", str(tmp_path / "o")]) == 2
    assert "(300, 300)" in capsys.readouterr().err
    assert main(["taskprior", str(paths["plain"]), "--prior", "labels", "--out", str(tmp_path / "o")]) == 2
    assert "unlabelled" in capsys.readouterr().err
    assert main(["taskprior", str(paths["good"]), "--T", "0", "--out", str(tmp_path / "o")]) == 2
    assert "--T" in capsys.readouterr().err
