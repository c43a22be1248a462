"""`sslkit export RUN --format hf`: transformers' Dinov2Model loads the folder and computes the run's tokens."""

from __future__ import annotations

import json

import pytest
import torch

import sslkit
from sslkit.cli import main
from sslkit.nn.export import save_backbone
from sslkit.nn.vit import ViT, ViTConfig


def _run(tmp_path, registers=0, layerscale=1e-5):
    torch.manual_seed(0)
    vit = ViT(ViTConfig(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=2, in_chans=1,
                        num_registers=registers, layerscale_init=layerscale, drop_path_rate=0.0))
    with torch.no_grad():
        for p in vit.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_backbone(vit, tmp_path / "run", mean=[0.3], std=[0.2])
    return tmp_path / "run"


@pytest.mark.parametrize("layerscale", [1e-5, None])
def test_transformers_loads_the_export_with_the_same_tokens(tmp_path, layerscale):
    from transformers import Dinov2Model

    run = _run(tmp_path, layerscale=layerscale)
    out = tmp_path / "hf"
    assert main(["export", str(run), "--format", "hf", "--out", str(out)]) == 0
    hf = Dinov2Model.from_pretrained(out).eval()
    model = sslkit.load_backbone(run)
    x = torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model.forward_features(x)
        got = hf(pixel_values=x).last_hidden_state
    torch.testing.assert_close(got[:, 0], want["cls"], atol=1e-5, rtol=0)
    torch.testing.assert_close(got[:, 1:], want["patch"], atol=1e-5, rtol=0)
    assert json.loads((out / "sslkit.json").read_text())["mean"] == [0.3]
    # and sslkit reads its own export back (the hf layout of model.init / evaluate vit:PATH)
    from sslkit.nn.pretrained_weights import vit_from_weights

    again, info = vit_from_weights(out, in_chans=1)
    assert info["layout"] == "hf"


def test_register_tokens_and_an_existing_folder_are_refused(tmp_path, capsys):
    run = _run(tmp_path, registers=2)
    assert main(["export", str(run), "--out", str(tmp_path / "hf")]) == 2
    assert "register tokens" in capsys.readouterr().err and not (tmp_path / "hf").exists()
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("keep")
    assert main(["export", str(_run(tmp_path / "b")), "--out", str(tmp_path / "taken")]) == 2
    assert (tmp_path / "taken" / "x").read_text() == "keep"


@pytest.mark.parametrize("registers", [0, 2])
def test_timm_rebuilds_the_export_from_timm_json(tmp_path, registers):
    import timm
    from safetensors.torch import load_file

    run = _run(tmp_path, registers=registers)
    out = tmp_path / "timm"
    assert main(["export", str(run), "--format", "timm", "--out", str(out)]) == 0
    spec = json.loads((out / "timm.json").read_text())
    net = timm.create_model(spec["model_name"], pretrained=False, **spec["kwargs"]).eval()
    net.load_state_dict(load_file(str(out / "model.safetensors")))  # strict: every key, nothing extra
    model = sslkit.load_backbone(run)
    x = torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model.forward_features(x)
        got = net.forward_features(x)
    torch.testing.assert_close(got[:, 0], want["cls"], atol=1e-5, rtol=0)
    torch.testing.assert_close(got[:, 1 + registers:], want["patch"], atol=1e-5, rtol=0)


def test_onnx_export_computes_the_evaluate_features(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from sslkit.eval.models import load_encoder, pool_tokens
    from sslkit.nn.export_onnx import onnx_features

    run = _run(tmp_path, registers=2)
    out = tmp_path / "onnx"
    assert main(["export", str(run), "--format", "onnx", "--out", str(out), "image-size=40"]) == 0
    side = json.loads((out / "onnx.json").read_text())
    assert (side["image_size"], side["channels"], side["feature_dim"], side["mean"]) == (40, 1, 64, [0.3])
    encoder = load_encoder(str(run))
    x = torch.rand(4, 1, 40, 40, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = pool_tokens(encoder.tokens(x), "cls")
    torch.testing.assert_close(onnx_features(out / "model.onnx", x), want, atol=1e-4, rtol=0)
    # a size the patches do not tile is one sentence, and nothing is written
    assert main(["export", str(run), "--format", "onnx", "--out", str(tmp_path / "bad"), "--image-size", "36"]) == 2
    err = capsys.readouterr().err
    assert "not a multiple of the ViT's patch size 8; pass 32 or 40" in err and not (tmp_path / "bad").exists()


def test_onnx_export_without_onnxruntime_names_the_package(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    assert main(["export", str(_run(tmp_path)), "--format", "onnx", "--out", str(tmp_path / "o")]) == 2
    assert "pip install 'sslkit[onnx]'" in capsys.readouterr().err and not (tmp_path / "o").exists()
