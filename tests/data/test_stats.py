"""compute_mean_std against a direct dense computation."""

import pytest
import torch

from sslkit.data.errors import DataError
from sslkit.data.stats import compute_mean_std


class _RandomSizes(torch.utils.data.Dataset):
    """Protocol-conforming toy data: images of different sizes, optional transform."""

    channels = 3

    def __init__(self, n=23, transform=None):
        generator = torch.Generator().manual_seed(0)
        self.images = [
            torch.rand(3, 5 + i % 4, 7 + i % 3, generator=generator) ** (1 + i % 3) for i in range(n)
        ]
        self.transform = transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        image = self.images[i]
        return {"image": self.transform(image) if self.transform else image, "label": -1}


def _dense(images):
    pixels = torch.cat([im.reshape(3, -1) for im in images], dim=1).double()
    return pixels.mean(1), pixels.std(1, unbiased=False)


def test_matches_dense_computation_on_mixed_sizes():
    ds = _RandomSizes()
    mean, std = compute_mean_std(ds, batch_size=4)
    want_mean, want_std = _dense(ds.images)
    assert torch.allclose(torch.tensor(mean, dtype=torch.float64), want_mean, atol=1e-6)
    assert torch.allclose(torch.tensor(std, dtype=torch.float64), want_std, atol=1e-6)


def test_bypasses_transform_without_touching_the_dataset():
    transform = lambda x: x * 100  # noqa: E731
    ds = _RandomSizes(transform=transform)
    mean, _ = compute_mean_std(ds)
    assert torch.allclose(torch.tensor(mean, dtype=torch.float64), _dense(ds.images)[0], atol=1e-6)
    assert ds.transform is transform
    subset = torch.utils.data.Subset(ds, [2, 5, 7])
    mean, _ = compute_mean_std(subset)
    assert torch.allclose(torch.tensor(mean, dtype=torch.float64), _dense([ds.images[i] for i in (2, 5, 7)])[0],
                          atol=1e-6)


def test_seeded_subset():
    ds = _RandomSizes(n=40)
    a = compute_mean_std(ds, max_samples=10, seed=3)
    assert a == compute_mean_std(ds, max_samples=10, seed=3)
    assert a != compute_mean_std(ds, max_samples=10, seed=4)
    chosen = sorted(torch.randperm(40, generator=torch.Generator().manual_seed(3))[:10].tolist())
    want_mean, want_std = _dense([ds.images[i] for i in chosen])
    assert torch.allclose(torch.tensor(a[0], dtype=torch.float64), want_mean, atol=1e-6)
    assert torch.allclose(torch.tensor(a[1], dtype=torch.float64), want_std, atol=1e-6)


def test_empty_dataset_raises():
    with pytest.raises(DataError, match="empty"):
        compute_mean_std(_RandomSizes(n=0))
