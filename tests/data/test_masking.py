import math
import random

import pytest
import torch

from sslkit.data.masking import sample_block_mask, sample_ibot_masks


@pytest.mark.parametrize("grid", [(14, 14), (16, 16), (7, 12)])
def test_block_masks_respect_target_and_half_grid(grid):
    """Spec item 7: at most the target, at most 0.5N; and the generator gets close."""
    rng = random.Random(0)
    n = grid[0] * grid[1]
    fill = []
    for _ in range(150):
        target = rng.randint(0, n // 2)
        mask = sample_block_mask(grid, target, rng)
        assert mask.shape == (n,) and mask.dtype == torch.bool
        count = int(mask.sum())
        assert count <= target and count <= n // 2
        if target >= 8:
            fill.append(count / target)
    assert sum(fill) / len(fill) > 0.8


def test_zero_target_gives_empty_mask():
    assert not sample_block_mask((14, 14), 0, random.Random(0)).any()


@pytest.mark.parametrize("n_crops,expected_masked", [(64, 32), (5, 2), (1, 0)])
def test_number_of_masked_crops(n_crops, expected_masked):
    masks = sample_ibot_masks(n_crops, (14, 14), generator=random.Random(2))
    assert masks.shape == (n_crops, 196)
    assert int(masks.any(dim=1).sum()) == expected_masked


def test_targets_follow_the_ratio_edges():
    n_crops, n = 32, 196
    masks = sample_ibot_masks(n_crops, (14, 14), generator=random.Random(3))
    counts = sorted(int(c) for c in masks.sum(dim=1) if c > 0)
    n_masked = n_crops // 2
    edges = [0.1 + 0.4 * i / n_masked for i in range(n_masked + 1)]
    # The i-th smallest mask is bounded by the i-th upper edge; the total by their sum.
    assert sum(counts) <= sum(math.floor(n * e) for e in edges[1:])
    assert max(counts) <= math.floor(0.5 * n)
    assert min(counts) <= math.floor(n * edges[1])
    # Ratios span the range: the largest mask is far above the smallest.
    assert max(counts) > 3 * min(counts)


def test_deterministic_under_a_seed_and_shuffled():
    a = sample_ibot_masks(16, (14, 14), generator=random.Random(7))
    b = sample_ibot_masks(16, (14, 14), generator=random.Random(7))
    c = sample_ibot_masks(16, (14, 14), generator=random.Random(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # Masked crops are shuffled over the batch, not always the first n_m rows.
    assert not a[:8].any(dim=1).all()


def test_global_random_module_is_used_without_generator():
    random.seed(11)
    a = sample_ibot_masks(8, (14, 14))
    random.seed(11)
    b = sample_ibot_masks(8, (14, 14))
    assert torch.equal(a, b)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="mask_probability"):
        sample_ibot_masks(4, (14, 14), mask_probability=1.5)
    with pytest.raises(ValueError, match="ratio_range"):
        sample_ibot_masks(4, (14, 14), ratio_range=(0.5, 0.1))


def test_random_masks_hide_the_same_count_per_row_and_are_seeded():
    import random as _random

    from sslkit.data.masking import sample_random_masks

    a = sample_random_masks(5, 64, 0.75, _random.Random(3))
    b = sample_random_masks(5, 64, 0.75, _random.Random(3))
    assert a.dtype == torch.bool and a.shape == (5, 64)
    assert a.sum(1).tolist() == [48] * 5
    assert torch.equal(a, b)
    assert not torch.equal(a[0], a[1])  # rows differ
    # Uniform over positions: over many rows each position is hidden ~75 % of the time.
    many = sample_random_masks(2000, 16, 0.75, _random.Random(0)).float().mean(0)
    assert (many - 0.75).abs().max() < 0.05
    with pytest.raises(ValueError, match="mask ratio"):
        sample_random_masks(1, 16, 1.0, _random.Random(0))
