"""Built-in datasets that need no download: scikit-learn digits and procedural shapes.

Both follow the sslkit dataset protocol: ``dataset[i]`` is a dict with ``"image"``
(float32 ``(C, H, W)`` in [0, 1], or ``transform(image)`` when a transform is given)
and ``"label"`` (int), and the dataset carries ``channels``, ``num_classes``,
``class_names``, ``mean`` and ``std``.

Example::

    ds = load_builtin("shapes", "train", size=32)
    item = ds[0]            # item["image"]: (3, 32, 32), item["mask"]: (32, 32) bool
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from sslkit.data.errors import DataError

__all__ = ["DigitsDataset", "GlyphsDataset", "ShapesDataset", "BUILTIN_DATASETS", "load_builtin"]

Transform = Callable[[torch.Tensor], object]
_SPLITS = ("train", "test")


def _check_split(split: str, name: str) -> None:
    if split not in _SPLITS:
        raise DataError(f"{name}: unknown split {split!r}; use one of {list(_SPLITS)}.")


def _check_size(size: int, name: str) -> None:
    if not isinstance(size, int) or size < 8:
        raise DataError(f"{name}: size must be an integer of at least 8 pixels, got {size!r}.")


def _check_procedural(name: str, split: str, size: int, background: str, backgrounds: tuple, num_samples: int,
                      background_noise: float) -> None:
    """The argument checks shared by the procedural datasets (shapes, glyphs): one sentence each."""
    _check_split(split, name)
    _check_size(size, name)
    if background not in backgrounds:
        raise DataError(f"{name}: unknown background {background!r}; use one of {list(backgrounds)}.")
    if not isinstance(num_samples, int) or num_samples < 1:
        raise DataError(f"{name}: num_samples must be a positive integer, got {num_samples!r}.")
    if not background_noise >= 0:
        raise DataError(f"{name}: background_noise must be a standard deviation >= 0, got {background_noise!r}.")


def _item_index(index: int, n: int, name: str) -> int:
    """``index`` in [0, n), negative indices counted from the end as for a list; IndexError otherwise."""
    if -n <= index < 0:
        return index + n
    if not 0 <= index < n:
        raise IndexError(f"{name} index {index} out of range for {n} items.")
    return index


# Seeded per-item streams of both datasets: item i of a split draws from (salt, seed, split, i).
_SPLIT_STREAM = {"train": 0, "test": 1}
_STREAM_SALT = 0x5A4E  # keeps these streams apart from other seeded uses of (seed, index)


# --------------------------------------------------------------------------- digits

# The train/test split is fixed once and for all (independent of ``seed``) so that
# numbers reported on "digits/test" are comparable across runs and machines.
_DIGITS_TEST_FRACTION = 0.2
_DIGITS_SPLIT_SEED = 0


@functools.lru_cache(maxsize=1)
def _digits_split() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The fixed stratified 80/20 split of scikit-learn's 1797 digits: {split: (images (N,8,8) in [0,1], labels (N,))}."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()  # ships with scikit-learn: no network
    images = (digits.images / 16.0).astype(np.float32)
    labels = digits.target.astype(np.int64)
    idx_train, idx_test = train_test_split(
        np.arange(len(labels)),
        test_size=_DIGITS_TEST_FRACTION,
        stratify=labels,
        random_state=_DIGITS_SPLIT_SEED,
    )
    # Sorted so item order follows the original file, whatever train_test_split shuffles.
    idx_train, idx_test = np.sort(idx_train), np.sort(idx_test)
    return {
        "train": (images[idx_train], labels[idx_train]),
        "test": (images[idx_test], labels[idx_test]),
    }


class DigitsDataset(torch.utils.data.Dataset):
    """scikit-learn's 8x8 handwritten digits (10 classes), upsampled to ``size``.

    Split: a fixed stratified 80/20 split (``train_test_split(random_state=0)``),
    1437 train / 360 test images, the same whatever ``seed`` is. ``seed`` only seeds the
    optional background noise below.

    Items: ``{"image": (channels, size, size) float32 in [0, 1], "label": int}``;
    ``channels=3`` repeats the grey channel. Upsampling is bilinear
    (``align_corners=False``) from the original 0..16 intensities scaled to [0, 1].

    ``background_noise`` > 0 adds Gaussian pixel noise of that standard deviation where the digit
    is not: the noise of a pixel is scaled by ``1 - intensity`` (full on the black background, none
    on a full stroke), then the image is clipped to [0, 1]. It is an irrelevant feature of
    controllable magnitude (the JE-vs-reconstruction experiment, ``benchmarks/je_vs_recon.py``);
    item ``i``'s noise comes from a generator seeded by (seed, split, i), so it is the same on
    every access and differs between ``seed`` values.
    """

    class_names = [str(d) for d in range(10)]
    num_classes = 10
    # Measured with compute_mean_std on the train split at size 32 (see tests).
    MEAN = 0.3054
    STD = 0.3237

    def __init__(
        self,
        split: str = "train",
        size: int = 32,
        channels: int = 1,
        transform: Transform | None = None,
        seed: int = 0,
        background_noise: float = 0.0,
    ):
        _check_split(split, "DigitsDataset")
        _check_size(size, "DigitsDataset")
        if channels not in (1, 3):
            raise DataError(f"DigitsDataset: channels must be 1 or 3, got {channels!r}.")
        if not background_noise >= 0:
            raise DataError(f"DigitsDataset: background_noise must be a standard deviation >= 0, got {background_noise!r}.")
        self.background_noise = float(background_noise)
        self.split, self.size, self.channels = split, size, channels
        self.transform, self.seed = transform, seed
        images, labels = _digits_split()[split]
        small = torch.from_numpy(images).unsqueeze(1)  # (N, 1, 8, 8)
        self._images = F.interpolate(
            small, size=(size, size), mode="bilinear", align_corners=False, antialias=size < 8
        ).clamp_(0.0, 1.0)  # (N, 1, size, size)
        self._labels = labels.tolist()
        self.mean = (self.MEAN,) * channels
        self.std = (self.STD,) * channels

    def __len__(self) -> int:
        return len(self._labels)

    def __getitem__(self, index: int) -> dict:
        image = self._images[index]
        if self.background_noise > 0:
            index = range(len(self))[index]  # negative indices name the same item as their positive twin
            rng = np.random.default_rng([_STREAM_SALT, self.seed, _SPLIT_STREAM[self.split], index])
            noise = torch.from_numpy(rng.standard_normal(tuple(image.shape), dtype=np.float32)) * self.background_noise
            image = (image + noise * (1.0 - image)).clamp_(0.0, 1.0)
        image = image.expand(self.channels, -1, -1).clone()  # (C, size, size)
        if self.transform is not None:
            image = self.transform(image)
        return {"image": image, "label": self._labels[index]}


# --------------------------------------------------------------------------- shapes

def _regular_polygon(n: int, phase: float = -math.pi / 2) -> np.ndarray:
    t = phase + 2 * math.pi * np.arange(n) / n
    return np.stack([np.cos(t), np.sin(t)], axis=1)


def _normalised(points: np.ndarray) -> np.ndarray:
    """Centre a polygon's bounding box on 0 and scale it to circumradius 1, so ``scale`` means the same for every class."""
    points = points - (points.max(0) + points.min(0)) / 2
    return points / np.linalg.norm(points, axis=1).max()


