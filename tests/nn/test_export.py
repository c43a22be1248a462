"""Tests for sslkit.nn.export: round trip, path handling, clear errors, atomic writes."""

import json

import pytest
import safetensors.torch
import torch

import sslkit
import sslkit.nn.export as export
from sslkit.nn.export import load_backbone, save_backbone
from sslkit.nn.vit import ViT, ViTConfig


def model(**kw):
    cfg = dict(img_size=16, patch_size=4, in_chans=1, embed_dim=16, depth=2, num_heads=2, num_registers=2)
    cfg.update(kw)
    torch.manual_seed(0)
    m = ViT(ViTConfig(**cfg))
    with torch.no_grad():  # non-default values everywhere, so a missed tensor would show
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return m.eval()


def test_roundtrip_identical(tmp_path):
    m = model()
    out = save_backbone(m, tmp_path / "run", mean=[0.5], std=[0.25], extra={"method": "dinov2", "epochs": 3})
    assert sorted(p.name for p in out.iterdir()) == ["backbone.json", "backbone.safetensors"]
    x = torch.randn(3, 1, 16, 16)
    masks = torch.rand(3, 16) < 0.5
    for target in (out, out / "backbone.json", out / "backbone.safetensors", str(out)):
        m2 = load_backbone(target)
        assert isinstance(m2, ViT) and not m2.training
        assert m2.config == m.config
        assert m2.meta == {"mean": [0.5], "std": [0.25], "extra": {"method": "dinov2", "epochs": 3}}
        for k, v in m.state_dict().items():
            assert torch.equal(v, m2.state_dict()[k]), k
        with torch.no_grad():
            a, b = m.forward_features(x, masks), m2.forward_features(x, masks)
        assert all(torch.equal(a[k], b[k]) for k in ("cls", "patch", "registers"))
    meta = json.loads((out / "backbone.json").read_text())
    assert meta["format_version"] == export.FORMAT_VERSION
    assert meta["sslkit_version"] == sslkit.__version__
    assert meta["config"] == m.config.to_dict()


def test_top_level_lazy_export(tmp_path):
    save_backbone(model(), tmp_path, mean=[0.0], std=[1.0])
    assert isinstance(sslkit.load_backbone(tmp_path), ViT)


def test_missing_files_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="backbone.json"):
        load_backbone(tmp_path)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_backbone(tmp_path / "nowhere")
    save_backbone(model(), tmp_path, mean=[0.0], std=[1.0])
    (tmp_path / "backbone.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "backbone.safetensors")):
        load_backbone(tmp_path / "backbone.json")


def test_corrupt_json_and_version(tmp_path):
    save_backbone(model(), tmp_path, mean=[0.0], std=[1.0])
    jp = tmp_path / "backbone.json"
    good = jp.read_text()
    jp.write_text(good[: len(good) // 2])
    with pytest.raises(ValueError, match=str(jp)):
        load_backbone(tmp_path)
    meta = json.loads(good)
    meta["format_version"] = 99
    jp.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="format version 99"):
        load_backbone(tmp_path)
    meta["format_version"] = 1
    meta["config"]["bogus"] = 1
    jp.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="bogus"):
        load_backbone(tmp_path)


def test_corrupt_weights(tmp_path):
    save_backbone(model(), tmp_path, mean=[0.0], std=[1.0])
    wp = tmp_path / "backbone.safetensors"
    wp.write_bytes(b"\x00\x01garbage")
    with pytest.raises(ValueError, match=str(wp)):
        load_backbone(tmp_path)


def test_shape_mismatch_lists_keys(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    save_backbone(model(), a, mean=[0.0], std=[1.0])
    save_backbone(model(num_registers=1, depth=3), b, mean=[0.0], std=[1.0])
    # pair a's json with b's weights, but keep the save ids consistent to reach the shape check
    (a / "backbone.safetensors").write_bytes((b / "backbone.safetensors").read_bytes())
    meta = json.loads((a / "backbone.json").read_text())
    meta.pop("save_id")
    (a / "backbone.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError) as err:
        load_backbone(a)
    msg = str(err.value)
    assert str(a / "backbone.safetensors") in msg and "reg_token" in msg and "blocks.2" in msg


def test_mixed_saves_detected(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    save_backbone(model(), a, mean=[0.0], std=[1.0])
    save_backbone(model(), b, mean=[0.0], std=[1.0])
    (a / "backbone.safetensors").write_bytes((b / "backbone.safetensors").read_bytes())
    with pytest.raises(ValueError, match="different saves"):
        load_backbone(a)


def test_failed_save_is_atomic(tmp_path, monkeypatch):
    good = model()
    save_backbone(good, tmp_path, mean=[0.0], std=[1.0], extra={"v": 1})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def broken_writer(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    # The weights writer, wherever save_backbone reaches it (sslkit.atomic_files calls it by this name).
    monkeypatch.setattr(safetensors.torch, "save_file", broken_writer)
    with pytest.raises(OSError, match="disk full"):
        save_backbone(model(depth=1), tmp_path, mean=[0.0], std=[1.0], extra={"v": 2})
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert after == before  # no temp files, old pair intact
    assert load_backbone(tmp_path).meta["extra"] == {"v": 1}


def test_bad_metadata_fails_before_writing(tmp_path):
    with pytest.raises(ValueError, match="mean"):
        save_backbone(model(), tmp_path, mean=[0.1, 0.2, 0.3], std=[1.0])
    with pytest.raises(ValueError, match="JSON"):
        save_backbone(model(), tmp_path, mean=[0.0], std=[1.0], extra={"x": object()})
    assert list(tmp_path.iterdir()) == []
