"""Tests for sslkit.nn.vit: shapes, masking semantics, position interpolation, layer ids."""

import pytest
import torch
import torch.nn.functional as F

from sslkit.nn.vit import ARCHS, ViT, ViTConfig, build_vit


def tiny(**kw) -> ViT:
    cfg = dict(img_size=32, patch_size=4, embed_dim=32, depth=2, num_heads=2)
    cfg.update(kw)
    torch.manual_seed(0)
    return ViT(ViTConfig(**cfg)).eval()


@pytest.mark.parametrize(
    "img,patch,regs,chans,H,W",
    [(32, 4, 0, 3, 32, 32), (32, 4, 4, 1, 16, 16), (16, 8, 2, 3, 24, 40), (32, 4, 1, 1, 32, 20)],
)
def test_shapes(img, patch, regs, chans, H, W):
    m = tiny(img_size=img, patch_size=patch, num_registers=regs, in_chans=chans)
    out = m.forward_features(torch.randn(2, chans, H, W))
    h, w = H // patch, W // patch
    assert out["grid"] == (h, w)
    assert out["cls"].shape == (2, 32)
    assert out["patch"].shape == (2, h * w, 32)
    assert out["registers"].shape == (2, regs, 32)
    assert m.num_prefix_tokens == 1 + regs
    assert m(torch.randn(2, chans, H, W)).shape == (2, 32)


def test_outputs_are_after_final_norm():
    m = tiny(num_registers=2)
    with torch.no_grad():
        m.norm.weight.fill_(1.0)
        m.norm.bias.fill_(3.0)  # a LayerNorm output then has mean exactly 3 per token
        out = m.forward_features(torch.randn(2, 3, 32, 32))
    for key in ("cls", "patch", "registers"):
        assert torch.allclose(out[key].mean(-1), torch.full((), 3.0), atol=1e-5)


def test_forward_matches_cls_and_no_classifier():
    m = tiny()
    x = torch.randn(3, 3, 32, 32)
    assert torch.equal(m(x), m.forward_features(x)["cls"])
    assert not any(n.startswith("head.") for n, _ in m.named_parameters())
    names = {n for n, _ in m.named_parameters()}
    assert {"pos_embed", "cls_token", "mask_token", "patch_embed.proj.weight", "norm.weight"} <= names
    assert m.mask_token.shape == (1, 1, 32)


def test_all_false_masks_equal_unmasked():
    m = tiny(num_registers=1)
    x = torch.randn(2, 3, 32, 32)
    a = m.forward_features(x)
    b = m.forward_features(x, masks=torch.zeros(2, 64, dtype=torch.bool))
    for k in ("cls", "patch", "registers"):
        assert torch.equal(a[k], b[k])


def test_masked_patches_see_only_the_mask_token():
    m = tiny(num_registers=2)
    with torch.no_grad():
        m.mask_token.normal_()  # non-zero so the test cannot pass by accident of zero-init
    x1 = torch.randn(2, 3, 32, 32)
    x2 = x1.clone()
    # change pixels in patch rows 0-1 (patches 0..15) of image 0 and patch (3, 5) of image 1
    x2[0, :, 0:8, :] += 3.0
    x2[1, :, 12:16, 20:24] -= 2.0
    masks = torch.zeros(2, 64, dtype=torch.bool)
    masks[0, :16] = True
    masks[1, 3 * 8 + 5] = True
    a, b = m.forward_features(x1, masks), m.forward_features(x2, masks)
    for k in ("cls", "patch", "registers"):
        assert torch.equal(a[k], b[k])
    # unmasked, the same inputs differ: the mask is what hides the change
    assert not torch.allclose(m(x1), m(x2))
    # the mask token is inserted before the position embedding: two masked patches differ
    toks = m.prepare_tokens(x1, masks)
    p0, p1 = toks[0, m.num_prefix_tokens + 0], toks[0, m.num_prefix_tokens + 1]
    assert torch.allclose(p0 - p1, m.pos_embed[0, 1] - m.pos_embed[0, 2], atol=1e-6)
    assert torch.equal(p0, m.mask_token[0, 0] + m.pos_embed[0, 1])


def test_mask_shape_error():
    m = tiny()
    with pytest.raises(ValueError, match="masks"):
        m.forward_features(torch.randn(2, 3, 32, 32), masks=torch.zeros(2, 63, dtype=torch.bool))
    with pytest.raises(ValueError, match="multiple of the patch size"):
        m(torch.randn(1, 3, 30, 32))
    with pytest.raises(ValueError, match="channels"):
        m(torch.randn(1, 1, 32, 32))


