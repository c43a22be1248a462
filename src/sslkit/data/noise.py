"""Pixel-noise models of "Ditch the Denoiser" (arXiv 2505.12191), a noisy dataset wrapper and a noisy-copy writer.

Noise is applied to an image ``x`` in [0, 1] and the result is clipped to [0, 1]
(``specs/noisy-dinov2.md``, step 1):

- Gaussian: ``y = x + n``, ``n ~ N(0, (σ/255)²)``, σ on the 0–255 scale (50, 100, 255 in the paper);
- shot: ``y = Poisson(λ·x) / λ`` (λ = 1, 3, 10; smaller λ is noisier);
- speckle: ``y = x + x·n``, ``n ~ N(0, c²)`` (c = 0.4, 0.7, 1.0).

Every image gets its own generator seeded by ``(seed, index)`` so the noisy version of item ``i``
does not depend on access order, on DataLoader workers or on which other items were noised: a
dataset's noisy copy is reproducible image by image. (The reference draws all images from one
``default_rng(42)`` stream in directory order, which ties each image's noise to the file listing;
we keep its default seed, 42.) Like the reference, stored copies are quantised by flooring to
8 bits (``astype(uint8)`` of ``y·255``); 16-bit TIFF is available to keep more of the noise.

Example::

    ds = NoisyDataset(load_builtin("digits", "train"), kind="gaussian", level=100)
    ds[0]["image"]                      # (1, 32, 32) in [0, 1], the same on every call
    write_noisy_copy(load_builtin("digits"), "noisy-digits", kind="gaussian", level=100)
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from PIL import Image

from sslkit.atomic_files import write_folder_atomic, write_json_atomic
from sslkit.data.errors import DataError

__all__ = [
    "NOISE_KINDS", "DEFAULT_NOISE_SEED", "NOISE_JSON", "gaussian_noise", "shot_noise", "speckle_noise",
    "add_noise", "image_generator", "quantize", "NoisyDataset", "NoisyCopy", "write_image_file",
    "write_noisy_copy", "copy_relative_paths", "psnr", "open_image_source", "open_noisy_copy", "open_clean_source",
    "source_record",
]

DEFAULT_NOISE_SEED = 42  # the reference's generate_noise.py seed
NOISE_JSON = "noise.json"
DENOISE_JSON = "denoise.json"  # written next to a denoised copy by sslkit.analysis.denoise.apply_denoiser
# Salt so (seed, index) streams here never coincide with other seeded (seed, index) uses in sslkit.
_NOISE_STREAM_SALT = 0x4E015E
# Flooring adds 1 % of a level: a value already on level k but stored as float32 (k/255 rounded, which can
# fall a hair below k/255) must floor to k again, so quantising twice, or writing a quantised image, is stable.
_LEVEL_SLACK = 0.01


# --------------------------------------------------------------------------- noise models

def _check_image(image: torch.Tensor) -> None:
    if not torch.is_floating_point(image):
        raise TypeError(f"noise: image must be a float tensor in [0, 1], got dtype {image.dtype}.")


def gaussian_noise(image: torch.Tensor, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """``clip(x + n, 0, 1)`` with ``n ~ N(0, (sigma/255)²)``; ``sigma`` is on the 0–255 scale.

    image: (..., H, W) float in [0, 1] (any shape); returns the same shape and dtype.
    """
    _check_image(image)
    if not sigma >= 0:
        raise ValueError(f"gaussian_noise: sigma must be >= 0 (0-255 scale), got {sigma!r}.")
    noise = torch.randn(image.shape, generator=generator, dtype=image.dtype, device=image.device)
    return (image + noise * (sigma / 255.0)).clamp_(0.0, 1.0)


def shot_noise(image: torch.Tensor, lam: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """``clip(Poisson(lam·x) / lam, 0, 1)``: photon-count noise, variance ``x/lam`` before clipping.

    image: (..., H, W) float in [0, 1]; returns the same shape and dtype.
    """
    _check_image(image)
    if not lam > 0:
        raise ValueError(f"shot_noise: lam must be > 0, got {lam!r}.")
    rate = (image.clamp(min=0.0) * lam).to(torch.float64)  # float64: exact counts for large rates
    counts = torch.poisson(rate, generator=generator)
    return (counts / lam).to(image.dtype).clamp_(0.0, 1.0)


def speckle_noise(image: torch.Tensor, c: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """``clip(x + x·n, 0, 1)`` with ``n ~ N(0, c²)``: multiplicative noise, std ``c·x`` before clipping.

    image: (..., H, W) float in [0, 1]; returns the same shape and dtype.
    """
    _check_image(image)
    if not c >= 0:
        raise ValueError(f"speckle_noise: c must be >= 0, got {c!r}.")
    noise = torch.randn(image.shape, generator=generator, dtype=image.dtype, device=image.device)
    return (image + image * noise * c).clamp_(0.0, 1.0)


NOISE_KINDS: dict[str, Callable[[torch.Tensor, float, torch.Generator | None], torch.Tensor]] = {
    "gaussian": gaussian_noise,
    "shot": shot_noise,
    "speckle": speckle_noise,
}


def _check_kind(kind: str, level: float) -> None:
    if kind not in NOISE_KINDS:
        raise DataError(f"Unknown noise kind {kind!r}; use one of {sorted(NOISE_KINDS)}.")
    try:
        level = float(level)
    except (TypeError, ValueError):
        raise DataError(f"Noise level {level!r} is not a number.") from None
    if kind == "shot" and not level > 0:
        raise DataError(f"Shot-noise level (λ) must be > 0, got {level!r}; the paper uses 1, 3 or 10.")
    if kind != "shot" and not (level >= 0 and math.isfinite(level)):
        raise DataError(f"{kind} noise level must be a finite number >= 0, got {level!r}.")


def add_noise(image: torch.Tensor, kind: str, level: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply noise ``kind`` ('gaussian' σ on 0–255, 'shot' λ, 'speckle' c) at ``level``; image (..., H, W)."""
    _check_kind(kind, level)
    return NOISE_KINDS[kind](image, float(level), generator)


