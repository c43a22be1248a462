"""GlyphsDataset: item contents, determinism, splits that share no handwriting sample, and its headroom."""

import math

import numpy as np
import pytest
import torch

from sslkit.data.builtin import _GLYPH_MAX_ROTATION, _GLYPH_SCALE_RANGE, GlyphsDataset, _digits_split, load_builtin
from sslkit.data.errors import DataError
from sslkit.data.stats import compute_mean_std


def test_item_contents_and_factor_ranges():
    ds = GlyphsDataset("train", num_samples=50, size=32)
    for i in range(50):
        item = ds[i]
        assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
        assert 0.0 <= item["image"].min() and item["image"].max() <= 1.0
        assert _GLYPH_SCALE_RANGE[0] <= item["scale"] <= _GLYPH_SCALE_RANGE[1]
        assert abs(item["rotation"]) <= _GLYPH_MAX_ROTATION
        assert item["mask"].shape == (32, 32) and item["mask"].any()
        # Grey on grey: the three channels are equal, so no colour is shared by the crops of one image.
        assert torch.equal(item["image"][0], item["image"][1]) and torch.equal(item["image"][1], item["image"][2])
    assert len(GlyphsDataset("train")) == 10000 and len(GlyphsDataset("test")) == 2000


def test_labels_follow_the_base_digits_of_the_split():
    images, labels = _digits_split()["test"]
    ds = GlyphsDataset("test", num_samples=2 * len(labels) + 5)
    got = [ds[i]["label"] for i in range(len(ds))]
    assert got[: len(labels)] == labels.tolist() and got[len(labels): 2 * len(labels)] == labels.tolist()
    counts = np.bincount(got, minlength=10)
    assert counts.min() > 0.8 * len(ds) / 10


def test_glyph_is_where_the_mask_says():
    ds = GlyphsDataset("test", num_samples=40)
    for i in range(40):
        item = ds[i]
        image, mask = item["image"][0], item["mask"]
        inside, outside = image[mask].mean(), image[~mask].mean()
        # Glyph and background sit in opposite grey bands ([0, 0.3] and [0.7, 1]).
        assert abs(float(inside - outside)) > 0.3


def test_both_polarities_and_narrow_grey_bands():
    ds = GlyphsDataset("train", num_samples=200, background="noise")
    light = []
    for i in range(200):
        item = ds[i]
        background = float(item["image"][0][~item["mask"]].median())
        glyph = float(item["color"][0])
        light.append(background > 0.5)
        assert (0.7 <= glyph <= 1.0) if background < 0.5 else (0.0 <= glyph <= 0.3)
    assert 70 < sum(light) < 130


def test_deterministic_access_order_free_and_seeded():
    a = GlyphsDataset("train", num_samples=30, seed=1)
    b = GlyphsDataset("train", num_samples=30, seed=1, cache=False)
    forward = [a[i]["image"] for i in range(30)]
    backward = [b[i]["image"] for i in reversed(range(30))][::-1]
    assert all(torch.equal(x, y) for x, y in zip(forward, backward))
    assert torch.equal(a[-1]["image"], a[29]["image"])
    assert not torch.equal(a[0]["image"], GlyphsDataset("train", num_samples=30, seed=2)[0]["image"])
    with pytest.raises(IndexError):
        a[30]


@pytest.mark.parametrize("background", ["noise", "texture", "plain"])
def test_backgrounds_render_and_stats_match(background):
    ds = GlyphsDataset("train", num_samples=600, background=background)
    mean, std = compute_mean_std(ds)
    assert np.allclose(mean, ds.mean, atol=0.03) and np.allclose(std, ds.std, atol=0.03)


def test_bad_arguments_fail_with_one_sentence():
    with pytest.raises(DataError, match="background"):
        GlyphsDataset(background="stars")
    with pytest.raises(DataError, match="num_samples"):
        GlyphsDataset(num_samples=0)
    with pytest.raises(DataError, match="split"):
        GlyphsDataset(split="val")


def test_registered_and_opened_by_name():
    from sslkit.data.sources import open_data

    splits = open_data("glyphs", num_samples=100)
    assert len(splits.train) == 100 and len(splits.queries) == 2000 and splits.num_classes == 10
    assert load_builtin("glyphs", "test", num_samples=10, background="plain").background == "plain"


def test_raw_pixels_are_a_poor_feature():
    """The headroom that makes glyphs useful: kNN on raw pixels stays far from the class."""
    from sslkit.eval.knn import KNNConfig, knn_protocol

    train, test = GlyphsDataset("train", num_samples=3000), GlyphsDataset("test", num_samples=1000)

    def stack(ds):
        return torch.stack([ds[i]["image"] for i in range(len(ds))]).flatten(1), torch.tensor(
            [ds[i]["label"] for i in range(len(ds))])

    (xtr, ytr), (xte, yte) = stack(train), stack(test)
    acc = knn_protocol(xtr - 0.5, ytr, xte - 0.5, yte, KNNConfig(ks=(20,), temperature=0.07)).accuracy[20]
    assert 0.15 < acc < 0.40