def _shape_library() -> dict[str, list[tuple[np.ndarray, int]]]:
    """Unit shapes as PIL draw ops: name -> [(polygon (K, 2), fill 255 or 0)], y pointing down.

    Shapes with holes (crescent, ring) are drawn as a filled disc then a carved disc.
    """
    circle = _regular_polygon(64)
    star_t = -math.pi / 2 + math.pi * np.arange(10) / 5
    star_r = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
    w, a = 0.3, 0.95
    cross = np.array([[-w, -a], [w, -a], [w, -w], [a, -w], [a, w], [w, w],
                      [w, a], [-w, a], [-w, w], [-a, w], [-a, -w], [-w, -w]])
    t = np.linspace(0, 2 * math.pi, 64, endpoint=False)
    heart = np.stack([16 * np.sin(t) ** 3,
                      -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))], axis=1)
    arrow = np.array([[-1, -0.22], [0.15, -0.22], [0.15, -0.6], [1, 0],
                      [0.15, 0.6], [0.15, 0.22], [-1, 0.22]])
    return {
        "circle": [(circle, 255)],
        "square": [(_regular_polygon(4, math.pi / 4), 255)],
        "triangle": [(_regular_polygon(3), 255)],
        "star": [(np.stack([star_r * np.cos(star_t), star_r * np.sin(star_t)], axis=1), 255)],
        "cross": [(_normalised(cross), 255)],
        "heart": [(_normalised(heart), 255)],
        "crescent": [(circle, 255), (0.8 * circle + [0.5, 0.0], 0)],
        "arrow": [(_normalised(arrow), 255)],
        "ellipse": [(circle * [1.0, 0.45], 255)],
        "ring": [(circle, 255), (0.55 * circle, 0)],
    }


