"""Train a Neighbor2Neighbor denoiser on noisy images only, save/load it, and write a denoised copy.

This is step 2 of "Ditch the Denoiser" (arXiv 2505.12191, ``specs/noisy-dinov2.md``): the denoiser
``f`` (:class:`~sslkit.nn.unet.UNet`, 48 features) is trained with the regularised Neighbor2Neighbor
loss (:mod:`sslkit.functional.neighbor2neighbor`) with Adam 3e-4, halved from 20/40/60/80 % of the
epochs, γ_e = 2e/E, random crops (256² in the paper) and batch 8; the whole noisy training set D is
then denoised into D̂, aligned file by file with D.

On a CPU the schedule is shrunk, not changed: fewer epochs E (the γ ramp and the halvings scale
with E) and optionally ``steps_per_epoch`` to cap an epoch.

Files: a denoiser is ``denoiser.safetensors`` + ``denoiser.json`` (UNet config, training facts);
a denoised copy is a folder with exactly the noisy copy's relative paths plus ``denoise.json``.

Example::

    noisy = NoisyDataset(load_builtin("digits"), "gaussian", 100)
    result = train_denoiser(noisy, DenoiserTrainConfig(epochs=4, width=16, depth=3))
    save_denoiser(result.model, "runs/n2n")
    model = load_denoiser("runs/n2n")
    clean_guess = denoise_images(model, noisy[0]["image"][None])   # (1, 1, 32, 32) in [0, 1]
"""

from __future__ import annotations

import json
import math
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from sslkit.atomic_files import save_safetensors_with_json, write_folder_atomic, write_json_atomic
from sslkit.data.errors import DataError
from sslkit.data.noise import DENOISE_JSON, copy_relative_paths, psnr, quantize, write_image_file
from sslkit.functional.neighbor2neighbor import (gamma_ramp, lr_factor, neighbor2neighbor_loss,
                                                 neighbor_subsample, sample_neighbor_pairs)
from sslkit.nn.bounds import MAX_EMBED_DIM
from sslkit.nn.unet import UNet, UNetConfig
from sslkit.training_loop import ProgressBar, TrainingLoop

__all__ = ["DenoiserTrainConfig", "DenoiserTrainResult", "train_denoiser", "denoise_images", "DenoisedDataset",
           "save_denoiser", "load_denoiser", "apply_denoiser", "DenoisedCopy", "DENOISER_JSON", "DENOISER_WEIGHTS",
           "DENOISE_JSON", "mean_psnr"]

DENOISER_JSON = "denoiser.json"
DENOISER_WEIGHTS = "denoiser.safetensors"
_FORMAT = "sslkit.denoiser"
_FORMAT_VERSION = 1


# --------------------------------------------------------------------------- training

