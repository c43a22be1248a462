"""Vision SSTI: patch injection and LoRA on the fused qkv of an sslkit ViT."""

import importlib.util

import numpy as np
import pytest
import torch

from sslkit.analysis.ssti_vision import (VisionAuditSettings, checkerboard_patch, inject_patch, paste_patch,
                                         vision_ssti_audit)
from sslkit.data.errors import DataError
from sslkit.nn.vit import build_vit

needs_peft = pytest.mark.skipif(importlib.util.find_spec("peft") is None, reason="needs peft")


def test_patch_goes_into_exactly_round_rho_n_target_images():
    images = torch.rand(30, 3, 16, 16)
    labels = [i % 3 for i in range(30)]
    patch = checkerboard_patch(4, 3)
    out, mask = inject_patch(images, labels, target_class=2, rho_samp=0.6, patch=patch, seed=1)
    changed = [i for i in range(30) if not torch.equal(out[i], images[i])]
    assert changed == [i for i, m in enumerate(mask) if m]
    assert len(changed) == 6 and all(labels[i] == 2 for i in changed)
    assert all(torch.equal(out[i, :, 12:, 12:], patch) for i in changed)
    assert torch.equal(out[changed][:, :, :12], images[changed][:, :, :12])  # nothing else touched
    again, _ = inject_patch(images, labels, 2, 0.6, patch, seed=1)
    assert torch.equal(out, again)
    rnd = paste_patch(images[:5], patch, "random", torch.Generator().manual_seed(0))
    assert ((rnd != images[:5]).flatten(1).any(1)).all()
    with pytest.raises(DataError, match="larger"):
        paste_patch(images, checkerboard_patch(20, 3))


def _toy_images(n, seed):
    """Class = which half of the image is brighter; the patch is in neither cue."""
    g = torch.Generator().manual_seed(seed)
    x = 0.3 * torch.rand(n, 1, 16, 16, generator=g)
    y = torch.arange(n) % 2
    x[y == 0, :, :, :8] += 0.5
    x[y == 1, :, :, 8:] += 0.5
    x[:, :, 12:, 12:] = 0.3 * torch.rand(n, 1, 4, 4, generator=g)  # keep the patch corner cue-free
    return x, y.tolist()


def _vit():
    torch.manual_seed(0)
    return build_vit(dict(img_size=16, patch_size=4, in_chans=1, embed_dim=32, depth=2, num_heads=2,
                          layerscale_init=None))


@needs_peft
def test_lora_on_fused_qkv_trains_only_adapters():
    xtr, ytr = _toy_images(64, 0)
    vit = _vit()
    before = {k: v.clone() for k, v in vit.state_dict().items()}
    result = vision_ssti_audit(vit, xtr, ytr, xtr[:16], ytr[:16],
                               VisionAuditSettings(rank=2, steps=5, train_head=False, batch_size=16))
    model = result["model"]
    qkv = model.backbone.blocks[0].attn.qkv
    assert qkv.lora_A["default"].weight.shape == (2, 32) and qkv.lora_B["default"].weight.shape == (96, 2)
    assert result["targets"] == ["qkv", "attn.proj"]
    assert qkv.lora_B["default"].weight.abs().sum() > 0
    state = model.backbone.state_dict()
    for key, value in before.items():
        new_key = key if key in state else key.replace(".weight", ".base_layer.weight").replace(".bias", ".base_layer.bias")
        assert torch.equal(state[new_key], value), key


@needs_peft
@pytest.mark.slow
def test_patch_steers_the_vit_more_than_a_clean_run():
    xtr, ytr = _toy_images(256, 0)
    xte, yte = _toy_images(100, 1)
    settings = dict(rank=4, steps=150, batch_size=32, lr=3e-3, train_head=True, target_class=1)
    injected = vision_ssti_audit(_vit(), xtr, ytr, xte, yte, VisionAuditSettings(rho_samp=1.0, **settings))
    clean = vision_ssti_audit(_vit(), xtr, ytr, xte, yte, VisionAuditSettings(rho_samp=0.0, **settings))
    assert injected["n_injected"] == 128 and clean["n_injected"] == 0
    assert clean["clean_accuracy"] >= 0.9
    assert injected["flip_rate"] >= clean["flip_rate"] + 0.3, (injected["flip_rate"], clean["flip_rate"])
    assert injected["counts_all_patched"][1] > clean["counts_all_patched"][1]
    assert np.isfinite(injected["losses"]).all()
