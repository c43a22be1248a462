"""NTPS on synthetic linear sequences (spec test 1, arXiv 2505.17169): the label in the predictable block scores
high, the label in the noise block scores low, and the reference's ascending slicing flips the picture."""

from __future__ import annotations

import pytest
import torch

from sslkit.functional.ntps import NTPSStatistics, ntps


def linear_sequences(label_block: str, *, n: int = 3000, d: int = 16, m: int = 8, length: int = 12,
                     a: float = 0.9, seed: int = 0):
    """Token states h_t = [z_t, e_t]: z follows AR(1) z_{t+1} = a z_t + √(1−a²) ε in coordinates 1..m, e is i.i.d.
    noise in m+1..d. The binary label is the sign of a random projection of the mean of one block. Each sequence
    comes with its negation and flipped label so that E[x̄] = 0 exactly: the uncentred Σ_xy then has rank 1.
    Lengths vary (right padding holds garbage that the mask must hide)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.zeros(n, length, m)
    z[:, 0] = torch.randn(n, m, generator=g)
    for t in range(1, length):
        z[:, t] = a * z[:, t - 1] + (1 - a * a) ** 0.5 * torch.randn(n, m, generator=g)
    e = torch.randn(n, length, d - m, generator=g)
    h = torch.cat([z, e], dim=2)
    lengths = torch.randint(3, length + 1, (n,), generator=g)
    mask = (torch.arange(length)[None] < lengths[:, None]).float()
    block = slice(0, m) if label_block == "predictable" else slice(m, d)
    means = (h * mask[..., None]).sum(1) / lengths[:, None]
    w = torch.randn(d, generator=g)[block]
    labels = (means[:, block] @ w > 0).long()
    h = h + (1 - mask[..., None]) * 50.0  # garbage in the padding
    h = torch.cat([h, -h])
    h[n:] += (1 - mask[..., None]) * 100.0
    return h, torch.cat([mask, mask]), torch.cat([labels, 1 - labels])


def synthetic_statistics(label_block: str, batch: int = 500, **kwargs):
    h, mask, labels = linear_sequences(label_block, **kwargs)
    stats = NTPSStatistics(1, h.shape[-1], 2)
    for start in range(0, len(h), batch):
        stats.update(h[None, start:start + batch], mask[start:start + batch], labels[start:start + batch])
    return stats.layer(0)


@pytest.fixture(scope="module")
def predictable():
    return synthetic_statistics("predictable")


@pytest.fixture(scope="module")
def noise():
    return synthetic_statistics("noise")


def test_label_in_predictable_block_scores_high(predictable):
    result = ntps(predictable, k_v=8)
    assert result.k_u == 1  # antithetic sampling: Σ_xy has rank 1, so the default rule keeps one direction
    assert result.score > 0.95
    assert result.score_whitened > 0.95


def test_label_in_noise_block_scores_low(noise):
    result = ntps(noise, k_v=8)
    assert result.score < 0.1
    assert result.score_whitened < 0.1


def test_ascending_order_reproduces_reference_slicing_and_flips_the_result(predictable, noise):
    # The reference slices eigh's ascending output [:, :k]: V_k are then the *least* predictable directions.
    high = ntps(predictable, k_v=8, order="ascending")
    low = ntps(noise, k_v=8, order="ascending")
    assert high.score < ntps(predictable, k_v=8).score - 0.5
    assert low.score > ntps(noise, k_v=8).score + 0.5
    assert high.eigenvalues_v == sorted(high.eigenvalues_v)


def test_streaming_equals_one_batch(predictable):
    whole = synthetic_statistics("predictable", batch=10 ** 6)
    for name in ("sxx", "sxy", "c0", "c1"):
        torch.testing.assert_close(getattr(whole, name), getattr(predictable, name), rtol=1e-4, atol=1e-4)
