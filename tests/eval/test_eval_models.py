"""compute_features / load_encoder: model specs, pooling, the on-disk cache and the errors a user can cause."""

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from sslkit.eval.models import (ModelSpecError, compute_features, feature_set, load_encoder, open_eval_data,
                                save_features_file)
from sslkit.nn.export import save_backbone
from sslkit.nn.vit import ViT, ViTConfig


def tiny_vit(in_chans=1, seed=0, registers=0):
    torch.manual_seed(seed)
    return ViT(ViTConfig(img_size=16, patch_size=4, in_chans=in_chans, embed_dim=32, depth=3, num_heads=2,
                         num_registers=registers, layerscale_init=None))


@pytest.fixture(scope="module")
def digits16():
    return open_eval_data("digits", 16)


class CountingModel(nn.Module):
    """Mean-pooled pixels through a fixed projection; counts how many batches it saw."""

    def __init__(self, out_ndim=2):
        super().__init__()
        self.proj = nn.Linear(1, 8)
        self.calls = 0
        self.out_ndim = out_ndim

    def forward(self, x):
        self.calls += 1
        tokens = self.proj(x.flatten(2).transpose(1, 2))  # (B, HW, 8)
        if self.out_ndim == 3:
            return tokens
        if self.out_ndim == 4:
            return tokens.transpose(1, 2).reshape(x.shape[0], 8, x.shape[2], x.shape[3])
        return tokens.mean(1)


def test_poolings_of_an_sslkit_vit_are_consistent(digits16):
    vit = tiny_vit(registers=2)
    feats = {p: feature_set(vit, digits16, "test", p, cache_dir=None).features
             for p in ("cls", "mean", "cls+mean", "patch")}
    n = len(digits16.splits["test"])
    assert feats["cls"].shape == (n, 32) and feats["patch"].shape == (n, 16, 32)
    assert torch.allclose(feats["mean"], feats["patch"].mean(1), atol=1e-6)
    assert torch.equal(feats["cls+mean"], torch.cat([feats["cls"], feats["mean"]], 1))
    # Direct forward: the class token after the final norm, registers excluded from the patches.
    image = digits16.splits["test"][0]["image"]
    x = ((image - digits16.mean[0]) / digits16.std[0])[None]
    out = vit.eval().forward_features(x)
    assert torch.allclose(feats["cls"][0], out["cls"][0], atol=1e-5)
    assert torch.allclose(feats["patch"][0], out["patch"][0], atol=1e-5)


def test_last_blocks_concatenate_class_tokens(digits16):
    vit = tiny_vit()
    one = feature_set(vit, digits16, "test", "cls", cache_dir=None).features
    three = feature_set(vit, digits16, "test", "cls", n_last_blocks=3, cache_dir=None).features
    assert three.shape[1] == 3 * one.shape[1]
    assert torch.allclose(three[:, -32:], one, atol=1e-5)
    assert not torch.allclose(three[:, :32], one, atol=1e-3)


def test_cache_makes_reevaluation_skip_the_model(tmp_path, digits16):
    model = CountingModel()
    first = feature_set(model, digits16, "test", cache_dir=tmp_path)
    calls = model.calls
    assert calls > 0 and first.info["cache"] == "miss"
    again = feature_set(model, digits16, "test", cache_dir=tmp_path)
    assert model.calls == calls and again.info["cache"] == "hit"
    assert torch.equal(again.features, first.features) and torch.equal(again.labels, first.labels)
    # Anything that changes the features changes the key: pooling, transform size, weights, split.
    other_size = feature_set(model, digits16, "test", image_size=8, cache_dir=tmp_path)
    assert other_size.info["cache"] == "miss" and other_size.info["cache_key"] != first.info["cache_key"]
    with torch.no_grad():
        model.proj.weight.add_(1.0)
    changed = feature_set(model, digits16, "test", cache_dir=tmp_path)
    assert changed.info["cache"] == "miss" and not torch.equal(changed.features, first.features)
    assert feature_set(model, digits16, "train", cache_dir=tmp_path).info["cache"] == "miss"
    # A damaged cache file is recomputed, not trusted.
    (tmp_path / f"{first.info['cache_key']}.safetensors").write_bytes(b"garbage")
    with torch.no_grad():
        model.proj.weight.sub_(1.0)
    repaired = feature_set(model, digits16, "test", cache_dir=tmp_path)
    assert repaired.info["cache"] == "miss" and torch.allclose(repaired.features, first.features)


def test_sslkit_run_directory_and_weights_file(tmp_path, digits16):
    vit = tiny_vit(seed=3)
    save_backbone(vit, tmp_path / "run", mean=[0.3], std=[0.3])
    x_dir, y_dir = compute_features(str(tmp_path / "run"), digits16, "test", cache_dir=None)
    x_file, _ = compute_features(str(tmp_path / "run" / "backbone.safetensors"), digits16, "test", cache_dir=None)
    assert torch.equal(x_dir, x_file)
    encoder = load_encoder(str(tmp_path / "run"))
    assert encoder.kind == "sslkit" and encoder.mean == (0.3,) and encoder.image_size == 16
    # The run's own normalisation is used, not the dataset's.
    image = digits16.splits["test"][5]["image"]
    expected = vit.eval()(((image - 0.3) / 0.3)[None])
    assert torch.allclose(x_dir[5], expected[0], atol=1e-5)
    assert torch.equal(y_dir, torch.tensor([item["label"] for item in digits16.splits["test"]]))