def image_generator(seed: int, index: int) -> torch.Generator:
    """A CPU generator for image ``index`` of a dataset noised with ``seed``: independent streams per image.

    SeedSequence mixes the pair so that nearby (seed, index) pairs give unrelated streams.
    """
    state = np.random.SeedSequence([_NOISE_STREAM_SALT, int(seed), int(index)]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def quantize(image: torch.Tensor, bits: int | None) -> torch.Tensor:
    """Round down to ``bits``-bit levels, as the reference does when storing 8-bit PNGs (``astype(uint8)``).

    ``bits=None`` returns the image unchanged. image: any shape, in [0, 1].
    """
    if bits is None:
        return image
    top = float(2 ** bits - 1)
    return (torch.floor(image.double() * top + _LEVEL_SLACK) / top).to(image.dtype)


def psnr(estimate: torch.Tensor, reference: torch.Tensor, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB, ``10·log10(peak² / MSE)``, over all elements (inf if identical)."""
    mse = torch.mean((estimate.double() - reference.double()) ** 2).item()
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)


# --------------------------------------------------------------------------- dataset wrapper

class NoisyDataset(torch.utils.data.Dataset):
    """Noise item ``i`` of any sslkit dataset with its own generator ``(seed, i)``; the item protocol is kept.

    ``dataset[i]`` must return a dict whose ``"image"`` is an untransformed (C, H, W) float in [0, 1];
    every other key (``label``, ``path``, ...) is passed through. ``transform`` (optional) is applied
    to the noisy image, as the built-in datasets do. With ``bits=8`` (default) the image is floored
    to 8 bits exactly like :func:`write_noisy_copy` stores it, so the wrapper and a written PNG copy
    give identical tensors; ``bits=None`` keeps the float values.

    The wrapper keeps ``channels``, ``num_classes``, ``class_names``, ``mean`` and ``std`` of the
    wrapped dataset when it has them (the normalisation stats are those of the *clean* data; recompute
    with ``sslkit.data.stats.compute_mean_std`` if the noisy statistics are wanted).
    """

    def __init__(self, dataset, kind: str = "gaussian", level: float = 100.0, seed: int = DEFAULT_NOISE_SEED,
                 bits: int | None = 8, transform: Callable | None = None):
        _check_kind(kind, level)
        if bits not in (None, 8, 16):
            raise DataError(f"NoisyDataset: bits must be 8, 16 or None, got {bits!r}.")
        self.dataset, self.kind, self.level = dataset, kind, float(level)
        self.seed, self.bits, self.transform = int(seed), bits, transform
        for name in ("channels", "num_classes", "class_names", "mean", "std", "root"):
            if hasattr(dataset, name):
                setattr(self, name, getattr(dataset, name))

    def __len__(self) -> int:
        return len(self.dataset)

    def noisy_image(self, index: int, image: torch.Tensor) -> torch.Tensor:
        """The noisy, quantised version of ``image`` as item ``index``: (C, H, W) -> (C, H, W)."""
        noisy = add_noise(image.float(), self.kind, self.level, image_generator(self.seed, index))
        return quantize(noisy, self.bits)

    def __getitem__(self, index: int) -> dict:
        if index < 0:
            index += len(self)
        item = dict(self.dataset[index])
        image = item.get("image")
        if not isinstance(image, torch.Tensor) or image.ndim != 3:
            raise DataError(
                f"NoisyDataset: item {index} has no (C, H, W) tensor under 'image'; wrap the dataset "
                "before adding transforms (noise applies to the untransformed image)."
            )
        noisy = self.noisy_image(index, image)
        item["image"] = self.transform(noisy) if self.transform is not None else noisy
        return item


# --------------------------------------------------------------------------- writing a copy

def write_image_file(image: torch.Tensor, path: Path, fmt: str = "png") -> None:
    """Write a (C, H, W) image in [0, 1] as an 8-bit PNG (floored) or a 16-bit TIFF (floored), 1 or 3 channels."""
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise DataError(f"Cannot write {path}: image must be (1 or 3, H, W), got {tuple(image.shape)}.")
    array = image.detach().clamp(0.0, 1.0).permute(1, 2, 0).cpu().numpy().astype(np.float64)
    if fmt == "png":
        data = np.floor(array * 255.0 + _LEVEL_SLACK).clip(0, 255).astype(np.uint8)
        Image.fromarray(data[:, :, 0] if data.shape[2] == 1 else data).save(path, format="PNG")
    elif fmt == "tiff":
        data = np.floor(array * 65535.0 + _LEVEL_SLACK).clip(0, 65535).astype(np.uint16)
        if data.shape[2] != 1:
            # PIL writes (and load_image reads) 16-bit TIFFs for single-channel images only.
            raise DataError(f"Cannot write {path}: 16-bit TIFF is supported for 1-channel images only; use PNG.")
        Image.fromarray(np.ascontiguousarray(data[:, :, 0])).save(path, format="TIFF")  # uint16 -> mode I;16
    else:
        raise DataError(f"Unknown image format {fmt!r}; use 'png' (8-bit) or 'tiff' (16-bit).")


def copy_relative_paths(dataset, fmt: str = "png") -> list[str]:
    """File names (relative, POSIX) for every item of ``dataset`` in a noisy/denoised copy.

    Datasets read from files (``root`` attribute, items with ``path``) keep their relative paths,
    with the suffix changed; built-in datasets get ``<class name>/<index:06d>.<ext>`` when labelled,
    ``<index:06d>.<ext>`` otherwise. Reading the copy back with ``ImageFolderDataset`` then gives the
    same class names (sorted alphabetically, as ImageFolderDataset orders classes).
    """
    suffix = ".png" if fmt == "png" else ".tif"
    root = getattr(dataset, "root", None)
    paths = getattr(dataset, "paths", None)
    if root is not None and paths is not None and len(paths) == len(dataset):
        names = []
        for path in paths:
            try:
                names.append(Path(path).relative_to(root).with_suffix(suffix).as_posix())
            except ValueError:  # a path list may name files outside its root: keep the name only
                names.append(Path(path).with_suffix(suffix).name)
        if len(set(names)) == len(names):
            return names
    class_names = getattr(dataset, "class_names", None)
    labels = getattr(dataset, "labels", None) or getattr(dataset, "_labels", None)
    names = []
    for index in range(len(dataset)):
        label = labels[index] if labels is not None else (dataset[index].get("label", -1) if class_names else -1)
        if class_names and label is not None and 0 <= int(label) < len(class_names):
            names.append(f"{class_names[int(label)]}/{index:06d}{suffix}")
        else:
            names.append(f"{index:06d}{suffix}")
    return names


@dataclass
class NoisyCopy:
    """What :func:`write_noisy_copy` wrote: the folder, its file names (aligned with the source) and mean PSNR."""

    directory: Path
    files: list[str]
    psnr_noisy: float
    meta: dict


def _progress(iterable: Iterable, total: int, description: str, enabled: bool):
    if not enabled:
        yield from iterable
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task(description, total=total)
        for value in iterable:
            yield value
            bar.advance(task)


def write_noisy_copy(dataset, out: str | os.PathLike, kind: str = "gaussian", level: float = 100.0,
                     seed: int = DEFAULT_NOISE_SEED, fmt: str = "png", source: dict | None = None,
                     overwrite: bool = False, progress: bool = False) -> NoisyCopy:
    """Write a noisy copy of ``dataset`` (untransformed sslkit items) into the folder ``out``, atomically.

    Item ``i`` is noised with generator ``(seed, i)`` and stored as an 8-bit PNG (``fmt="png"``,
    floored like the reference) or a 16-bit TIFF (``fmt="tiff"``). Layout: see
    :func:`copy_relative_paths` (class sub-folders when labelled). ``out/noise.json`` records kind,
    level, seed, format, ``source`` (how to reopen the clean data), the mean PSNR of the stored noisy
    images against the clean ones, and ``files`` (the relative path of item ``i`` at position ``i``).
    """
    _check_kind(kind, level)
    if fmt not in ("png", "tiff"):
        raise DataError(f"Unknown image format {fmt!r}; use 'png' (8-bit) or 'tiff' (16-bit).")
    if len(dataset) == 0:
        raise DataError("The dataset to noise is empty; check --data.")
    bits = 8 if fmt == "png" else 16
    if fmt == "tiff" and int(dataset[0]["image"].shape[0]) != 1:
        raise DataError("16-bit TIFF copies are supported for 1-channel images only; use --format png for colour.")
    noisy = NoisyDataset(dataset, kind, level, seed, bits=bits)
    files = copy_relative_paths(dataset, fmt)
    psnrs: list[float] = []

    def fill(tmp: Path) -> None:
        for index in _progress(range(len(dataset)), len(dataset), f"noising ({kind} {level:g})", progress):
            clean = dataset[index]["image"]
            image = noisy.noisy_image(index, clean)
            target = tmp / files[index]
            target.parent.mkdir(parents=True, exist_ok=True)
            write_image_file(image, target, fmt)
            psnrs.append(psnr(image, clean))
        meta.update(psnr_noisy=_finite_mean(psnrs))
        write_json_atomic(tmp / NOISE_JSON, meta)

    meta = {
        "format": "sslkit.noisy_copy", "format_version": 1, "kind": kind, "level": float(level), "seed": int(seed),
        "image_format": fmt, "bits": bits, "count": len(dataset), "source": source or {},
        "class_names": list(getattr(dataset, "class_names", None) or []) or None,
        "seeding": "torch.Generator per image from SeedSequence([salt, seed, index])",
        "files": files,
    }
    write_folder_atomic(Path(out), fill, overwrite=overwrite)
    return NoisyCopy(Path(out), files, meta["psnr_noisy"], meta)


def _finite_mean(values: Sequence[float]) -> float | None:
    finite = [v for v in values if math.isfinite(v)]
    return float(sum(finite) / len(finite)) if finite else None


# --------------------------------------------------------------------------- opening sources and copies

def open_image_source(data: str, split: str = "train", size: int = 32, num_samples: int | None = None,
                      channels: str | int = "auto"):
    """The whole dataset ``data`` names ('digits', 'shapes', an image folder, a .csv/.txt path list), untransformed.

    Unlike ``sslkit.data.sources.open_data`` nothing is held out: a noisy copy covers every image.
    ``split``/``size``/``num_samples`` apply to the built-in datasets only.
    """
    from sslkit.data.builtin import BUILTIN_DATASETS, load_builtin
    from sslkit.data.folder import ImageFolderDataset, PathListDataset

    if data in BUILTIN_DATASETS:
        kwargs: dict = {"size": int(size)}
        if data in ("shapes", "glyphs") and num_samples is not None:
            kwargs["num_samples"] = int(num_samples)
        if data == "digits" and channels != "auto":
            kwargs["channels"] = int(channels)
        return load_builtin(data, split, **kwargs)
    path = Path(data)
    if path.is_dir():
        return ImageFolderDataset(path, channels=channels)
    if path.suffix.lower() in (".csv", ".txt") and path.is_file():
        return PathListDataset(path, channels=channels)
    if path.exists():
        raise DataError(f"Data source '{data}' is neither a folder of images nor a .csv/.txt list of paths.")
    raise DataError(f"Data source '{data}' does not exist; pass 'shapes', 'digits', an image folder "
                    "or a .csv/.txt list of image paths.")


def source_record(data: str, split: str, size: int, num_samples: int | None, channels: str | int) -> dict:
    """How to reopen the clean source later (stored in noise.json): absolute paths for files."""
    from sslkit.data.builtin import BUILTIN_DATASETS

    if data in BUILTIN_DATASETS:
        return {"data": data, "split": split, "size": int(size), "num_samples": num_samples, "channels": channels}
    return {"data": str(Path(data).resolve()), "channels": channels}


class _AlignedSubset(torch.utils.data.Dataset):
    """``dataset`` re-ordered by ``indices``, keeping its dataset attributes (channels, class names, ...)."""

    def __init__(self, dataset, indices: Sequence[int]):
        self.dataset, self.indices = dataset, list(indices)
        for name in ("channels", "num_classes", "class_names", "mean", "std", "root"):
            if hasattr(dataset, name):
                setattr(self, name, getattr(dataset, name))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict:
        return self.dataset[self.indices[index]]


def open_noisy_copy(folder: str | os.PathLike, channels: str | int = "auto"):
    """A folder written by :func:`write_noisy_copy` (or a denoised copy written by
    ``sslkit.analysis.denoise.apply_denoiser``) as a dataset whose item ``i`` comes from source item ``i``
    (the order of the ``files`` list in ``noise.json`` / ``denoise.json``), plus that JSON as a dict.

    Returns ``(dataset, meta)``; for a plain image folder (no JSON) ``meta`` is None and the order is
    ImageFolderDataset's. Class sub-folders give labels (classes sorted alphabetically). A noisy copy and
    its denoised copy opened this way are aligned item by item: (y_i, ŷ_i).
    """
    from sslkit.data.folder import ImageFolderDataset

    folder = Path(folder)
    meta = None
    for name in (NOISE_JSON, DENOISE_JSON):
        if (folder / name).is_file():
            try:
                meta = json.loads((folder / name).read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                raise DataError(f"{folder / name} is not valid JSON ({err}); write the copy again.") from None
            break
    dataset = ImageFolderDataset(folder, channels=channels)
    if meta is None or not meta.get("files"):
        return dataset, meta
    position = {Path(p).relative_to(folder).as_posix(): i for i, p in enumerate(dataset.paths)}
    missing = [f for f in meta["files"] if f not in position]
    if missing:
        raise DataError(f"Copy {folder} lacks {len(missing)} file(s) listed in its JSON, e.g. {missing[0]}; "
                        "write the copy again.")
    return _AlignedSubset(dataset, [position[f] for f in meta["files"]]), meta


def open_clean_source(meta: dict | None):
    """The clean dataset a noisy (or denoised) copy was made from, aligned with it; None if unknown or gone."""
    meta = meta or {}
    source = meta.get("source") or (meta.get("noise") or {}).get("source") or {}
    if "data" not in source:
        return None
    try:
        return open_image_source(source["data"], source.get("split", "train"), source.get("size", 32),
                                 source.get("num_samples"), source.get("channels", "auto"))
    except DataError:
        return None
