"""ONNX export (issue 21, item 6): onnxruntime computes the backbone's evaluate features to 1e-4."""

from __future__ import annotations

import json

import pytest
import torch

from sslkit.nn.export_onnx import ONNX_JSON_NAME, onnx_features, write_onnx
from sslkit.nn.timm_backbone import TimmBackbone
from sslkit.nn.vit import ViT, ViTConfig

pytest.importorskip("onnxruntime")


def _perturbed(model):
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def _vit():
    return _perturbed(ViT(ViTConfig(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=2, in_chans=3,
                                    num_registers=1, layerscale_init=1e-5, drop_path_rate=0.0)))


def _cnn():
    return _perturbed(TimmBackbone("cnn_small", in_chans=1, widths=(8, 16)))


@pytest.mark.parametrize("build,size", [(_vit, 32), (_vit, 48), (_cnn, 24)])
def test_onnxruntime_features_equal_pytorch_at_two_batch_sizes(tmp_path, build, size):
    model = build()
    path = write_onnx(model, tmp_path, size, {"mean": [0.5], "std": [0.25]})
    c = model.config.in_chans
    for batch in (1, 5):  # the batch axis is dynamic: neither is the traced batch of 2
        images = torch.randn(batch, c, size, size, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            want = model(images)
        got = onnx_features(path, images)
        assert got.shape == want.shape == (batch, model.embed_dim)
        torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    side = json.loads((tmp_path / ONNX_JSON_NAME).read_text())
    assert (side["channels"], side["image_size"], side["feature_dim"]) == (c, size, model.embed_dim)
    assert side["mean"] == [0.5] and 0 <= side["onnxruntime_max_abs_diff"] <= 1e-4


def test_a_graph_that_computes_other_features_is_refused(tmp_path, monkeypatch):
    import sslkit.nn.export_onnx as export_onnx

    real = export_onnx.onnx_features
    monkeypatch.setattr(export_onnx, "onnx_features", lambda graph, images: real(graph, images) + 1e-3)
    with pytest.raises(ValueError, match="differ from PyTorch's by up to 1.00e-03"):
        write_onnx(_vit(), tmp_path, 32, {})
    assert not any(tmp_path.iterdir())