def test_pos_interpolation_identity_at_native_size():
    m = tiny()
    assert m.interpolate_pos_embed(8, 8) is m.pos_embed


def test_pos_interpolation_other_sizes_follow_dinov2_recipe():
    m = tiny()
    for h, w in [(4, 4), (6, 10), (12, 12)]:
        pe = m.interpolate_pos_embed(h, w)
        assert pe.shape == (1, 1 + h * w, 32)
        assert torch.isfinite(pe).all()
        assert torch.equal(pe[:, 0], m.pos_embed[:, 0])  # cls row kept
        grid = m.pos_embed[:, 1:].reshape(1, 8, 8, 32).permute(0, 3, 1, 2)
        ref = F.interpolate(grid, scale_factor=((h + 0.1) / 8, (w + 0.1) / 8), mode="bicubic", antialias=False)
        assert torch.allclose(pe[:, 1:], ref.permute(0, 2, 3, 1).reshape(1, h * w, 32))
        # the +0.1 offset gives different sampling than an exact size= request when downscaling
    exact = F.interpolate(m.pos_embed[:, 1:].reshape(1, 8, 8, 32).permute(0, 3, 1, 2), size=(4, 4), mode="bicubic")
    assert not torch.allclose(m.interpolate_pos_embed(4, 4)[:, 1:], exact.permute(0, 2, 3, 1).reshape(1, 16, 32))


def test_native_32_model_runs_on_16px_local_crops_with_grad():
    m = tiny(num_registers=1).train()
    out = m.forward_features(torch.randn(4, 3, 16, 16))
    assert out["patch"].shape == (4, 16, 32) and out["grid"] == (4, 4)
    assert torch.isfinite(out["cls"]).all()
    # (a plain sum of a LayerNorm output has zero gradient, hence the random projection)
    (out["cls"] * torch.randn_like(out["cls"])).sum().backward()
    assert m.pos_embed.grad is not None and m.pos_embed.grad[:, 1:].abs().sum() > 0


def test_layer_id_covers_all_parameters():
    m = tiny(num_registers=2, depth=3)
    ids = {n: m.layer_id(n) for n, _ in m.named_parameters()}
    for n in ("patch_embed.proj.weight", "pos_embed", "cls_token", "reg_token", "mask_token"):
        assert ids[n] == 0
    assert ids["blocks.0.attn.qkv.weight"] == 1
    assert ids["blocks.2.mlp.fc2.bias"] == 3
    assert ids["norm.weight"] == ids["norm.bias"] == 4
    assert set(ids.values()) == {0, 1, 2, 3, 4}
    assert m.layer_id("head.weight") == 4


def test_layerscale_droppath_and_config():
    m = tiny(drop_path_rate=0.2, depth=3)
    rates = [blk.drop_path1.drop_prob for blk in m.blocks]
    assert rates == [0.2, 0.2, 0.2]  # uniform, as DINOv2
    assert torch.allclose(m.blocks[0].ls1.gamma, torch.full((32,), 1e-5))
    m0 = tiny(layerscale_init=None)
    assert not any("ls1" in n for n, _ in m0.named_parameters())


def test_config_dict_roundtrip_and_errors():
    cfg = ViTConfig(num_registers=4, layerscale_init=None)
    assert ViTConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="bogus"):
        ViTConfig.from_dict({"bogus": 1})
    with pytest.raises(ValueError, match="multiple"):
        ViTConfig(img_size=30, patch_size=4)


def test_build_vit_presets():
    assert set(ARCHS) == {"vit_tiny", "vit_small", "vit_base", "vit_large"}
    with torch.device("meta"):  # shapes only, no memory for the large presets
        m = build_vit("vit_small", img_size=224, patch_size=16)
        assert (m.embed_dim, len(m.blocks), m.blocks[0].attn.num_heads) == (384, 12, 6)
        m = build_vit("vit_large")
        assert (m.embed_dim, len(m.blocks), m.blocks[0].attn.num_heads) == (1024, 24, 16)
    m = build_vit({"embed_dim": 16, "depth": 1, "num_heads": 2}, num_registers=3)
    assert m.config.num_registers == 3 and m.num_prefix_tokens == 4
    assert build_vit(m.config).config == m.config
    with pytest.raises(ValueError, match="vit_small"):
        build_vit("vit_huge")


def test_forward_intermediates_still_works():
    m = tiny(num_registers=2)
    x = torch.randn(1, 3, 16, 24)
    final, inter = m.forward_intermediates(x, indices=1)
    assert inter[0].shape == (1, 32, 4, 6)
    assert torch.allclose(final[:, 0], m(x), atol=1e-6)
