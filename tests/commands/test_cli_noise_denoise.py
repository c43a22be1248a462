"""End to end: sslkit noise -> sslkit denoise train -> sslkit denoise apply on a tiny dataset."""

from __future__ import annotations

import json

import pytest
import torch

from sslkit.cli import main
from sslkit.data.builtin import ShapesDataset
from sslkit.data.noise import NoisyDataset, open_clean_source, open_noisy_copy


@pytest.mark.slow
def test_noise_then_denoise_train_and_apply(tmp_path, capsys):
    noisy_dir, model_dir, out_dir = tmp_path / "noisy", tmp_path / "n2n", tmp_path / "denoised"
    assert main(["noise", "--data", "shapes", "--num-samples", "24", "--size", "16", "--kind", "gaussian",
                 "--level", "100", "--seed", "7", "--out", str(noisy_dir)]) == 0
    meta = json.loads((noisy_dir / "noise.json").read_text())
    assert (meta["kind"], meta["level"], meta["seed"], meta["count"]) == ("gaussian", 100.0, 7, 24)
    assert meta["source"]["data"] == "shapes" and len(meta["files"]) == 24
    assert all((noisy_dir / f).is_file() for f in meta["files"])
    assert {f.split("/")[0] for f in meta["files"]} <= set(ShapesDataset.class_names)
    # the files are exactly the in-memory wrapper's images (same per-image seeds)
    reread, _ = open_noisy_copy(noisy_dir)
    wrapper = NoisyDataset(ShapesDataset("train", num_samples=24, size=16), "gaussian", 100, seed=7)
    assert torch.equal(reread[11]["image"], wrapper[11]["image"])
    assert 5 < meta["psnr_noisy"] < 15

    assert main(["denoise", "train", "--data", str(noisy_dir), "--out", str(model_dir), "--epochs", "2",
                 "--width", "8", "--depth", "2", "--batch-size", "4", "--steps-per-epoch", "3"]) == 0
    described = json.loads((model_dir / "denoiser.json").read_text())
    assert described["config"] == {"channels": 3, "width": 8, "depth": 2}
    assert [h["epoch"] for h in described["extra"]["history"]] == [1, 2]
    sample = described["extra"]["psnr_sample"]
    assert sample["images"] == 24 and abs(sample["psnr_noisy"] - meta["psnr_noisy"]) < 1e-6
    assert (model_dir / "denoiser.safetensors").is_file()

    assert main(["denoise", "apply", "--model", str(model_dir), "--data", str(noisy_dir), "--out", str(out_dir)]) == 0
    report = json.loads((out_dir / "denoise.json").read_text())
    assert report["files"] == meta["files"] and all((out_dir / f).is_file() for f in meta["files"])
    assert abs(report["psnr_noisy"] - meta["psnr_noisy"]) < 1e-6  # same clean reference, same noisy files
    assert isinstance(report["psnr_denoised"], float)
    assert report["noise"]["kind"] == "gaussian" and report["denoiser"]["config"]["width"] == 8
    assert "PSNR" in capsys.readouterr().out
    # the denoised copy opens aligned with the noisy one (item i <-> source item i) and knows its clean source
    denoised, denoised_meta = open_noisy_copy(out_dir)
    assert len(denoised) == 24 and denoised[11]["label"] == reread[11]["label"]
    clean = open_clean_source(denoised_meta)
    assert torch.equal(clean[11]["image"], ShapesDataset("train", num_samples=24, size=16)[11]["image"])
    # a second apply into the same folder refuses, with a one-line error and exit code 2
    assert main(["denoise", "apply", "--model", str(model_dir), "--data", str(noisy_dir), "--out", str(out_dir)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_user_errors_are_one_line(tmp_path, capsys):
    assert main(["noise", "--data", str(tmp_path / "missing"), "--kind", "gaussian", "--level", "50",
                 "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["noise", "--data", "digits", "--kind", "shot", "--level", "0", "--out", str(tmp_path / "o")]) == 2
    assert "λ" in capsys.readouterr().err
    assert main(["denoise", "apply", "--model", str(tmp_path / "none"), "--data", "digits",
                 "--out", str(tmp_path / "d")]) == 2
    assert not (tmp_path / "o").exists() and not (tmp_path / "d").exists()