@dataclass
class DenoiserTrainConfig:
    """Neighbor2Neighbor training; defaults are the paper's (``specs/noisy-dinov2.md`` hyper-parameters)."""

    width: int = 48
    depth: int = 5
    epochs: int = 100
    batch_size: int = 8
    crop: int = 256
    lr: float = 3e-4
    max_gamma: float = 2.0
    steps_per_epoch: int | None = None  # None: one pass over the data per epoch
    seed: int = 0

    def __post_init__(self):
        for name in ("width", "depth", "epochs", "batch_size", "crop"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise DataError(f"Denoiser training: {name} must be a positive integer, got {value!r}.")
        if self.depth > 8:
            raise DataError(f"Denoiser training: depth must lie in 1..8 (poolings of the UNet), got {self.depth!r}.")
        if self.width > MAX_EMBED_DIM:
            raise DataError(f"Denoiser training: width must be at most {MAX_EMBED_DIM}, got {self.width!r}.")
        if self.crop < 2:
            raise DataError(f"Denoiser training: crop must be at least 2 pixels, got {self.crop!r}.")
        if not self.lr > 0:
            raise DataError(f"Denoiser training: lr must be > 0, got {self.lr!r}.")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise DataError(f"Denoiser training: steps_per_epoch must be >= 1 or None, got {self.steps_per_epoch!r}.")


@dataclass
class DenoiserTrainResult:
    model: UNet
    history: list[dict] = field(default_factory=list)  # one dict per epoch: epoch, lr, gamma, loss, ...
    seconds: float = 0.0
    steps: int = 0


def _random_crop(image: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """A random ``size``×``size`` crop of (C, H, W); smaller images are reflect/replicate-padded up to it."""
    _, height, width = image.shape
    pad_h, pad_w = max(0, size - height), max(0, size - width)
    if pad_h or pad_w:
        mode = "reflect" if pad_h < height and pad_w < width else "replicate"
        image = torch.nn.functional.pad(image[None], (0, pad_w, 0, pad_h), mode=mode)[0]
        height, width = image.shape[-2:]
    top = int(torch.randint(0, height - size + 1, (1,), generator=generator))
    left = int(torch.randint(0, width - size + 1, (1,), generator=generator))
    return image[:, top:top + size, left:left + size]


def _channels_of(dataset) -> int:
    channels = getattr(dataset, "channels", None)
    if channels in (1, 3):
        return int(channels)
    return int(dataset[0]["image"].shape[0])


def _crop_size(dataset, requested: int) -> int:
    """The training crop: the requested size, at most the first image's short side, and even (2×2 cells)."""
    first = dataset[0]["image"]
    size = min(requested, int(first.shape[-1]), int(first.shape[-2]))
    size -= size % 2
    if size < 2:
        raise DataError(f"Images of {tuple(first.shape[-2:])} pixels are too small to train a denoiser on.")
    return size


def train_denoiser(dataset, config: DenoiserTrainConfig | None = None, progress: bool = True,
                   log: Callable[[str], None] | None = None) -> DenoiserTrainResult:
    """Train a UNet denoiser with Neighbor2Neighbor on the noisy images of ``dataset`` (no clean image is used).

    dataset: sslkit items whose ``"image"`` is a noisy (C, H, W) float in [0, 1]. Deterministic under
    ``config.seed`` on CPU. Returns the model in eval mode with per-epoch loss history.
    """
    config = config or DenoiserTrainConfig()
    if len(dataset) == 0:
        raise DataError("The noisy dataset is empty; nothing to train a denoiser on.")
    channels = _channels_of(dataset)
    crop = _crop_size(dataset, config.crop)
    n = len(dataset)
    full_steps = math.ceil(n / config.batch_size)
    steps_per_epoch = min(full_steps, config.steps_per_epoch) if config.steps_per_epoch else full_steps
    history: list[dict] = []
    with TrainingLoop("denoiser", steps=config.epochs * steps_per_epoch, seed=config.seed, progress=progress,
                      hint="lower --lr") as loop:
        generator = loop.generator
        model = UNet(UNetConfig(channels=channels, width=config.width, depth=config.depth))
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        model.train()
        order: list[int] = []
        for epoch in range(1, config.epochs + 1):
            lr = config.lr * lr_factor(epoch, config.epochs)
            for group in optimizer.param_groups:
                group["lr"] = lr
            gamma = gamma_ramp(epoch, config.epochs, config.max_gamma)
            sums = {"loss": 0.0, "reconstruction": 0.0, "regulariser": 0.0}
            for _ in range(steps_per_epoch):
                if len(order) < config.batch_size:  # reshuffle; capped epochs continue where they left off
                    order += torch.randperm(n, generator=generator).tolist()
                batch_ids, order = order[:min(config.batch_size, n)], order[min(config.batch_size, n):]
                noisy = torch.stack([_random_crop(dataset[i]["image"].float(), crop, generator) for i in batch_ids])
                pairs = sample_neighbor_pairs(noisy.shape, generator=generator)
                sub1 = neighbor_subsample(noisy, pairs[..., 0])
                sub2 = neighbor_subsample(noisy, pairs[..., 1])
                with torch.no_grad():
                    full = model(noisy)
                loss, rec, reg = neighbor2neighbor_loss(model(sub1), sub2, neighbor_subsample(full, pairs[..., 0]),
                                                        neighbor_subsample(full, pairs[..., 1]), gamma)
                loop.check(loss, f"epoch {epoch}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                for key, value in (("loss", loss), ("reconstruction", rec), ("regulariser", reg)):
                    sums[key] += value.item()
                loop.advance(loss)
            record = {"epoch": epoch, "lr": lr, "gamma": gamma, **{k: v / steps_per_epoch for k, v in sums.items()}}
            history.append(record)
            if log is not None:
                log(f"epoch {epoch}/{config.epochs}: loss {record['loss']:.5f} (γ={gamma:.2f}, lr={lr:.2e})")
    model.eval()
    return DenoiserTrainResult(model, history, loop.seconds, loop.step)


# --------------------------------------------------------------------------- applying

@torch.no_grad()
def denoise_images(model: UNet, images: torch.Tensor) -> torch.Tensor:
    """The denoiser's estimate, clipped to [0, 1]. images: (B, C, H, W) or (C, H, W) in [0, 1]; same shape out."""
    single = images.ndim == 3
    batch = images[None] if single else images
    was_training = model.training
    model.eval()
    try:
        out = model(batch.float()).clamp_(0.0, 1.0)
    finally:
        model.train(was_training)
    return out[0] if single else out


class DenoisedDataset(torch.utils.data.Dataset):
    """Denoise item ``i`` of ``dataset`` on the fly with ``model``; other keys pass through (item protocol kept).

    Handy for small data or for pairing (y, ŷ) without writing files; for a large set write the copy once
    with :func:`apply_denoiser` instead (the paper denoises offline).
    """

    def __init__(self, dataset, model: UNet, transform: Callable | None = None):
        self.dataset, self.model, self.transform = dataset, model.eval(), transform
        for name in ("channels", "num_classes", "class_names", "mean", "std"):
            if hasattr(dataset, name):
                setattr(self, name, getattr(dataset, name))

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        item = dict(self.dataset[index])
        image = denoise_images(self.model, item["image"])
        item["image"] = self.transform(image) if self.transform is not None else image
        return item


def mean_psnr(estimates: Sequence[torch.Tensor], references: Sequence[torch.Tensor]) -> float:
    """Mean over images of the per-image PSNR (dB, peak 1); images with zero error are skipped."""
    values = [psnr(e, r) for e, r in zip(estimates, references)]
    finite = [v for v in values if math.isfinite(v)]
    return float(sum(finite) / len(finite)) if finite else math.inf


@dataclass
class DenoisedCopy:
    directory: Path
    files: list[str]
    psnr_noisy: float | None  # mean PSNR of the noisy inputs vs the clean images (when known)
    psnr_denoised: float | None  # mean PSNR of the denoised outputs vs the clean images (when known)
    meta: dict


def apply_denoiser(model: UNet, dataset, out: str | os.PathLike, files: Sequence[str] | None = None,
                   clean=None, fmt: str = "png", noise_meta: dict | None = None, overwrite: bool = False,
                   progress: bool = True, extra: dict | None = None) -> DenoisedCopy:
    """Denoise every image of ``dataset`` and write the copy to folder ``out`` atomically.

    ``files``: the relative path of item ``i`` (default: :func:`copy_relative_paths`; pass the noisy copy's
    ``noise.json`` ``files`` to get the same layout). ``clean``: an aligned dataset of clean images; when
    given, ``denoise.json`` records the mean PSNR of the noisy input and of the denoised output.
    """
    if len(dataset) == 0:
        raise DataError("The dataset to denoise is empty; check --data.")
    files = list(files) if files is not None else copy_relative_paths(dataset, fmt)
    if len(files) != len(dataset):
        raise DataError(f"{len(files)} file names for {len(dataset)} images; the noisy copy's noise.json is stale.")
    if clean is not None and len(clean) != len(dataset):
        raise DataError(f"The clean reference has {len(clean)} images but the noisy data {len(dataset)}; "
                        "they must be aligned one to one.")
    before: list[float] = []
    after: list[float] = []
    started = time.perf_counter()

    def fill(tmp: Path) -> None:
        with ProgressBar("denoising", len(dataset), enabled=progress) as bar:
            for index in range(len(dataset)):
                noisy = dataset[index]["image"]
                denoised = denoise_images(model, noisy)
                target = tmp / files[index]
                target.parent.mkdir(parents=True, exist_ok=True)
                write_image_file(denoised, target, fmt)
                if clean is not None:
                    reference = clean[index]["image"]
                    before.append(psnr(noisy, reference))
                    # PSNR of what is stored (quantised like the file), so it matches a re-read of the copy.
                    after.append(psnr(quantize(denoised, 8 if fmt == "png" else 16), reference))
                bar.advance()
        meta.update(psnr_noisy=_mean_or_none(before), psnr_denoised=_mean_or_none(after),
                    seconds=round(time.perf_counter() - started, 3))
        write_json_atomic(tmp / DENOISE_JSON, meta)

    meta: dict[str, Any] = {
        "format": "sslkit.denoised_copy", "format_version": 1, "count": len(dataset), "image_format": fmt,
        "denoiser": {"config": model.config.to_dict(), **(getattr(model, "meta", {}) or {})},
        "noise": {k: v for k, v in (noise_meta or {}).items() if k != "files"},
        "extra": extra or {}, "files": files,
    }
    write_folder_atomic(Path(out), fill, overwrite=overwrite)
    return DenoisedCopy(Path(out), files, meta["psnr_noisy"], meta["psnr_denoised"], meta)


def _mean_or_none(values: list[float]) -> float | None:
    finite = [v for v in values if math.isfinite(v)]
    return float(sum(finite) / len(finite)) if finite else None


# --------------------------------------------------------------------------- save / load

def save_denoiser(model: UNet, directory: str | os.PathLike, extra: dict | None = None) -> Path:
    """Write ``denoiser.safetensors`` + ``denoiser.json`` into ``directory`` (both via temp names + rename)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_id = uuid.uuid4().hex
    meta = {"format": _FORMAT, "format_version": _FORMAT_VERSION, "save_id": save_id,
            "config": model.config.to_dict(), "extra": extra or {}}
    text = json.dumps(meta, indent=2, allow_nan=False) + "\n"  # serialise before touching the disk
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_safetensors_with_json(directory, tensors, DENOISER_WEIGHTS, DENOISER_JSON, text,
                               metadata={"format": _FORMAT, "save_id": save_id})
    return directory


def load_denoiser(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> UNet:
    """Rebuild a :class:`UNet` saved by :func:`save_denoiser` (directory or either file), in eval mode.

    The model carries ``model.meta = {"extra": {...}}`` (training facts). Weights are safetensors only.
    """
    path = Path(path)
    if path.is_dir():
        json_path, weights_path = path / DENOISER_JSON, path / DENOISER_WEIGHTS
    else:
        json_path, weights_path = path.with_suffix(".json"), path.with_suffix(".safetensors")
    for p in (json_path, weights_path):
        if not p.is_file():
            raise FileNotFoundError(f"Denoiser file {p} is missing; expected {DENOISER_JSON} and {DENOISER_WEIGHTS} "
                                    "side by side (written by 'sslkit denoise train').")
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise DataError(f"Denoiser description {json_path} is not valid JSON ({err}); retrain the denoiser.") from None
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT or meta.get("format_version") != _FORMAT_VERSION:
        raise DataError(f"{json_path} is not an sslkit denoiser description (format {_FORMAT} v{_FORMAT_VERSION}).")
    try:
        config = UNetConfig.from_dict(meta["config"])
    except (KeyError, TypeError, ValueError) as err:
        reason = str(err).rstrip(".").removeprefix("UNetConfig: ")
        raise DataError(f"Denoiser description {json_path} has a bad config ({reason}); fix it or retrain the "
                        "denoiser.") from None
    # Built on the meta device and compared with the safetensors header first: memory is allocated only
    # for weights whose sizes the file itself holds, so an absurd width fails before anything is allocated.
    with torch.device("meta"):
        model = UNet(config)
    try:
        with safe_open(str(weights_path), framework="pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        if shapes != expected:
            wrong = sorted(k for k in set(shapes) | set(expected) if shapes.get(k) != expected.get(k))
            raise DataError(f"Denoiser weights {weights_path} do not match {json_path} (keys {wrong[:5]} differ); "
                            "retrain the denoiser.")
        state = load_file(str(weights_path), device=str(torch.device(map_location)))
    except (SafetensorError, OSError) as err:
        raise DataError(f"Cannot load the denoiser from {path} ({err}); retrain the denoiser.") from None
    model = model.to_empty(device=torch.device(map_location))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise DataError(f"Denoiser weights {weights_path} do not match {json_path}: {str(err).splitlines()[0]}") from None
    model.meta = {"extra": meta.get("extra", {})}
    return model.to(map_location).eval()