def test_timm_random_init_is_seeded_and_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    a = load_encoder("timm:resnet18", in_chans=1)
    assert torch.equal(torch.get_rng_state(), state)
    b = load_encoder("timm:resnet18", in_chans=1)
    assert a.fingerprint == b.fingerprint
    assert all(torch.equal(p, q) for p, q in zip(a.module.state_dict().values(), b.module.state_dict().values()))
    assert a.module.conv1.weight.shape[1] == 1  # built for the data's channels


def test_timm_weights_from_a_local_safetensors_file(tmp_path, digits16):
    random_init = load_encoder("timm:resnet18")  # 3 channels
    state = {k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v
             for k, v in random_init.module.state_dict().items()}
    state["fc.weight"] = torch.zeros(1000, 512)  # a classifier is allowed and ignored
    save_file({f"module.{k}": v.contiguous() for k, v in state.items()}, str(tmp_path / "w.safetensors"))
    spec = f"timm:resnet18@{tmp_path / 'w.safetensors'}"
    loaded = load_encoder(spec)
    assert torch.equal(loaded.module.conv1.weight, state["conv1.weight"])
    assert loaded.mean == (0.485, 0.456, 0.406) and loaded.image_size == 224
    # Grey digits go into the 3-channel model by repeating the channel.
    x, _ = compute_features(spec, digits16, "test", pooling="mean", image_size=32, cache_dir=None)
    assert x.shape == (len(digits16.splits["test"]), 512) and torch.isfinite(x).all()
    save_file({"conv1.weight": torch.zeros(64, 3, 7, 7)}, str(tmp_path / "partial.safetensors"))
    with pytest.raises(ModelSpecError, match="do not fit timm:resnet18"):
        load_encoder(f"timm:resnet18@{tmp_path / 'partial.safetensors'}")


def test_user_modules_with_pooled_and_token_outputs(digits16):
    pooled = compute_features(CountingModel(2), digits16, "test", cache_dir=None)[0]
    assert pooled.shape == (360, 8)
    tokens = CountingModel(3)
    tokens.load_state_dict(CountingModel(2).state_dict())
    mean = compute_features(tokens, digits16, "test", pooling="mean", cache_dir=None)[0]
    patch = compute_features(tokens, digits16, "test", pooling="patch", cache_dir=None)[0]
    assert patch.shape == (360, 256, 8) and torch.allclose(mean, patch.mean(1), atol=1e-6)
    with pytest.raises(ModelSpecError, match="without a class token"):
        compute_features(tokens, digits16, "test", pooling="cls", cache_dir=None)
    with pytest.raises(ModelSpecError, match="pooled features"):
        compute_features(CountingModel(2), digits16, "test", pooling="mean", cache_dir=None)


def test_model_output_of_the_wrong_rank_is_one_clear_error(digits16):
    with pytest.raises(ModelSpecError, match=r"must return features \(B, D\) or tokens \(B, N, D\)"):
        compute_features(CountingModel(4), digits16, "test", cache_dir=None)


def test_features_files(tmp_path):
    g = torch.Generator().manual_seed(0)
    train_x, test_x = torch.randn(20, 4, generator=g), torch.randn(6, 4, generator=g)
    train_y, test_y = torch.arange(20) % 3, torch.arange(6) % 3
    path = save_features_file(tmp_path / "f.safetensors", {"train": (train_x, train_y), "test": (test_x, test_y)})
    x, y = compute_features(str(path), None, "train")
    assert torch.equal(x, train_x) and torch.equal(y, train_y)
    x, y = compute_features(str(path), None, "test")
    assert torch.equal(x, test_x)
    plain = tmp_path / "plain.safetensors"
    save_file({"features": test_x}, str(plain))
    x, y = compute_features(str(plain), None, "test")
    assert torch.equal(x, test_x) and (y == -1).all()
    with pytest.raises(ModelSpecError, match="no 'train' split"):
        compute_features(str(plain), None, "train")


def test_not_an_sslkit_run_is_one_clear_error(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelSpecError, match="is not an sslkit run"):
        load_encoder(str(tmp_path))
    ckpt = tmp_path / "last.ckpt"
    ckpt.write_bytes(b"\0")
    with pytest.raises(ModelSpecError, match="training checkpoint"):
        load_encoder(str(ckpt))
    with pytest.raises(ModelSpecError, match="does not exist"):
        load_encoder(str(tmp_path / "missing"))
    with pytest.raises(ModelSpecError, match="timm has no model"):
        load_encoder("timm:resnet_that_does_not_exist")
    stray = tmp_path / "weights.safetensors"
    save_file({"w": torch.zeros(2)}, str(stray))
    with pytest.raises(ModelSpecError, match="is not an sslkit run"):
        load_encoder(str(stray))
