"""End-to-end runs of ``sslkit pretrain`` on tiny models and data (seconds each)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import sslkit
from sslkit.cli import main
from tiny_overrides import tiny_dinov2

RECIPE = str(Path(__file__).resolve().parents[2] / "recipes" / "dinov2-tiny.yaml")
# A 2-block width-64 ViT with a small head on 16-px digits: fast enough for CI.
TINY = tiny_dinov2({"monitor.baselines": None})


def run(args):
    return main(["pretrain", "--recipe", RECIPE, *args])


def test_help_is_useful(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "pretrain" in text and "shapes" in text
    with pytest.raises(SystemExit):
        main(["pretrain", "--help"])
    text = capsys.readouterr().out
    assert "key.sub=value" in text and "--resume" in text and "load_backbone" in text
    # Every recipe key is listed with its default.
    assert "teacher_temp=0.07" in text and "knn_pooling=cls" in text and "precision=32-true" in text


def test_no_recipe_on_a_cpu_is_refused_with_the_tiny_recipe_to_use(tmp_path, capsys):
    assert main(["pretrain", "--data", "digits", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "Without --recipe" in err and "recipes/dinov2-tiny.yaml" in err and not (tmp_path / "run").exists()


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "sslkit.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and sslkit.__version__ in out.stdout


def test_bad_key_fails_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "run"
    assert run(["--data", "digits", "--out", str(out), "optim.lrr=1"]) == 2
    err = capsys.readouterr().err
    assert "Unknown config key 'optim.lrr'" in err
    assert not out.exists()


def test_bad_data_path_names_it(tmp_path, capsys):
    missing = tmp_path / "no-such-folder"
    assert run(["--data", str(missing), "--out", str(tmp_path / "run")]) == 2
    assert str(missing) in capsys.readouterr().err


def test_pretrain_exports_a_loadable_teacher_and_a_report(tmp_path):
    out = tmp_path / "run"
    assert run(["--data", "digits", "--out", str(out), *TINY]) == 0
    for name in ("config.yaml", "metrics.jsonl", "metrics.csv", "tensorboard", "backbone.safetensors", "backbone.json", "report.json",
                 "learning_curve.png", "checkpoints/last.ckpt"):
        assert (out / name).exists(), name
    report = json.loads((out / "report.json").read_text())
    assert report["steps"] == 8
    assert set(report["knn_top1"]) == {"pretrained", "random_init", "raw_pixels"}
    assert all(0.0 <= v <= 1.0 for v in report["knn_top1"].values())
    # Digits are single-channel: the backbone was built for one channel.
    model = sslkit.load_backbone(out)
    assert model.config.in_chans == 1
    # The export is the EMA teacher of the final checkpoint, bit for bit.
    state = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    exported = load_file(out / "backbone.safetensors")
    prefix = "method.teacher.backbone."
    assert set(exported) == {k[len(prefix):] for k in state if k.startswith(prefix)}
    assert all(torch.equal(exported[k], state[prefix + k]) for k in exported)
    x = torch.randn(2, 1, 16, 16)
    assert model(x).shape == (2, 64)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train/loss"] for r in records if "train/loss" in r]
    assert len(losses) >= 6 and all(torch.isfinite(torch.tensor(losses)))
    csv_lines = (out / "metrics.csv").read_text().splitlines()
    assert csv_lines[0].startswith("step,") and "train/loss" in csv_lines[0] and len(csv_lines) == len(records) + 1
    # Refuses to overwrite a finished run without --resume.
    assert run(["--data", "digits", "--out", str(out), *TINY]) == 2


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert run(["--data", "digits", "--out", str(straight), *TINY]) == 0
    # Stop after 5 of the 8 steps (the schedules still span 8), then resume to the end.
    assert run(["--data", "digits", "--out", str(split), *TINY, "trainer.max_steps=5",
                "trainer.checkpoint_every_n_steps=5"]) == 0
    assert main(["pretrain", "--out", str(split), "--resume", "trainer.max_steps=null"]) == 0

    a = json.loads((straight / "report.json").read_text())
    b = json.loads((split / "report.json").read_text())
    assert b["steps"] == a["steps"] == 8
    assert b["final_loss"] == pytest.approx(a["final_loss"], abs=1e-6)
    wa, wb = load_file(straight / "backbone.safetensors"), load_file(split / "backbone.safetensors")
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)
    steps = [json.loads(line)["step"] for line in (split / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps)  # no duplicated future after the resume point


def _write_folder(root, n_per_class=12, size=16):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cells", "debris"):
        (root / cls).mkdir(parents=True)
        for i in range(n_per_class):
            pixels = (rng.random((size, size)) * 255).astype("uint8")
            Image.fromarray(pixels, mode="L").save(root / cls / f"{i}.png")
    bad = root / "cells" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return bad


def test_user_folder_single_channel_with_a_bad_file(tmp_path, capsys):
    data = tmp_path / "scans"
    bad = _write_folder(data)
    args = ["--data", str(data), *TINY, "optim.batch_size=8", "optim.iters_per_epoch=2", "optim.epochs=1",
            "optim.warmup_epochs=0.5"]
    # By default the unreadable file stops the run with a sentence naming it ...
    assert run([*args, "--out", str(tmp_path / "strict")]) == 2
    assert str(bad) in capsys.readouterr().err
    # ... and with skip_bad_files it is skipped and listed in the run directory.
    out = tmp_path / "lenient"
    assert run([*args, "--out", str(out), "data.skip_bad_files=true", "data.stats=compute"]) == 0
    assert str(bad) in (out / "bad_files.txt").read_text()
    model = sslkit.load_backbone(out)
    assert model.config.in_chans == 1
    report = json.loads((out / "report.json").read_text())
    assert "pretrained" in report["knn_top1"]  # labelled by subfolder: the kNN monitor ran


def test_precision_passes_through_to_lightning(tmp_path):
    # bf16 autocast on the CPU: the same recipe key a GPU cluster would use.
    out = tmp_path / "bf16"
    assert run(["--data", "digits", "--out", str(out), *TINY, "optim.epochs=0.5", "optim.warmup_epochs=0.25",
                "trainer.precision=bf16-mixed", "monitor.baselines=false"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["steps"] == 2 and report["final_loss"] is not None


def test_ddp_on_two_cpu_processes(tmp_path):
    # trainer.* passes through to Lightning: two gloo ranks on the CPU, launched by Lightning itself.
    out = tmp_path / "ddp"
    script = Path(sys.executable).parent / "sslkit"
    proc = subprocess.run([str(script), "pretrain", "--recipe", RECIPE, "--data", "digits", "--out", str(out), *TINY,
                           "optim.batch_size=8", "optim.epochs=1", "optim.warmup_epochs=0.5",
                           "trainer.strategy=ddp", "trainer.devices=2", "monitor.baselines=false"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    config = (out / "config.yaml").read_text()
    assert "global_batch: 16" in config  # 2 ranks x 8
    report = json.loads((out / "report.json").read_text())
    assert report["steps"] == 4 and "pretrained" in report["knn_top1"]
    assert sslkit.load_backbone(out).config.in_chans == 1


def test_dataloader_workers_do_not_change_the_run(tmp_path):
    # Every batch is a pure function of (seed, step): two worker processes give the same weights as none.
    common = ["--data", "digits", *TINY, "optim.epochs=1", "optim.warmup_epochs=0.5", "monitor.baselines=false"]
    assert run([*common, "--out", str(tmp_path / "w0"), "data.num_workers=0"]) == 0
    assert run([*common, "--out", str(tmp_path / "w2"), "data.num_workers=2"]) == 0
    a, b = load_file(tmp_path / "w0" / "backbone.safetensors"), load_file(tmp_path / "w2" / "backbone.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
