"""DigitsDataset: sizes, ranges, the fixed stratified split, determinism, stats."""

import numpy as np
import pytest
import torch

from sslkit.data.builtin import BUILTIN_DATASETS, DigitsDataset, load_builtin
from sslkit.data.errors import DataError
from sslkit.data.stats import compute_mean_std


def test_split_sizes_disjoint_and_stratified():
    train, test = DigitsDataset("train"), DigitsDataset("test")
    assert (len(train), len(test)) == (1437, 360)
    train_counts = np.bincount([train[i]["label"] for i in range(len(train))], minlength=10)
    test_counts = np.bincount([test[i]["label"] for i in range(len(test))], minlength=10)
    # Stratified: every class is ~20 % test (the split rounds per class).
    fraction = test_counts / (train_counts + test_counts)
    assert np.all(np.abs(fraction - 0.2) < 0.02)
    # Disjoint: no test image equals a train image (digits has no exact duplicates across them).
    train_images = torch.stack([train[i]["image"] for i in range(len(train))]).flatten(1)
    test_images = torch.stack([test[i]["image"] for i in range(len(test))]).flatten(1)
    assert torch.cdist(test_images[:50], train_images).min() > 0


def test_items_shape_range_and_channels():
    item = DigitsDataset("train", size=24)[5]
    assert item["image"].shape == (1, 24, 24) and item["image"].dtype == torch.float32
    assert 0.0 <= item["image"].min() and item["image"].max() <= 1.0 and item["image"].max() > 0.5
    assert isinstance(item["label"], int) and 0 <= item["label"] < 10
    rgb = DigitsDataset("train", size=24, channels=3)
    image = rgb[5]["image"]
    assert image.shape == (3, 24, 24) and torch.equal(image[0], image[2])
    assert torch.equal(image[:1], item["image"])
    assert rgb.mean == (DigitsDataset.MEAN,) * 3 and len(rgb.std) == 3


def test_split_ignores_seed_and_is_deterministic():
    a, b = DigitsDataset("test", seed=0), DigitsDataset("test", seed=7)
    assert all(torch.equal(a[i]["image"], b[i]["image"]) for i in range(0, 360, 37))


def test_transform_replaces_image_and_items_are_independent_copies():
    ds = DigitsDataset("train", transform=lambda x: x.sum())
    assert ds[0]["image"].ndim == 0
    plain = DigitsDataset("train")
    plain[0]["image"].zero_()
    assert plain[0]["image"].max() > 0


def test_mean_std_constants_match_the_data():
    mean, std = compute_mean_std(DigitsDataset("train"))
    assert abs(mean[0] - DigitsDataset.MEAN) < 0.02 and abs(std[0] - DigitsDataset.STD) < 0.02


def test_bad_arguments_raise_data_error():
    with pytest.raises(DataError, match="split"):
        DigitsDataset("val")
    with pytest.raises(DataError, match="channels"):
        DigitsDataset(channels=2)
    with pytest.raises(DataError, match="digits"):
        load_builtin("mnist", "train")
    assert isinstance(load_builtin("digits", "test"), BUILTIN_DATASETS["digits"])


def test_background_noise_spares_the_strokes_and_is_seeded():
    clean = DigitsDataset("train")
    noisy = DigitsDataset("train", background_noise=0.3)
    index = next(i for i in range(len(clean)) if (clean[i]["image"] == 1).sum() >= 4)
    x, y = clean[index]["image"], noisy[index]["image"]
    background, stroke = x == 0, x == 1
    assert background.sum() > 100 and stroke.sum() > 0
    # Full noise on the black background (clipped at 0: half the pixels stay 0, the rest have
    # E|n| = 0.3 * sqrt(2/pi) / 2 on average), none on a full stroke.
    assert torch.equal(y[stroke], x[stroke])
    assert (y[background] > 0).float().mean().item() == pytest.approx(0.5, abs=0.08)
    assert y[background].mean().item() == pytest.approx(0.3 * (2 / np.pi) ** 0.5 / 2, rel=0.15)
    assert torch.equal(noisy[index]["image"], y) and torch.equal(noisy[index - len(noisy)]["image"], y)
    assert not torch.equal(DigitsDataset("train", background_noise=0.3, seed=1)[index]["image"], y)
    assert not torch.equal(DigitsDataset("test", background_noise=0.3)[3]["image"], DigitsDataset("test")[3]["image"])
    with pytest.raises(DataError, match="background_noise"):
        DigitsDataset(background_noise=-0.1)


def test_background_noise_reaches_digits_through_open_data():
    from sslkit.data.sources import open_data

    splits = open_data("digits", background_noise=0.2)
    assert splits.train.background_noise == 0.2 and splits.queries.background_noise == 0.2
