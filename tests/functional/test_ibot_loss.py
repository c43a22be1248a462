import math

import pytest
import torch
import torch.nn.functional as F

from sslkit.functional.ibot import ibot_patch_loss, mask_token_weights

TAU_S = 0.1


def test_mask_token_weights_hand_example():
    masks = torch.tensor(
        [[True, True, False, False], [False, False, False, False], [False, True, True, True]]
    )
    weights = mask_token_weights(masks)
    torch.testing.assert_close(weights, torch.tensor([0.5, 0.5, 1 / 3, 1 / 3, 1 / 3]))


def test_mask_token_weights_requires_bool():
    with pytest.raises(ValueError, match="bool"):
        mask_token_weights(torch.zeros(2, 3))


def test_all_unit_cross_entropies_give_masked_crops_over_2b():
    """Spec item 4: per-patch CE = 1 everywhere gives n_masked_crops / 2B."""
    n_crops, n_patches, k = 8, 20, 16
    counts = [5, 0, 1, 0, 7, 0, 0, 3]  # 4 masked crops out of 2B = 8
    masks = torch.zeros(n_crops, n_patches, dtype=torch.bool)
    for crop, count in enumerate(counts):
        masks[crop, torch.randperm(n_patches)[:count]] = True
    m = int(masks.sum())
    x = math.log((k - 1) / math.expm1(1.0))  # -log softmax at the target is then exactly 1
    target = torch.arange(m) % k
    student = torch.zeros(m, k, dtype=torch.float64)
    student[torch.arange(m), target] = x * TAU_S
    teacher = F.one_hot(target, k).to(torch.float64)
    loss = ibot_patch_loss(student, teacher, mask_token_weights(masks, torch.float64), n_crops, TAU_S)
    assert loss.item() == pytest.approx(4 / 8, abs=1e-12)


def test_matches_dense_per_crop_mean():
    # Dense form (the reference's unmasked-gather variant): mean over crops of the
    # per-crop mean cross-entropy over its masked patches; empty crops count as 0.
    g = torch.Generator().manual_seed(0)
    n_crops, n_patches, k = 6, 12, 10
    masks = torch.rand(n_crops, n_patches, generator=g) < 0.4
    masks[2] = False
    s_dense = torch.randn(n_crops, n_patches, k, generator=g, dtype=torch.float64)
    t_dense = F.softmax(torch.randn(n_crops, n_patches, k, generator=g, dtype=torch.float64), -1)
    ce = -(t_dense * F.log_softmax(s_dense / TAU_S, -1)).sum(-1)
    expected = ((ce * masks).sum(-1) / masks.sum(-1).clamp(min=1)).mean()
    weights = mask_token_weights(masks, torch.float64)
    loss = ibot_patch_loss(s_dense[masks], t_dense[masks], weights, n_crops, TAU_S)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-12)


def test_gradient_and_shape_checks():
    s = torch.randn(3, 5, requires_grad=True)
    t = F.softmax(torch.randn(3, 5), -1)
    ibot_patch_loss(s, t, torch.ones(3), 4).backward()
    assert s.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="token_weights"):
        ibot_patch_loss(s, t, torch.ones(2), 4)
    with pytest.raises(ValueError, match="global crops"):
        ibot_patch_loss(s, t, torch.ones(3), 0)
