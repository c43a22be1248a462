"""MultiCropAugmentation / EvalTransform: shapes, normalisation, determinism, agreement with torchvision."""

import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from sslkit.data import augment
from sslkit.data.augment import EvalTransform, MultiCropAugmentation
from sslkit.data.errors import DataError


def _image(channels=3, h=40, w=36):
    return torch.rand(channels, h, w, generator=torch.Generator().manual_seed(0))


def test_output_structure_and_shapes():
    aug = MultiCropAugmentation(global_size=32, local_size=16, n_global=3, n_local=5)
    views = aug(_image())
    assert len(views["global"]) == 3 and len(views["local"]) == 5
    assert all(v.shape == (3, 32, 32) and v.dtype == torch.float32 for v in views["global"])
    assert all(v.shape == (3, 16, 16) for v in views["local"])
    batch = torch.utils.data.default_collate([aug(_image()) for _ in range(2)])
    assert batch["global"][0].shape == (2, 3, 32, 32)
    assert MultiCropAugmentation(32, 16, n_local=0)(_image())["local"] == []


def test_normalisation_bounds_and_identity_settings():
    mean, std = (0.2, 0.4, 0.6), (0.5, 0.25, 0.1)
    off = dict(color_jitter=0.0, grayscale=0.0, solarize=0.0, flip=0.0, blur_sigma=(0.1, 0.1))
    aug = MultiCropAugmentation(36, 16, mean=mean, std=std, global_scale=(1.0, 1.0), **off)
    image = torch.full((3, 36, 36), 0.5)
    view = aug(image)["global"][0]
    # A full-size, uniform crop with photometric ops off is the image itself, normalised.
    expected = (0.5 - torch.tensor(mean)) / torch.tensor(std)
    assert torch.allclose(view, expected.view(3, 1, 1).expand(3, 36, 36), atol=1e-5)
    views = MultiCropAugmentation(32, 16, mean=mean, std=std)(_image())
    for v in views["global"] + views["local"]:
        raw = v * torch.tensor(std).view(3, 1, 1) + torch.tensor(mean).view(3, 1, 1)
        assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5


def test_deterministic_under_manual_seed():
    aug = MultiCropAugmentation(32, 16)
    torch.manual_seed(5)
    a = aug(_image())
    torch.manual_seed(5)
    b = aug(_image())
    assert all(torch.equal(x, y) for x, y in zip(a["global"] + a["local"], b["global"] + b["local"]))
    c = aug(_image())
    assert not torch.equal(a["local"][0], c["local"][0])


def test_one_channel_path_and_vertical_flip():
    aug = MultiCropAugmentation(24, 12, mean=(0.5,), std=(0.25,), channels=1)
    views = aug(_image(channels=1))
    assert views["global"][0].shape == (1, 24, 24) and views["local"][0].shape == (1, 12, 12)
    assert len(aug.jitter_ops) == 2  # brightness and contrast only
    with pytest.raises(DataError, match="channels"):
        aug(_image(channels=3))
    with pytest.raises(DataError, match="mean"):
        MultiCropAugmentation(24, 12, channels=1)
    # flip p=1 about the vertical axis: same RNG stream, so the crop equals the flipped no-flip crop.
    image = _image(channels=1, h=24, w=24)
    common = dict(mean=(0.0,), std=(1.0,), channels=1, color_jitter=0.0, solarize=0.0, n_local=0)
    torch.manual_seed(0)
    flipped = MultiCropAugmentation(24, 12, flip=1.0, flip_axis="vertical", **common)(image)["global"][1]
    torch.manual_seed(0)
    plain = MultiCropAugmentation(24, 12, flip=0.0, flip_axis="vertical", **common)(image)["global"][1]
    assert torch.allclose(flipped, plain.flip(-2), atol=1e-6)


def test_blur_kernel_is_capped_for_tiny_crops():
    assert augment._blur_kernel(224) == 9 and augment._blur_kernel(8) == 7 and augment._blur_kernel(5) == 5
    views = MultiCropAugmentation(8, 6)(_image(h=10, w=10))
    assert views["local"][0].shape == (3, 6, 6) and torch.isfinite(views["local"][0]).all()


def test_batched_ops_agree_with_torchvision():
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    x[0] = 0.3  # grey crop: hue is undefined there
    factors = torch.tensor([0.6, 1.0, 1.3, 1.4])
    shifts = torch.tensor([-0.1, 0.0, 0.05, 0.1])
    sigmas = torch.tensor([0.1, 0.7, 1.3, 2.0])
    pairs = [
        (augment._adjust_brightness(x, factors), [TF.adjust_brightness(x[i], float(factors[i])) for i in range(4)]),
        (augment._adjust_contrast(x, factors), [TF.adjust_contrast(x[i], float(factors[i])) for i in range(4)]),
        (augment._adjust_saturation(x, factors), [TF.adjust_saturation(x[i], float(factors[i])) for i in range(4)]),
        (augment._adjust_hue(x, shifts), [TF.adjust_hue(x[i], float(shifts[i])) for i in range(4)]),
        (augment._grayscale(x), [TF.rgb_to_grayscale(x[i], num_output_channels=3) for i in range(4)]),
        (augment._gaussian_blur(x, 9, sigmas), [TF.gaussian_blur(x[i], [9, 9], [float(sigmas[i])] * 2) for i in range(4)]),
        (augment._solarize(x), [TF.solarize(x[i], 0.5) for i in range(4)]),
    ]
    for ours, theirs in pairs:
        assert torch.allclose(ours, torch.stack(theirs), atol=1e-5)
    gray = torch.rand(2, 1, 8, 8)
    assert torch.allclose(augment._adjust_contrast(gray, factors[:2]),
                          torch.stack([TF.adjust_contrast(gray[i], float(factors[i])) for i in range(2)]), atol=1e-6)


def test_crop_boxes_follow_the_scale_range():
    torch.manual_seed(0)
    boxes = augment._sample_crop_boxes(500, 64, 48, (0.05, 0.32))
    areas = torch.tensor([h * w for _, _, h, w in boxes], dtype=torch.float32) / (64 * 48)
    assert areas.min() > 0.03 and areas.max() < 0.36
    assert all(0 <= t and t + h <= 64 and 0 <= l and l + w <= 48 for t, l, h, w in boxes)


def test_eval_transform():
    mean, std = (0.5, 0.5, 0.5), (0.2, 0.2, 0.2)
    out = EvalTransform(20, mean, std)(_image(h=40, w=60))
    assert out.shape == (3, 20, 20)
    square = _image(h=30, w=30)
    expected = TF.normalize(
        TF.resize(square, [20, 20], interpolation=v2.InterpolationMode.BICUBIC, antialias=True).clamp(0, 1),
        list(mean), list(std),
    )
    assert torch.allclose(EvalTransform(20, mean, std)(square), expected, atol=1e-6)
    with pytest.raises(DataError, match="mean"):
        EvalTransform(20, (0.5,), (0.2,))(square)
