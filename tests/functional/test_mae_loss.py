"""MAE patchify and the masked pixel loss."""

import pytest
import torch

from sslkit.functional.mae import masked_patch_mse, patchify, unpatchify


def test_patchify_layout_and_round_trip():
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    p = patchify(x, 2)
    assert p.shape == (2, 6, 12)
    # Patch 1 is row 0, column 1: pixels (0..1, 2..3), flattened as (p, p, C).
    assert torch.equal(p[0, 1].reshape(2, 2, 3), x[0, :, 0:2, 2:4].permute(1, 2, 0))
    assert torch.equal(unpatchify(p, 2, (2, 3), 3), x)
    with pytest.raises(ValueError, match="multiple of the patch size"):
        patchify(torch.zeros(1, 3, 5, 4), 2)


def test_loss_counts_hidden_patches_only():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(2, 4, 3, generator=g), torch.randn(2, 4, 3, generator=g)
    mask = torch.tensor([[True, False, False, True], [False, True, False, False]])
    expected = ((pred - target) ** 2).mean(-1)[mask].mean()
    assert masked_patch_mse(pred, target, mask, norm_pix=False).item() == pytest.approx(expected.item(), rel=1e-6)
    changed = pred.clone()
    changed[~mask] += 100.0  # visible patches do not count
    assert masked_patch_mse(changed, target, mask, norm_pix=False).item() == pytest.approx(expected.item(), rel=1e-6)


def test_norm_pix_normalises_each_target_patch():
    target = torch.tensor([[[1.0, 2.0, 3.0, 4.0]]])
    mask = torch.ones(1, 1, dtype=torch.bool)
    standard = (target - target.mean()) / (target.var() + 1e-6).sqrt()
    assert masked_patch_mse(standard, target, mask, norm_pix=True).item() == pytest.approx(0.0, abs=1e-10)
    # An affine change of the target patch leaves the normalised loss unchanged.
    pred = torch.randn(1, 1, 4)
    a = masked_patch_mse(pred, target, mask, norm_pix=True)
    b = masked_patch_mse(pred, 3 * target + 7, mask, norm_pix=True)
    assert a.item() == pytest.approx(b.item(), rel=1e-5)
