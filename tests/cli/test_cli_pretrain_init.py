"""`model.init`: continue pretraining from saved weights (issue 21, items 1-2): the run starts from them (its
report scores the starting weights next to random init), and a file that does not fit stops before training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
from safetensors.torch import save_file

from sslkit.cli import main
from tiny_overrides import tiny_dinov2

RECIPE = str(Path(__file__).resolve().parents[2] / "recipes" / "dinov2-tiny.yaml")


@pytest.mark.slow
def test_continuing_from_a_run_starts_from_its_weights(tmp_path):
    first = tmp_path / "first"
    assert main(["pretrain", "--recipe", RECIPE, "--data", "digits", "--out", str(first),
                 *tiny_dinov2({"monitor.baselines": "true"})]) == 0
    second = tmp_path / "second"
    assert main(["pretrain", "--recipe", RECIPE, "--data", "digits", "--out", str(second),
                 *tiny_dinov2({"monitor.baselines": "true", "model.init": first / "backbone.safetensors",
                               })]) == 0
    a = json.loads((first / "report.json").read_text())["knn_top1"]
    b = json.loads((second / "report.json").read_text())["knn_top1"]
    # The second run starts from the first run's exported teacher: the same kNN on the same split and bank.
    assert b["initial"] == pytest.approx(a["pretrained"], abs=1e-9)
    assert "random_init" in b and "initial" not in a


def test_weights_that_do_not_fit_or_do_not_exist_stop_before_training(tmp_path, capsys):
    wide = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=56, embed_dim=128, depth=2,
                             num_heads=2, num_classes=0)
    save_file({k: v.contiguous() for k, v in wide.state_dict().items()}, str(tmp_path / "wide.safetensors"))
    for init, needle in ((tmp_path / "wide.safetensors", "do not fit the model"), (tmp_path / "nope.pth", "does not exist")):
        out = tmp_path / f"run-{Path(init).stem}"
        assert main(["pretrain", "--recipe", RECIPE, "--data", "digits", "--out", str(out),
                     *tiny_dinov2({"model.init": init})]) == 2
        err = capsys.readouterr().err
        assert "model.init" in err and needle in err, err
        assert not (out / "checkpoints").exists()


def test_a_frozen_backbone_keeps_the_loaded_weights_while_the_heads_train(tmp_path):
    # optim.freeze_backbone_epochs covering the whole run: the student backbone never moves, so its EMA teacher
    # (the export) still equals the loaded weights exactly, while the loss changes (the heads train).
    import torch
    from safetensors.torch import load_file

    source = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=16, patch_size=4,
                               embed_dim=64, depth=2, num_heads=2, num_classes=0, in_chans=1)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "w.safetensors"))
    out = tmp_path / "frozen"
    assert main(["pretrain", "--recipe", RECIPE, "--data", "digits", "--out", str(out),
                 *tiny_dinov2({"model.init": tmp_path / "w.safetensors", "optim.freeze_backbone_epochs": 2,
                               "model.layerscale_init": 1e-5})]) == 0
    exported = load_file(str(out / "backbone.safetensors"))
    for key, value in source.state_dict().items():
        torch.testing.assert_close(exported[key], value, atol=0, rtol=0, msg=key)
