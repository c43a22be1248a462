"""Pretraining's fast decode path (issue 21, item 5): an 8-bit file stays uint8 until its crops are cut, and a
JPEG much larger than the crops is decoded at reduced size (draft mode).

The crops are the same crops (the same random draws, so the same boxes, flips and photometric parameters)
as from the float image, up to the uint8 rounding of the resized pixels, and from the full-size decode up to
resampling; the stream stays a pure function of (seed, position).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Subset

from sslkit.data.augment import MultiCropAugmentation
from sslkit.data.folder import ImageFolderDataset, load_image
from sslkit.data.stream import AugmentedStream

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _photo(path, seed, size=(120, 90)):
    """A smooth colour image with edges (not noise: resizing it is meaningful), saved as JPEG."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size[1], 0:size[0]] / max(size)
    channels = [np.sin(2 * np.pi * (rng.uniform(0.5, 3) * x + rng.uniform(0.5, 3) * y + rng.uniform()))
                for _ in range(3)]
    pixels = (127.5 + 120 * np.stack(channels, axis=2)).astype(np.uint8)
    pixels[size[1] // 3: size[1] // 2, size[0] // 4: size[0] // 2] = rng.integers(0, 256, 3)  # a flat patch
    Image.fromarray(pixels).save(path, quality=95)
    return path


def _augmentation(**kwargs):
    return MultiCropAugmentation(48, 24, n_local=4, mean=MEAN, std=STD, **kwargs)


def test_load_image_keeps_eight_bit_pixels_undivided(tmp_path):
    path = _photo(tmp_path / "a.jpg", 0)
    pixels, floats = load_image(path, 3, keep_uint8=True), load_image(path, 3)
    assert pixels.dtype == torch.uint8 and pixels.shape == floats.shape == (3, 90, 120)
    assert torch.equal(pixels.float() / 255, floats)
    assert torch.equal(load_image(path, 1, keep_uint8=True).float() / 255, load_image(path, 1))
    deep = tmp_path / "deep.tif"  # a 16-bit file has no uint8 form: floats as always
    Image.fromarray(np.full((8, 8), 40000, dtype=np.uint16)).save(deep)
    assert load_image(deep, 1, keep_uint8=True).dtype == torch.float32


def test_uint8_crops_are_the_float_crops_up_to_rounding(tmp_path):
    image = load_image(_photo(tmp_path / "a.jpg", 1), 3, keep_uint8=True)
    aug = _augmentation()
    gaps = []
    for seed in range(6):
        torch.manual_seed(seed)
        fast = aug(image)
        after_fast = torch.rand(3)
        torch.manual_seed(seed)
        slow = aug(image.float() / 255)
        assert torch.equal(torch.rand(3), after_fast)  # the same number of draws, in the same order
        for kind in ("global", "local"):
            for a, b in zip(fast[kind], slow[kind]):
                gaps.append(((a - b) * torch.tensor(STD).view(3, 1, 1)).abs())  # back in [0, 1] pixel units
    gaps = torch.cat([g.flatten() for g in gaps])
    # Rounding a resized pixel to 1/255 moves it by <= 0.5/255 (plus the integer resampler's own rounding);
    # jitter factors up to 1.4 and the hue model can enlarge that a little, never to a different crop.
    # Measured: mean 0.15/255, max 3/255.
    assert gaps.mean() < 0.4 / 255 and gaps.max() < 6 / 255, (gaps.mean() * 255, gaps.max() * 255)


def test_the_stream_reads_uint8_through_subsets_and_stays_a_function_of_position(tmp_path):
    for i in range(4):
        _photo(tmp_path / f"{i}.jpg", 10 + i)
    dataset = ImageFolderDataset(tmp_path, channels=3)
    seen = []
    aug = _augmentation()
    original = aug._crops
    aug._crops = lambda image, group: seen.append(image.dtype) or original(image, group)
    stream = AugmentedStream(Subset(dataset, [3, 1, 2]), aug, seed=5)
    first = stream[7]
    assert seen and set(seen) == {torch.uint8}
    [stream[p] for p in (2, 30, 4)]
    again = stream[7]
    for kind in ("global", "local"):
        for a, b in zip(first["image"][kind], again["image"][kind]):
            assert torch.equal(a, b)
    # A transform that does not declare accepts_uint8 still gets float images in [0, 1].
    got = []
    AugmentedStream(dataset, lambda image: got.append(image) or image, seed=5)[0]
    assert got[0].dtype == torch.float32 and float(got[0].max()) <= 1.0


def test_skipping_a_bad_file_works_on_the_uint8_path(tmp_path):
    _photo(tmp_path / "0.jpg", 0)
    (tmp_path / "1.jpg").write_bytes(b"not a jpeg")
    _photo(tmp_path / "2.jpg", 2)
    dataset = ImageFolderDataset(tmp_path, channels=3, skip_bad_files=True, bad_files_log=tmp_path / "bad.jsonl")
    item = dataset.item(1, keep_uint8=True)
    assert item["path"].endswith("2.jpg") and item["image"].dtype == torch.uint8
    assert "1.jpg" in (tmp_path / "bad.jsonl").read_text()


@pytest.mark.parametrize("pixels", [np.zeros((6, 6, 3), np.uint8), np.full((6, 6, 3), 255, np.uint8)])
def test_saturated_images_stay_in_range(tmp_path, pixels):
    path = tmp_path / "flat.png"
    Image.fromarray(pixels).save(path)
    torch.manual_seed(0)
    views = _augmentation(blur=False)(load_image(path, 3, keep_uint8=True))
    low = (0 - torch.tensor(MEAN)) / torch.tensor(STD)
    high = (1 - torch.tensor(MEAN)) / torch.tensor(STD)
    for view in views["global"] + views["local"]:
        assert bool(((view >= low.view(3, 1, 1) - 1e-5) & (view <= high.view(3, 1, 1) + 1e-5)).all())


def test_decode_reduction_never_enlarges_the_smallest_crop():
    aug = MultiCropAugmentation(224, 96, mean=MEAN, std=STD)
    assert aug.decode_reduction(500, 375) == 1  # smallest global crop: 212 px short side < 224
    assert aug.decode_reduction(4000, 3000) == 4 and aug.decode_reduction(9000, 7000) == 8
    from sslkit.data.augment import _sample_crop_boxes

    torch.manual_seed(0)
    for (width, height) in ((4000, 3000), (1200, 2000), (900, 700)):
        r = aug.decode_reduction(width, height)
        for group in aug.groups:
            boxes = _sample_crop_boxes(4000, height // r, width // r, (group.scale[0], group.scale[0] * 1.01))
            assert min(min(h, w) for _, _, h, w in boxes) >= group.size - 1, (width, height, r, group.size)


def test_boxes_drawn_on_the_reduced_image_are_the_full_boxes_scaled():
    from sslkit.data.augment import _sample_crop_boxes

    for scale in ((0.32, 1.0), (0.05, 0.32)):
        torch.manual_seed(3)
        full = torch.tensor(_sample_crop_boxes(3000, 3000, 4000, scale), dtype=torch.float64)
        torch.manual_seed(3)
        reduced = torch.tensor(_sample_crop_boxes(3000, 750, 1000, scale), dtype=torch.float64) * 4
        # Integer rounding on the 4x coarser grid; rarely a try fits on one grid and not the other, and a later
        # try (another box) is taken.
        close = ((reduced - full).abs().max(dim=1).values <= 6).double().mean()
        assert close > 0.99, close
        area_full = full[:, 2] * full[:, 3] / (3000 * 4000)
        area_reduced = reduced[:, 2] * reduced[:, 3] / (3000 * 4000)
        q = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)  # the crop-area distribution, percentile by percentile
        assert float((area_reduced.quantile(q) - area_full.quantile(q)).abs().max()) < 0.005
        assert abs(float(area_reduced.mean() - area_full.mean())) < 1e-3


def test_draft_decoding_gives_the_same_crops_up_to_resampling(tmp_path):
    path = _photo(tmp_path / "big.jpg", 4, size=(1600, 1200))
    aug = MultiCropAugmentation(96, 48, n_local=4, mean=MEAN, std=STD)
    assert aug.decode_reduction(1600, 1200) == 4
    small = load_image(path, 3, keep_uint8=True, reduction=aug.decode_reduction)
    assert small.shape == (3, 300, 400)
    gaps = []
    for seed in range(4):
        torch.manual_seed(seed)
        fast = aug(small)
        torch.manual_seed(seed)
        full = aug(load_image(path, 3, keep_uint8=True))
        for kind in ("global", "local"):
            for a, b in zip(fast[kind], full[kind]):
                gaps.append(((a - b) * torch.tensor(STD).view(3, 1, 1)).abs().flatten())
    gaps = torch.cat(gaps)
    assert gaps.mean() < 2 / 255, gaps.mean() * 255  # measured 0.96/255: DCT scaling vs bicubic, box rounding


def test_the_stream_decodes_large_jpegs_at_reduced_size(tmp_path):
    _photo(tmp_path / "big.jpg", 5, size=(1600, 1200))
    aug = MultiCropAugmentation(96, 48, n_local=2, mean=MEAN, std=STD)
    shapes = []
    original = aug._crops
    aug._crops = lambda image, group: shapes.append(tuple(image.shape)) or original(image, group)
    AugmentedStream(ImageFolderDataset(tmp_path, channels=3), aug, seed=0)[0]
    assert shapes == [(3, 300, 400)] * 2