_SHAPES = _shape_library()
_SHAPE_NAMES = list(_SHAPES)

# Photos bundled with scikit-image (no download): textures and natural images.
_PHOTO_NAMES = ("brick", "grass", "gravel", "camera", "moon", "coins", "coffee",
                "astronaut", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")


@functools.lru_cache(maxsize=1)
def _photos() -> tuple[Image.Image, ...]:
    """scikit-image's bundled photos as RGB PIL images, loaded once per process."""
    import skimage.data

    photos = []
    for name in _PHOTO_NAMES:
        array = getattr(skimage.data, name)()
        if array.ndim == 2:
            array = np.repeat(array[:, :, None], 3, axis=2)
        photos.append(Image.fromarray(np.ascontiguousarray(array[:, :, :3]).astype(np.uint8)))
    return tuple(photos)


@functools.lru_cache(maxsize=4)
def _photos_for_size(size: int) -> tuple[Image.Image, ...]:
    """The photos shrunk so the smallest crop (25 % of the short side) is still ≥ 2x ``size``.

    Resizing a large crop dominates render time; shrinking once up front keeps every
    crop an anti-aliased downsample while making it several times cheaper.
    """
    short_side = 8 * size
    shrunk = []
    for photo in _photos():
        factor = short_side / min(photo.size)
        if factor < 1:
            photo = photo.resize((round(photo.width * factor), round(photo.height * factor)), Image.LANCZOS)
        shrunk.append(photo)
    return tuple(shrunk)


_SUPERSAMPLE = 4
_SCALE_RANGE = (0.35, 0.7)
_MIN_COLOUR_DISTANCE = 0.5  # Euclidean RGB distance from the background under the shape


class _ProceduralDataset(torch.utils.data.Dataset):
    """What the rendered built-in sets share: their settings, length, and the rendered-item cache.

    A subclass sets ``BACKGROUNDS`` and ``MEAN_STD`` and defines ``_render(index) -> (pixels (size, size, 3)
    uint8, mask (size, size) bool, factors)``.
    """

    BACKGROUNDS: tuple = ()
    MEAN_STD: dict = {}

    def _setup(self, split: str, num_samples: int, size: int, background: str, transform: Transform | None,
               seed: int, cache: bool, background_noise: float) -> None:
        _check_procedural(type(self).__name__, split, size, background, self.BACKGROUNDS, num_samples,
                          background_noise)
        self.split, self.num_samples, self.size = split, num_samples, size
        self.background, self.transform, self.seed, self.cache = background, transform, seed, cache
        self.background_noise = float(background_noise)
        self.mean, self.std = self.MEAN_STD[background]
        self._cache: dict[int, tuple[np.ndarray, np.ndarray, dict]] = {}

    def __len__(self) -> int:
        return self.num_samples

    def _rendered(self, index: int) -> tuple[torch.Tensor, np.ndarray, dict]:
        """(image (3, size, size) float in [0, 1], transformed; mask; factors) of item ``index``, rendered once."""
        index = _item_index(index, self.num_samples, type(self).__name__)
        cached = self._cache.get(index)
        if cached is None:
            cached = self._render(index)
            if self.cache:
                self._cache[index] = cached
        pixels, mask, factors = cached
        image = torch.from_numpy(pixels).permute(2, 0, 1).float().div_(255.0)
        if self.transform is not None:
            image = self.transform(image)
        return image, mask, factors


class ShapesDataset(_ProceduralDataset):
    """Procedural RGB images of one coloured shape over a photo, noise or plain background.

    Classes (``label`` = ``shape``): circle, square, triangle, star, cross, heart,
    crescent, arrow, ellipse, ring — drawn uniformly at random.

    Latent factors, each drawn per item:
      - ``scale`` ~ U[0.35, 0.7]: diameter of the shape's circumscribed circle as a fraction of ``size``;
      - ``position`` (2,): centre (x, y) in [0, 1], uniform among centres keeping the shape inside;
      - ``rotation`` ~ U[0, 2π) radians;
      - ``color`` (3,) RGB in [0, 1]: the first of 16 uniform candidates whose distance
        to the mean background colour under the shape is ≥ 0.5 (else the farthest),
        so the shape is always clearly visible.
    Backgrounds: ``"texture"`` — a random square crop (side 25–75 % of the short side)
    of one of scikit-image's bundled photos, resized; ``"noise"`` — smooth random colour
    field plus pixel noise; ``"plain"`` — one uniform random colour.
    ``background_noise`` > 0 adds i.i.d. Gaussian pixel noise of that standard deviation to the
    background only (then clips to [0, 1]): an irrelevant feature of controllable magnitude. It
    comes from its own generator, so every other latent and pixel of item ``i`` is the same at
    every noise level.

    Rendering: the shape is rasterised at 4x resolution and box-downsampled into an
    anti-aliasing alpha, composited over the background and quantised to 8 bits.

    Items: ``image`` (3, size, size) float32 in [0, 1] (or ``transform(image)``),
    ``label``/``shape`` int, ``color`` (3,), ``scale`` float, ``position`` (2,),
    ``rotation`` float, ``mask`` (size, size) bool = alpha ≥ 0.5 of the untransformed image.

    Determinism: item ``i`` comes from its own generator seeded by (seed, split, i), so
    items do not depend on access order, and train/test use disjoint streams.
    Rendered items are cached (uint8) on first access when ``cache`` is true.
    """

    class_names = list(_SHAPE_NAMES)
    num_classes = len(_SHAPE_NAMES)
    channels = 3
    BACKGROUNDS = ("texture", "noise", "plain")
    # Measured with compute_mean_std on the default train split (4000 images, size 32).
    MEAN_STD = {
        "texture": ((0.4613, 0.4189, 0.3997), (0.2420, 0.2259, 0.2286)),
        "noise": ((0.4974, 0.4989, 0.4982), (0.2668, 0.2668, 0.2665)),
        "plain": ((0.5011, 0.5071, 0.4987), (0.2865, 0.2880, 0.2826)),
    }

    def __init__(
        self,
        split: str = "train",
        num_samples: int | None = None,
        size: int = 32,
        background: str = "texture",
        transform: Transform | None = None,
        seed: int = 0,
        cache: bool = True,
        background_noise: float = 0.0,
    ):
        if num_samples is None:
            num_samples = 4000 if split == "train" else 1000
        self._setup(split, num_samples, size, background, transform, seed, cache, background_noise)

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([_STREAM_SALT, self.seed, _SPLIT_STREAM[self.split], index])

    # -- rendering pieces -----------------------------------------------------------

    def _draw_background(self, rng: np.random.Generator) -> np.ndarray:
        """(size, size, 3) float32 in [0, 1]."""
        n = self.size
        if self.background == "texture":
            photos = _photos_for_size(n)
            photo = photos[rng.integers(len(photos))]
            width, height = photo.size
            side = int(rng.uniform(0.25, 0.75) * min(width, height))
            left = int(rng.integers(0, width - side + 1))
            top = int(rng.integers(0, height - side + 1))
            crop = photo.resize((n, n), Image.BILINEAR, box=(left, top, left + side, top + side))
            out = np.asarray(crop, dtype=np.float32) / 255.0
            return out[:, ::-1].copy() if rng.random() < 0.5 else out
        if self.background == "noise":
            grid = (rng.random((4, 4, 3)) * 255).astype(np.uint8)
            smooth = np.asarray(Image.fromarray(grid).resize((n, n), Image.BICUBIC), dtype=np.float32) / 255.0
            return np.clip(smooth + rng.normal(0.0, 0.08, size=(n, n, 3)), 0.0, 1.0).astype(np.float32)
        return np.broadcast_to(rng.random(3).astype(np.float32), (n, n, 3)).copy()

    def _draw_alpha(self, shape: int, scale: float, position: np.ndarray, rotation: float) -> np.ndarray:
        """Anti-aliased coverage (size, size) float32 in [0, 1] of the shape."""
        s, n = _SUPERSAMPLE, self.size
        canvas = Image.new("L", (n * s, n * s), 0)
        draw = ImageDraw.Draw(canvas)
        c, sn = math.cos(rotation), math.sin(rotation)
        rot = np.array([[c, sn], [-sn, c]])
        radius = scale * n * s / 2
        # PIL samples pixel centres at integer coordinates, hence the half-pixel shift.
        centre = position * n * s - 0.5
        for polygon, fill in _SHAPES[_SHAPE_NAMES[shape]]:
            xy = polygon @ rot * radius + centre
            draw.polygon(xy.ravel().tolist(), fill=fill)
        # reduce(s) is PIL's box downsample: the mean over each s x s block, in C.
        return np.asarray(canvas.reduce(s), dtype=np.float32) / 255.0

    def _render(self, index: int, with_shape: bool = True) -> tuple[np.ndarray, np.ndarray, dict]:
        """Render item ``index``: (image (size, size, 3) uint8, mask (size, size) bool, factors)."""
        rng = self._rng(index)
        background = self._draw_background(rng)  # drawn first: the shape never changes it
        shape = int(rng.integers(self.num_classes))
        scale = float(rng.uniform(*_SCALE_RANGE))
        half = scale / 2
        position = rng.uniform(half, 1 - half, size=2)
        rotation = float(rng.uniform(0.0, 2 * math.pi))
        candidates = rng.random((16, 3))
        alpha = self._draw_alpha(shape, scale, position, rotation)
        weight = alpha.sum()
        local = (alpha[:, :, None] * background).sum((0, 1)) / max(weight, 1e-6)
        distance = np.linalg.norm(candidates - local, axis=1)
        far = np.flatnonzero(distance >= _MIN_COLOUR_DISTANCE)
        color = candidates[far[0] if len(far) else int(distance.argmax())].astype(np.float32)
        if self.background_noise > 0:
            noise_rng = np.random.default_rng([_STREAM_SALT, self.seed, _SPLIT_STREAM[self.split], index, 1])
            background = background + self.background_noise * noise_rng.standard_normal(background.shape,
                                                                                         dtype=np.float32)
        if with_shape:
            a = alpha[:, :, None]
            composite = background * (1 - a) + color * a
        else:
            composite = background
        image = np.rint(np.clip(composite, 0.0, 1.0) * 255).astype(np.uint8)
        factors = {
            "shape": shape,
            "color": color,
            "scale": scale,
            "position": position.astype(np.float32),
            "rotation": rotation,
        }
        return image, alpha >= 0.5, factors

    # -- public --------------------------------------------------------------------

    def render_background(self, index: int) -> torch.Tensor:
        """The shape-free image of item ``index``: (3, size, size) float32, identical outside the shape."""
        image, _, _ = self._render(index, with_shape=False)
        return torch.from_numpy(image).permute(2, 0, 1).float().div_(255.0)

    def __getitem__(self, index: int) -> dict:
        image, mask, factors = self._rendered(index)
        return {
            "image": image,
            "label": factors["shape"],
            "shape": factors["shape"],
            "color": torch.from_numpy(factors["color"].copy()),
            "scale": factors["scale"],
            "position": torch.from_numpy(factors["position"].copy()),
            "rotation": factors["rotation"],
            "mask": torch.from_numpy(mask.copy()),
        }


# --------------------------------------------------------------------------- glyphs

_GLYPH_SCALE_RANGE = (0.3, 0.6)  # glyph side as a fraction of the image side
# 'noise' background: a dark band and a light band of grey levels; each image puts its background in one
# and its glyph in the other (polarity drawn with p 1/2).
_GLYPH_DARK_LEVELS = (0.0, 0.3)
_GLYPH_LIGHT_LEVELS = (0.7, 1.0)
_GLYPH_MAX_ROTATION = math.radians(15)  # a 6 stays a 6 and a 9 a 9; more rotation is variation no augmentation covers


class GlyphsDataset(_ProceduralDataset):
    """Handwritten digits placed at a random position, scale, rotation and colour over a random background.

    A dataset with headroom for self-supervised learning on a CPU: the class (the digit) is what every
    crop of an image shares, while position, scale, rotation, the glyph's colour and the background
    change from image to image, so raw pixels are a poor feature. Built from scikit-learn's 8x8
    digits (bundled, no download) with the fixed 80/20 split of ``DigitsDataset``: train images use
    only the 1437 train digits and test images only the 360 test digits, so a test image never shows
    a handwriting sample seen in training.

    Latent factors, each drawn per item from a generator seeded by (seed, split, i):
      - ``digit``: item ``i`` shows base digit ``i mod N`` of its split (N = 1437 / 360), so every
        handwriting sample appears equally often and classes are balanced as in the source;
      - ``scale`` ~ U[0.3, 0.6]: side of the glyph's 8x8 box as a fraction of ``size``;
      - ``rotation`` ~ U[-15°, 15°];
      - ``position`` (2,): the glyph's centre in [0, 1], uniform among centres keeping its box inside;
      - polarity: with probability 1/2 a light background and a dark glyph, else the reverse;
      - ``color`` (3,): on the default background a grey level drawn from the glyph's band — dark
        [0, 0.3] or light [0.7, 1] — opposite to the background's; on the other backgrounds, as
        ``ShapesDataset``, the first of 16 uniform RGB candidates at distance ≥ 0.5 from the mean
        background colour under the glyph (else the farthest).
    Backgrounds: ``"noise"`` (default) — one grey level from its band plus i.i.d. pixel noise of std 0.1.
    What two crops of an image share is then the glyph's shape, its polarity (one bit) and grey levels
    within bands that the brightness/contrast jitter covers — no colour, no texture, and no pair of
    freely drawn grey levels that would tell the images of a batch apart. ``"texture"`` — a crop of one
    of scikit-image's photos and an RGB glyph; ``"plain"`` — one uniform colour and an RGB glyph.

    Rendering: the digit's intensities (0..16 scaled to [0, 1]) are the glyph's alpha, resized and
    rotated bilinearly (4x supersampled, box-downsampled), composited over the background and
    quantised to 8 bits.

    Measured at size 32 with the default 10 000 train / 2000 test images (``benchmarks/glyphs_headroom.py``,
    benchmarks/RESULTS.md; kNN k = 20, T = 0.07): raw pixels 37.3 %, a random-init 4-block ViT 12.2 %, a
    random-init 4-layer CNN 29.0 %; a small supervised CNN (4 conv-BN-ReLU layers) reaches 88.9 % test
    accuracy after 105 CPU-seconds and 97.5 % after 300 (one thread). SimCLR on ``cnn_small``
    (``recipes/demo-glyphs.yaml``, 468 steps) reaches 49.4 %.

    Items: ``image`` (3, size, size) float32 in [0, 1] (or ``transform(image)``), ``label`` int,
    ``scale``, ``rotation`` floats, ``position`` (2,), ``color`` (3,), ``mask`` (size, size) bool
    (glyph alpha ≥ 0.5). Rendered items are cached (uint8) on first access when ``cache`` is true.
    """

    class_names = [str(d) for d in range(10)]
    num_classes = 10
    channels = 3
    BACKGROUNDS = ("noise", "texture", "plain")
    # Measured with compute_mean_std on the default train split (10 000 images, size 32).
    MEAN_STD = {
        "noise": ((0.4998, 0.4998, 0.4998), (0.3450, 0.3450, 0.3450)),
        "texture": ((0.4548, 0.4064, 0.3866), (0.2318, 0.2107, 0.2136)),
        "plain": ((0.5018, 0.4981, 0.5024), (0.2806, 0.2803, 0.2801)),
    }

    def __init__(
        self,
        split: str = "train",
        num_samples: int | None = None,
        size: int = 32,
        background: str = "noise",
        transform: Transform | None = None,
        seed: int = 0,
        cache: bool = True,
        background_noise: float = 0.0,
    ):
        if num_samples is None:
            num_samples = 10000 if split == "train" else 2000
        self._setup(split, num_samples, size, background, transform, seed, cache, background_noise)
        self._digits, self._digit_labels = _digits_split()[split]
        # The background painter of ShapesDataset, reused at this size and background kind.
        self._backgrounds = ShapesDataset(split, num_samples=1, size=size, background=background, cache=False)

    def _draw_background(self, rng: np.random.Generator, light: bool) -> np.ndarray:
        """(size, size, 3) float32 in [0, 1]. ``noise``: one grey level from the light or the dark band plus
        i.i.d. pixel noise of std 0.1 (noise that two crops of one image cannot share once resized); the
        other kinds are ``ShapesDataset``'s."""
        if self.background != "noise":
            return self._backgrounds._draw_background(rng)
        n = self.size
        level = rng.uniform(*(_GLYPH_LIGHT_LEVELS if light else _GLYPH_DARK_LEVELS))
        grey = level + rng.normal(0.0, 0.1, size=(n, n, 1))
        return np.clip(np.repeat(grey, 3, axis=2), 0.0, 1.0).astype(np.float32)

    def _draw_alpha(self, digit: np.ndarray, scale: float, position: np.ndarray, rotation: float) -> np.ndarray:
        """Glyph coverage (size, size) float32 in [0, 1]: the digit resized, rotated and placed."""
        s, n = _SUPERSAMPLE, self.size
        side = max(1, round(scale * n * s))
        glyph = Image.fromarray(np.rint(digit * 255).astype(np.uint8), mode="L").resize((side, side), Image.BILINEAR)
        glyph = glyph.rotate(math.degrees(rotation), resample=Image.BILINEAR, expand=True)
        canvas = Image.new("L", (n * s, n * s), 0)
        left = round(position[0] * n * s - glyph.width / 2)
        top = round(position[1] * n * s - glyph.height / 2)
        canvas.paste(glyph, (left, top))
        return np.asarray(canvas.reduce(s), dtype=np.float32) / 255.0

    def _render(self, index: int) -> tuple[np.ndarray, np.ndarray, dict]:
        rng = np.random.default_rng([_STREAM_SALT, 1, self.seed, _SPLIT_STREAM[self.split], index])
        light_background = bool(rng.random() < 0.5)
        background = self._draw_background(rng, light_background)
        base = index % len(self._digit_labels)
        scale = float(rng.uniform(*_GLYPH_SCALE_RANGE))
        rotation = float(rng.uniform(-_GLYPH_MAX_ROTATION, _GLYPH_MAX_ROTATION))
        position = rng.uniform(scale / 2, 1 - scale / 2, size=2)
        # Grey glyphs on the grey 'noise' background: a colour that crops of one image share would be a
        # shortcut for self-supervision (what the augmentations cannot remove), not the class.
        # Their levels come from two narrow bands (one for the background, the other for the glyph) that
        # the brightness/contrast jitter covers: freely drawn, a pair of grey levels would tell the images of
        # a batch apart better than their shapes. The random polarity keeps raw pixels a poor feature.
        band = _GLYPH_DARK_LEVELS if light_background else _GLYPH_LIGHT_LEVELS
        candidates = (rng.uniform(*band, size=(16, 1)).repeat(3, axis=1) if self.background == "noise"
                      else rng.random((16, 3)))
        alpha = self._draw_alpha(self._digits[base], scale, position, rotation)
        local = (alpha[:, :, None] * background).sum((0, 1)) / max(float(alpha.sum()), 1e-6)
        distance = np.linalg.norm(candidates - local, axis=1)
        far = np.flatnonzero(distance >= _MIN_COLOUR_DISTANCE)
        color = candidates[far[0] if len(far) else int(distance.argmax())].astype(np.float32)
        if self.background_noise > 0:
            noise_rng = np.random.default_rng([_STREAM_SALT, 1, self.seed, _SPLIT_STREAM[self.split], index, 1])
            background = background + self.background_noise * noise_rng.standard_normal(background.shape,
                                                                                         dtype=np.float32)
        a = alpha[:, :, None]
        image = np.rint(np.clip(background * (1 - a) + color * a, 0.0, 1.0) * 255).astype(np.uint8)
        factors = {"label": int(self._digit_labels[base]), "color": color, "scale": scale,
                   "position": position.astype(np.float32), "rotation": rotation}
        return image, alpha >= 0.5, factors

    def __getitem__(self, index: int) -> dict:
        image, mask, factors = self._rendered(index)
        return {
            "image": image,
            "label": factors["label"],
            "color": torch.from_numpy(factors["color"].copy()),
            "scale": factors["scale"],
            "position": torch.from_numpy(factors["position"].copy()),
            "rotation": factors["rotation"],
            "mask": torch.from_numpy(mask.copy()),
        }


# --------------------------------------------------------------------------- registry

BUILTIN_DATASETS: dict[str, type] = {"digits": DigitsDataset, "glyphs": GlyphsDataset, "shapes": ShapesDataset}


def load_builtin(name: str, split: str = "train", **kwargs) -> torch.utils.data.Dataset:
    """Build a built-in dataset by name, e.g. ``load_builtin("shapes", "test", size=64)``."""
    if name not in BUILTIN_DATASETS:
        raise DataError(
            f"Unknown built-in dataset {name!r}; choose one of {sorted(BUILTIN_DATASETS)} "
            "or pass a folder / path list of your own images."
        )
    return BUILTIN_DATASETS[name](split=split, **kwargs)
