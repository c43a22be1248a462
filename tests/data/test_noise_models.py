"""Noise models of arXiv 2505.12191: statistics before clipping, clipping, per-image reproducibility, the wrapper
and the noisy-copy writer."""

from __future__ import annotations

import json
import math

import pytest
import torch

from sslkit.data.builtin import DigitsDataset
from sslkit.data.errors import DataError
from sslkit.data.folder import ImageFolderDataset
from sslkit.data.noise import (NoisyDataset, add_noise, gaussian_noise, image_generator, open_noisy_copy, psnr,
                               quantize, shot_noise, speckle_noise, write_noisy_copy)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("sigma", [50.0, 100.0, 255.0])
def test_gaussian_std_matches_sigma_over_255(sigma):
    x = torch.full((200_000,), 0.5, dtype=torch.float64)
    y = gaussian_noise(x, sigma, _gen(1))
    std = sigma / 255
    # Whatever the clipping, the clipped mass at 1 is the normal tail P(n > 0.5) of N(0, (σ/255)²),
    # and the unclipped pixels have the truncated-normal std.
    tail = 0.5 * math.erfc(0.5 / std / math.sqrt(2))
    assert (y == 1).double().mean().item() == pytest.approx(tail, abs=0.004)
    assert (y == 0).double().mean().item() == pytest.approx(tail, abs=0.004)
    a = 0.5 / std
    phi = math.exp(-a * a / 2) / math.sqrt(2 * math.pi)
    truncated_var = std ** 2 * (1 - 2 * a * phi / (1 - 2 * tail))
    inside = (y > 0) & (y < 1)
    assert (y[inside] - 0.5).var().item() == pytest.approx(truncated_var, rel=0.02)
    assert y.min() >= 0 and y.max() <= 1


def test_gaussian_noise_is_zero_mean_before_clipping():
    x = torch.full((100_000,), 0.5, dtype=torch.float64)
    y = gaussian_noise(x, 25.0, _gen(2))  # 0.5 ± 5 std never clips
    assert (y - x).mean().abs().item() < 3 * (25 / 255) / math.sqrt(len(x))
    assert (y - x).std().item() == pytest.approx(25 / 255, rel=0.01)


@pytest.mark.parametrize("lam", [1.0, 3.0, 10.0])
def test_shot_noise_mean_and_variance(lam):
    x = 0.05
    y = shot_noise(torch.full((200_000,), x, dtype=torch.float64), lam, _gen(3))
    # Exact moments of clip(N/λ, 0, 1), N ~ Poisson(λx), from the pmf.
    counts = torch.arange(0, 200, dtype=torch.float64)
    rate = torch.tensor(lam * x, dtype=torch.float64)
    pmf = torch.exp(counts * torch.log(rate) - rate - torch.lgamma(counts + 1))
    values = (counts / lam).clamp(max=1.0)
    mean = float((pmf * values).sum())
    var = float((pmf * values ** 2).sum()) - mean ** 2
    assert y.mean().item() == pytest.approx(mean, abs=4 * math.sqrt(var / len(y)))
    assert y.var().item() == pytest.approx(var, rel=0.03)
    if lam == 10.0:  # P(N > λ) is negligible here: the unclipped relations E = x, Var = x/λ hold
        assert mean == pytest.approx(x, rel=1e-6) and var == pytest.approx(x / lam, rel=1e-4)
    assert torch.allclose(y * lam, torch.round(y * lam), atol=1e-9)  # multiples of 1/λ


def test_shot_noise_is_exactly_poisson_per_pixel():
    x = torch.rand(4, 16, 16, dtype=torch.float64)
    y = shot_noise(x, 10.0, _gen(4))
    reference = (torch.poisson(x * 10.0, generator=_gen(4)) / 10.0).clamp(0, 1)
    assert torch.equal(y, reference)


@pytest.mark.parametrize("c", [0.4, 1.0])
def test_speckle_is_multiplicative(c):
    # std(y − x) = c·x before clipping: at x = 0.1 and 0.2 (c·x ≤ 0.2, far from clipping for c = 0.4)
    for level in (0.1, 0.2):
        x = torch.full((100_000,), level, dtype=torch.float64)
        y = speckle_noise(x, c, _gen(5))
        if c == 0.4:
            assert (y - x).std().item() == pytest.approx(c * level, rel=0.02)
        else:  # clipping at 0 is heavy for c = 1: compare with the same normal draws
            n = torch.randn(x.shape, generator=_gen(5), dtype=torch.float64)
            assert torch.allclose(y, (x + x * n * c).clamp(0, 1))
    # a black pixel stays black whatever the noise: the hallmark of multiplicative noise
    assert torch.equal(speckle_noise(torch.zeros(1000), c, _gen(6)), torch.zeros(1000))


def test_outputs_in_unit_interval_and_bad_levels():
    x = torch.rand(3, 8, 8)
    for kind, level in (("gaussian", 255), ("shot", 1), ("speckle", 1.0)):
        y = add_noise(x, kind, level, _gen(7))
        assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
        assert not torch.equal(y, x)
    with pytest.raises(DataError, match="Unknown noise kind"):
        add_noise(x, "salt", 1)
    with pytest.raises(DataError, match="λ"):
        add_noise(x, "shot", 0)


