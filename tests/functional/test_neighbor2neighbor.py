"""Neighbor2Neighbor sub-sampler, loss, γ ramp and learning-rate halvings (arXiv 2101.02824 / 2505.12191)."""

from __future__ import annotations

import pytest
import torch

from sslkit.functional.neighbor2neighbor import (NEIGHBOR_PAIRS, gamma_ramp, lr_factor, neighbor2neighbor_loss,
                                                 neighbor_subsample, sample_neighbor_pairs)


def _reference_subsample(images: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Dense loop: cell (i, j) position p -> pixel (2i + p // 2, 2j + p % 2)."""
    b, c, h, w = images.shape
    out = torch.empty(b, c, h // 2, w // 2, dtype=images.dtype)
    for n in range(b):
        for i in range(h // 2):
            for j in range(w // 2):
                p = int(positions[n, i, j])
                out[n, :, i, j] = images[n, :, 2 * i + p // 2, 2 * j + p % 2]
    return out


def test_pairs_are_distinct_4_neighbours_and_cover_all_eight():
    pairs = sample_neighbor_pairs((4, 3, 20, 30), generator=torch.Generator().manual_seed(0))
    assert pairs.shape == (4, 10, 15, 2) and pairs.dtype == torch.long
    first, second = pairs[..., 0], pairs[..., 1]
    assert (first != second).all()
    # neighbours share a row or a column of the cell: never the diagonal (0,3) / (1,2)
    assert ((first // 2 == second // 2) | (first % 2 == second % 2)).all()
    drawn = {tuple(p) for p in pairs.reshape(-1, 2).tolist()}
    assert drawn == {tuple(p) for p in NEIGHBOR_PAIRS.tolist()}
    # uniform over the 8 ordered pairs
    codes = (pairs[..., 0] * 4 + pairs[..., 1]).flatten()
    big = sample_neighbor_pairs((64, 1, 64, 64), generator=torch.Generator().manual_seed(1))
    codes = (big[..., 0] * 4 + big[..., 1]).flatten()
    freq = torch.bincount(codes, minlength=16).double() / len(codes)
    assert torch.allclose(freq[freq > 0], torch.full((8,), 1 / 8, dtype=torch.float64), atol=0.01)


def test_subsample_matches_dense_loop_and_channels_share_the_draw():
    gen = torch.Generator().manual_seed(2)
    images = torch.rand(2, 3, 6, 8, generator=gen)
    pairs = sample_neighbor_pairs(images.shape, generator=gen)
    for k in (0, 1):
        sub = neighbor_subsample(images, pairs[..., k])
        assert sub.shape == (2, 3, 3, 4)
        assert torch.equal(sub, _reference_subsample(images, pairs[..., k]))
    # channels share the draw: an image whose channels are identical gives identical sub-image channels
    same = images[:, :1].expand(-1, 3, -1, -1)
    sub = neighbor_subsample(same, pairs[..., 0])
    assert torch.equal(sub[:, 0], sub[:, 2])
    # g1 and g2 take different pixels of every cell
    coded = torch.arange(2 * 6 * 8, dtype=torch.float64).reshape(2, 1, 6, 8)
    assert (neighbor_subsample(coded, pairs[..., 0]) != neighbor_subsample(coded, pairs[..., 1])).all()


def test_sampler_is_deterministic_under_a_generator():
    a = sample_neighbor_pairs((2, 1, 8, 8), generator=torch.Generator().manual_seed(5))
    b = sample_neighbor_pairs((2, 1, 8, 8), generator=torch.Generator().manual_seed(5))
    c = sample_neighbor_pairs((2, 1, 8, 8), generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_odd_sizes_are_rejected():
    with pytest.raises(ValueError, match="even"):
        sample_neighbor_pairs((1, 1, 7, 8))
    with pytest.raises(ValueError, match="even"):
        neighbor_subsample(torch.rand(1, 1, 8, 5), torch.zeros(1, 4, 2, dtype=torch.long))


def test_loss_on_a_hand_computed_example():
    # one 1×1×1×2 sub-image pair
    out = torch.tensor([[[[0.5, 0.2]]]], requires_grad=True)   # f(g1 y)
    target = torch.tensor([[[[0.3, 0.6]]]])                     # g2 y
    full1 = torch.tensor([[[[0.4, 0.1]]]])                      # g1 f̄(y)
    full2 = torch.tensor([[[[0.3, 0.4]]]])                      # g2 f̄(y)
    # diff = (0.2, -0.4); rec = (0.04 + 0.16)/2 = 0.10
    # expected diff = (0.1, -0.3); diff - exp = (0.1, -0.1); reg = (0.01 + 0.01)/2 = 0.01
    loss, rec, reg = neighbor2neighbor_loss(out, target, full1, full2, gamma=1.5)
    assert rec.item() == pytest.approx(0.10, abs=1e-7)
    assert reg.item() == pytest.approx(0.01, abs=1e-7)
    assert loss.item() == pytest.approx(0.10 + 1.5 * 0.01, abs=1e-7)
    loss.backward()
    # d/d out: (2·diff + 1.5·2·(diff − exp)) / 2 = diff + 1.5·(diff − exp)
    assert torch.allclose(out.grad, torch.tensor([[[[0.2 + 0.15, -0.4 - 0.15]]]]), atol=1e-6)


def test_no_gradient_flows_through_the_full_image_term():
    full1 = torch.rand(1, 1, 2, 2, requires_grad=True)
    full2 = torch.rand(1, 1, 2, 2, requires_grad=True)
    out = torch.rand(1, 1, 2, 2, requires_grad=True)
    loss, _, _ = neighbor2neighbor_loss(out, torch.rand(1, 1, 2, 2), full1, full2, gamma=2.0)
    loss.backward()
    assert full1.grad is None and full2.grad is None and out.grad is not None


def test_gamma_ramp_values():
    assert [gamma_ramp(e, 4) for e in range(1, 5)] == [0.5, 1.0, 1.5, 2.0]
    assert gamma_ramp(1, 100) == pytest.approx(0.02) and gamma_ramp(100, 100) == 2.0
    assert gamma_ramp(50, 100) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        gamma_ramp(0, 10)


def _reference_multistep(epochs: int) -> list[float]:
    """The reference's schedule: MultiStepLR(milestones=int(20·E/100)−1, ...) stepped after each epoch."""
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([param], lr=1.0)
    ratio = epochs / 100
    sched = torch.optim.lr_scheduler.MultiStepLR(
        opt, milestones=[int(20 * ratio) - 1, int(40 * ratio) - 1, int(60 * ratio) - 1, int(80 * ratio) - 1], gamma=0.5)
    rates = []
    for _ in range(epochs):
        rates.append(opt.param_groups[0]["lr"])
        sched.step()  # no optimizer step needed to read the rates (and it avoids importing torch._dynamo)
    return rates


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before `optimizer.step\\(\\)`")
@pytest.mark.parametrize("epochs", [1, 2, 3, 5, 10, 12, 100])
def test_lr_halvings_match_the_reference_scheduler(epochs):
    assert [lr_factor(e, epochs) for e in range(1, epochs + 1)] == _reference_multistep(epochs)


def test_lr_halvings_for_100_epochs():
    assert lr_factor(19, 100) == 1.0 and lr_factor(20, 100) == 0.5
    assert lr_factor(40, 100) == 0.25 and lr_factor(80, 100) == 0.0625 and lr_factor(100, 100) == 0.0625
