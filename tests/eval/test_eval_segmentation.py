"""Segmentation probe: mIoU against scikit-learn, the logit up-sampling shortcut, and learning the 'shapes'
foreground masks from patch tokens that carry them."""

import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import jaccard_score

from sslkit.data.errors import DataError
from sslkit.eval.models import open_eval_data
from sslkit.eval.segmentation import SegmentationConfig, load_masks, mean_iou, segmentation_probe


def test_mean_iou_equals_sklearn_macro_jaccard():
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 4, (3, 16, 16), generator=g)
    pred = torch.where(torch.rand(3, 16, 16, generator=g) < 0.7, target, torch.randint(0, 4, (3, 16, 16), generator=g))
    assert mean_iou(pred, target, 4) == pytest.approx(jaccard_score(target.flatten(), pred.flatten(), average="macro"))
    # A class absent from both prediction and target does not count.
    assert mean_iou(pred.clamp(max=2), target.clamp(max=2), 5) == pytest.approx(
        jaccard_score(target.clamp(max=2).flatten(), pred.clamp(max=2).flatten(), average="macro"))


def test_upsampling_logits_equals_upsampling_tokens_then_the_head():
    g = torch.Generator().manual_seed(1)
    tokens = torch.randn(2, 16, 8, generator=g)  # 4 x 4 grid, D = 8
    head = torch.nn.Linear(8, 3)
    grid = tokens.transpose(1, 2).reshape(2, 8, 4, 4)
    up_tokens = F.interpolate(grid, size=(13, 13), mode="bilinear", align_corners=False)
    via_tokens = torch.einsum("bdhw,cd->bchw", up_tokens, head.weight) + head.bias[None, :, None, None]
    via_logits = F.interpolate(head(tokens).transpose(1, 2).reshape(2, 3, 4, 4), size=(13, 13), mode="bilinear",
                               align_corners=False)
    assert torch.allclose(via_tokens, via_logits, atol=1e-5)


@pytest.fixture(scope="module")
def shapes_masks():
    data = open_eval_data("shapes", 32, {"num_samples": 240})
    return load_masks(data.splits["train"], 32), load_masks(data.splits["test"], 32)[:240]


def mask_tokens(masks, dim=24, noise=0.3, seed=0, shuffle=False):
    """Patch tokens (n, 64, dim) that linearly carry each 4x4 patch of the mask (or of another image's mask).

    One fixed projection for every split (it plays the role of the frozen encoder); ``seed`` draws the noise.
    """
    projection = torch.randn(16, dim, generator=torch.Generator().manual_seed(1234))
    g = torch.Generator().manual_seed(seed)
    if shuffle:
        masks = masks[torch.randperm(len(masks), generator=g)]
    patches = F.unfold(masks[:, None].float(), kernel_size=4, stride=4).transpose(1, 2)  # (n, 64, 16)
    return patches @ projection + noise * torch.randn(*patches.shape[:2], dim, generator=g)


@pytest.mark.slow
def test_probe_learns_the_shapes_foreground_masks(shapes_masks):
    train_masks, test_masks = shapes_masks
    assert 0.05 < train_masks.float().mean() < 0.5  # foreground is the minority class
    config = SegmentationConfig()  # the defaults: 30 epochs of AdamW
    informative = segmentation_probe(mask_tokens(train_masks), train_masks, mask_tokens(test_masks, seed=1),
                                     test_masks, num_classes=2, config=config)
    all_background = mean_iou(torch.zeros_like(test_masks), test_masks, 2)
    assert informative.miou > 0.8 and informative.iou[1] > 0.7
    assert informative.miou > all_background + 0.3
    # Tokens describing other images' masks carry nothing about these pixels: about the trivial score.
    uninformative = segmentation_probe(mask_tokens(train_masks, shuffle=True), train_masks,
                                       mask_tokens(test_masks, seed=1, shuffle=True), test_masks, num_classes=2,
                                       config=config)
    assert uninformative.miou < all_background + 0.1
    assert informative.grid == (8, 8) and informative.mask_size == (32, 32)


def test_masks_follow_the_image_transform_and_missing_masks_are_an_error():
    data = open_eval_data("shapes", 32, {"num_samples": 4})
    item = data.splits["train"][0]
    big = load_masks(data.splits["train"], 64)
    assert big.shape == (4, 64, 64)
    assert torch.equal(big[0, ::2, ::2], item["mask"].long())  # nearest up-sampling by 2
    with pytest.raises(DataError, match="needs a per-pixel 'mask'"):
        load_masks(open_eval_data("digits", 8).splits["test"], 8)
