"""The MAE encoder path (ViT.forward_visible) and decoder."""

import pytest
import torch

from sslkit.nn.mae_decoder import MAEDecoder, sincos_positions_2d
from sslkit.nn.vit import build_vit


def tiny_vit(**kw):
    torch.manual_seed(0)
    return build_vit("vit_tiny", img_size=16, patch_size=4, depth=2, embed_dim=32, num_heads=2,
                     layerscale_init=None, drop_path_rate=0.0, **kw).eval()


def masks_for(b, n, hidden):
    m = torch.zeros(b, n, dtype=torch.bool)
    for row in range(b):
        m[row, torch.randperm(n)[:hidden]] = True
    return m


def test_encoder_never_sees_hidden_patches():
    vit = tiny_vit()
    x = torch.randn(3, 3, 16, 16)
    masks = masks_for(3, 16, 12)
    out = vit.forward_visible(x, masks)
    assert out["patch"].shape == (3, 4, 32) and out["tokens"].shape == (3, 5, 32)
    # Change the pixels of every hidden patch: nothing the encoder returns may move.
    pixel_mask = masks.reshape(3, 1, 4, 1, 4, 1).expand(3, 3, 4, 4, 4, 4).reshape(3, 3, 16, 16)
    y = torch.where(pixel_mask, torch.randn_like(x) * 5, x)
    again = vit.forward_visible(y, masks)
    assert torch.allclose(again["tokens"], out["tokens"], atol=1e-6)
    # ... while a visible patch does move them.
    z = torch.where(pixel_mask, x, x + 1.0)
    assert not torch.allclose(vit.forward_visible(z, masks)["cls"], out["cls"], atol=1e-4)


def test_encoder_with_registers_and_uneven_masks():
    vit = tiny_vit(num_registers=2)
    x = torch.randn(2, 3, 16, 16)
    out = vit.forward_visible(x, masks_for(2, 16, 8))
    assert out["registers"].shape == (2, 2, 32) and out["patch"].shape == (2, 8, 32)
    uneven = masks_for(2, 16, 8)
    uneven[0, ~uneven[0]] = torch.tensor([True] + [False] * 7)
    with pytest.raises(ValueError, match="same number of visible patches"):
        vit.forward_visible(x, uneven)


def test_sincos_positions_are_distinct_and_bounded():
    pos = sincos_positions_2d(4, 5, 16)
    assert pos.shape == (20, 16)
    assert pos.abs().max() <= 1.0
    assert torch.cdist(pos, pos).add(torch.eye(20) * 10).min() > 1e-3  # every position differs
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_positions_2d(2, 2, 6)


def test_decoder_puts_visible_tokens_back_in_place():
    vit = tiny_vit()
    dec = MAEDecoder(32, patch_size=4, channels=3, dim=16, depth=1, num_heads=2).eval()
    x = torch.randn(2, 3, 16, 16)
    masks = masks_for(2, 16, 12)
    enc = vit.forward_visible(x, masks)
    pred = dec(enc["tokens"], masks, enc["grid"])
    assert pred.shape == (2, 16, 4 * 4 * 3)
    # Permuting which tokens are visible changes the prediction: positions are used.
    shuffled = enc["tokens"].clone()
    shuffled[:, 1:] = shuffled[:, 1:].flip(1)
    assert not torch.allclose(dec(shuffled, masks, enc["grid"]), pred, atol=1e-5)
    # Gradients flow from the pixels back through the scatter into the encoder and the mask token.
    pred.sum().backward()
    assert vit.patch_embed.proj.weight.grad.abs().sum() > 0
    assert dec.mask_token.grad.abs().sum() > 0


def test_class_token_kept_out_of_the_decoder_on_request():
    """``decode_prefix_tokens=False`` (stable-pretraining's MAE): the class token cannot change a prediction;
    the reference layout (default) lets it."""
    vit = tiny_vit()
    x = torch.randn(2, 3, 16, 16)
    masks = masks_for(2, 16, 12)
    enc = vit.forward_visible(x, masks)
    other_cls = enc["tokens"].clone()
    other_cls[:, 0] += 3.0
    torch.manual_seed(0)
    kept_out = MAEDecoder(32, patch_size=4, channels=3, dim=16, depth=1, num_heads=2, decode_prefix_tokens=False)
    torch.manual_seed(0)
    kept_in = MAEDecoder(32, patch_size=4, channels=3, dim=16, depth=1, num_heads=2)
    torch.testing.assert_close(kept_out(other_cls, masks, enc["grid"]), kept_out(enc["tokens"], masks, enc["grid"]))
    assert not torch.allclose(kept_in(other_cls, masks, enc["grid"]), kept_in(enc["tokens"], masks, enc["grid"]))
    assert kept_out(enc["tokens"], masks, enc["grid"]).shape == (2, 16, 4 * 4 * 3)