def test_per_image_generators_are_reproducible_and_distinct():
    a = torch.randn(5, generator=image_generator(42, 3))
    b = torch.randn(5, generator=image_generator(42, 3))
    c = torch.randn(5, generator=image_generator(42, 4))
    d = torch.randn(5, generator=image_generator(43, 3))
    assert torch.equal(a, b)
    assert not torch.equal(a, c) and not torch.equal(a, d)


def test_quantize_floors_like_uint8_cast():
    x = torch.tensor([0.0, 0.5, 0.999, 1.0, 1 / 255 - 1e-3])
    assert torch.equal(torch.round(quantize(x, 8) * 255), torch.tensor([0.0, 127.0, 254.0, 255.0, 0.0]))
    assert torch.equal(quantize(quantize(x, 8), 8), quantize(x, 8))  # stable: a stored image re-stores unchanged


def test_noisy_dataset_wrapper_keeps_protocol_and_is_order_independent():
    clean = DigitsDataset("train", size=16)
    noisy = NoisyDataset(clean, "gaussian", 100, seed=42)
    assert len(noisy) == len(clean) and noisy.channels == 1 and noisy.num_classes == 10
    late_first = noisy[7]["image"]
    for i in range(7):
        noisy[i]
    item = noisy[7]
    assert torch.equal(item["image"], late_first)  # same noise whatever was read before
    assert item["label"] == clean[7]["label"]
    assert item["image"].shape == clean[7]["image"].shape
    assert not torch.equal(item["image"], clean[7]["image"])
    assert torch.equal(item["image"] * 255, torch.round(item["image"] * 255))  # 8-bit levels
    other_seed = NoisyDataset(clean, "gaussian", 100, seed=0)[7]["image"]
    assert not torch.equal(other_seed, item["image"])
    # noisier level -> lower PSNR
    assert psnr(NoisyDataset(clean, "gaussian", 255)[7]["image"], clean[7]["image"]) < psnr(item["image"], clean[7]["image"])
    torch.utils.data.default_collate([noisy[0], noisy[1]])  # batches like the clean dataset


def test_noisy_copy_round_trip(tmp_path):
    clean = torch.utils.data.Subset(DigitsDataset("train", size=16), range(30))
    clean.class_names = [str(d) for d in range(10)]  # Subset hides them; the writer reads them if present
    wrapper = NoisyDataset(clean, "shot", 3, seed=5)
    copy = write_noisy_copy(clean, tmp_path / "noisy", kind="shot", level=3, seed=5)
    meta = json.loads((tmp_path / "noisy" / "noise.json").read_text())
    assert meta["kind"] == "shot" and meta["level"] == 3 and meta["seed"] == 5 and meta["count"] == 30
    assert copy.files[0].split("/")[0] == str(clean[0]["label"])  # class sub-folders
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())
    reread, meta2 = open_noisy_copy(tmp_path / "noisy")
    assert meta2["files"] == copy.files
    for i in (0, 13, 29):
        assert torch.equal(reread[i]["image"], wrapper[i]["image"])  # file == on-the-fly wrapper, bit for bit
    assert isinstance(reread.dataset, ImageFolderDataset)
    expected = sum(psnr(wrapper[i]["image"], clean[i]["image"]) for i in range(30)) / 30
    assert meta["psnr_noisy"] == pytest.approx(expected, rel=1e-6)
    with pytest.raises(FileExistsError):
        write_noisy_copy(clean, tmp_path / "noisy", kind="shot", level=3)
    write_noisy_copy(clean, tmp_path / "noisy", kind="shot", level=3, seed=5, overwrite=True)
    assert torch.equal(open_noisy_copy(tmp_path / "noisy")[0][13]["image"], wrapper[13]["image"])


def test_tiff_copy_keeps_16_bits(tmp_path):
    clean = torch.utils.data.Subset(DigitsDataset("train", size=16), range(4))
    write_noisy_copy(clean, tmp_path / "t", kind="gaussian", level=50, fmt="tiff")
    reread, _ = open_noisy_copy(tmp_path / "t")
    expected = NoisyDataset(clean, "gaussian", 50, bits=16)[2]["image"]
    assert torch.allclose(reread[2]["image"], expected, atol=1e-7)
    image = reread[2]["image"]
    off_8bit_grid = (image * 255 - torch.round(image * 255)).abs() > 1e-3
    assert off_8bit_grid.sum() > 100  # finer than 8-bit levels survive


def test_folder_source_keeps_relative_paths(tmp_path):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cats", "dogs"):
        (tmp_path / "src" / cls).mkdir(parents=True)
        for k in range(2):
            Image.fromarray(rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)).save(tmp_path / "src" / cls / f"im{k}.jpg")
    source = ImageFolderDataset(tmp_path / "src")
    copy = write_noisy_copy(source, tmp_path / "noisy", kind="speckle", level=0.4)
    assert copy.files == ["cats/im0.png", "cats/im1.png", "dogs/im0.png", "dogs/im1.png"]
    reread, _ = open_noisy_copy(tmp_path / "noisy")
    assert reread.class_names == ["cats", "dogs"] and [reread[i]["label"] for i in range(4)] == [0, 0, 1, 1]
    assert reread[3]["image"].shape == (3, 9, 11)
    assert torch.equal(reread[3]["image"], NoisyDataset(source, "speckle", 0.4)[3]["image"])
    with pytest.raises(DataError, match="1-channel"):
        write_noisy_copy(source, tmp_path / "tiff", kind="speckle", level=0.4, fmt="tiff")
