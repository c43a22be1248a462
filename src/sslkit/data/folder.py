"""Datasets over the user's own image files: a folder tree or a list of paths.

``ImageFolderDataset(root)`` lists every image under ``root`` recursively (sorted).
If ``root`` holds only sub-folders (at least two, no loose images), each sub-folder
is a class, otherwise the data is unlabelled (``label`` −1, ``num_classes`` None).
``PathListDataset(list_file)`` reads a ``.csv`` (header with ``path`` and optional
``label``) or a ``.txt`` (one path per line).

Items follow the sslkit protocol: ``{"image": (C, H, W) float32 in [0, 1] (or
transform(image)), "label": int, "path": str}``.

Pixel scaling: 8-bit images are divided by 255; 16-bit images (PIL modes ``I;16*``,
and mode ``I`` whose values fit in 16 bits) by 65535; other 32-bit integer images by
2³²−1 after clipping negatives; float images (mode ``F``) are kept when already in
[0, 1] and otherwise min-max scaled per image (a float image has no natural maximum).
Alpha is dropped (``convert("RGB")``), palettes are expanded, and colour images are
reduced to one channel with PIL's ITU-R 601 luma when ``channels=1``. ``.dcm``/``.dicom`` files are
read by :mod:`sslkit.data.dicom` (greyscale, rescale slope/intercept, 16-bit scaled as above).

Truncated files fail to decode because PIL's ``ImageFile.LOAD_TRUNCATED_IMAGES`` is
left at its default (False); if some other code sets it True, truncated files load
with grey padding instead.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from PIL import Image

from sslkit.data.dicom import DICOM_EXTENSIONS, dicom_is_greyscale, is_dicom_name, read_dicom
from sslkit.data.errors import DataError

__all__ = ["ImageFolderDataset", "PathListDataset", "read_bad_files", "load_image", "channels_of"]

DEFAULT_EXTENSIONS = ("png", "jpg", "jpeg", "tif", "tiff", "bmp", "webp") + DICOM_EXTENSIONS
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
GRAY_MEAN = (0.5,)
GRAY_STD = (0.25,)
_GRAY_MODES = ("1", "L", "LA", "La", "I", "F")  # plus every "I;16*" variant
_MAX_LISTED_MISSING = 5
_EIGHT_BIT_MODES = ("1", "L", "P", "RGB", "RGBA", "LA", "CMYK", "YCbCr", "La", "RGBa", "PA")

Transform = Callable[[torch.Tensor], object]


# --------------------------------------------------------------------------- decoding

def _is_gray_mode(mode: str) -> bool:
    return mode in _GRAY_MODES or mode.startswith("I;")


def _scaled_gray(image: Image.Image) -> np.ndarray:
    """A high-bit-depth single-channel image as (H, W) float32 in [0, 1]."""
    array = np.asarray(image)
    if image.mode == "F":
        array = array.astype(np.float32)
        low, high = float(array.min()), float(array.max())
        if low >= 0.0 and high <= 1.0:
            return array
        return (array - low) / (high - low) if high > low else np.zeros_like(array)
    array = array.astype(np.float64)
    # PIL reads 16-bit PNGs as mode I on some versions: judge 16-bit by the values.
    if image.mode.startswith("I;16") or array.max() <= 65535:
        return (np.clip(array, 0, 65535) / 65535.0).astype(np.float32)
    return (np.clip(array, 0, 2**32 - 1) / (2**32 - 1)).astype(np.float32)


def load_image(path: str | os.PathLike, channels: int, data: bytes | None = None,
               dicom_window: tuple[float, float] | None = None, keep_uint8: bool = False,
               reduction: Callable[[int, int], int] | None = None) -> torch.Tensor:
    """Decode one file fully into a (channels, H, W) float32 tensor in [0, 1].

    ``data``, where given, holds the file's bytes (a member of a tar shard) and ``path`` only names it; a
    ``.dcm`` name is read as DICOM (:mod:`sslkit.data.dicom`, scaled by ``dicom_window`` where given), anything
    else by PIL.
    ``keep_uint8``: an 8-bit file (modes 1, L, P, RGB, RGBA, CMYK, ...) is returned as its uint8 pixels
    (0-255, not divided; a channels-last view, which torch resizes fastest) — for a transform that cuts crops
    before converting to float (``MultiCropAugmentation``). Deeper files and DICOM are float32 as always.
    ``reduction(width, height)`` (with ``keep_uint8``): a JPEG is decoded at 1/r of its size (PIL's draft mode:
    the DCT scaled while decoding, r = 2, 4 or 8) when it returns r > 1 — for a transform that says how far
    it can shrink the image without any crop then being enlarged (``MultiCropAugmentation.decode_reduction``).

    Raises DataError naming the path when the file cannot be opened or decoded
    (corrupt, truncated, not an image).
    """
    source = io.BytesIO(data) if data is not None else path
    if is_dicom_name(path):
        gray = read_dicom(source, os.fspath(path), window=dicom_window)
        array = gray if channels == 1 else np.repeat(gray[:, :, None], 3, axis=2)
    else:
        decoded = _decoded_with_pil(source, os.fspath(path), channels, keep_uint8, reduction)
        if isinstance(decoded, torch.Tensor):  # uint8 pixels, already (C, H, W)
            return decoded
        array = decoded
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    return tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.permute(2, 0, 1).contiguous()


def _decoded_with_pil(source, name: str, channels: int, keep_uint8: bool = False,
                      reduction: Callable[[int, int], int] | None = None) -> np.ndarray | torch.Tensor:
    """(H, W) or (H, W, 3) float32 in [0, 1] by the scaling rules of the module docstring; with ``keep_uint8``
    an 8-bit file's (C, H, W) uint8 pixels instead (see :func:`load_image`)."""
    try:
        with Image.open(source) as image:
            factor = reduction(*image.size) if keep_uint8 and reduction is not None else 1
            if factor > 1 and image.format == "JPEG":
                image.draft("L" if channels == 1 else "RGB", (-(-image.size[0] // factor), -(-image.size[1] // factor)))
            image.load()  # decode now: Image.open alone only reads the header
            mode = image.mode
            if mode in _EIGHT_BIT_MODES and keep_uint8:
                pixels = torch.from_numpy(np.array(image.convert("L" if channels == 1 else "RGB"), dtype=np.uint8))
                return pixels.unsqueeze(0) if pixels.ndim == 2 else pixels.permute(2, 0, 1)
            if mode in _EIGHT_BIT_MODES:
                return np.asarray(image.convert("L" if channels == 1 else "RGB"), dtype=np.float32) / 255.0
            if _is_gray_mode(mode):
                gray = _scaled_gray(image)
                return gray if channels == 1 else np.repeat(gray[:, :, None], 3, axis=2)
            return np.asarray(image.convert("L" if channels == 1 else "RGB"), dtype=np.float32) / 255.0
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise DataError(
            f"Cannot decode image {name} ({error}); replace or remove the file "
            "(pretrain can skip unreadable images with data.skip_bad_files=true, Python skip_bad_files=True; "
            "noise and denoise cannot, as their copies pair file for file with the source)."
        ) from error


def channels_of(path: str | os.PathLike, data: bytes | None = None) -> int:
    """1 for a greyscale file (modes 1/L/LA/I/I;16/F, greyscale DICOM), 3 otherwise (``data``: as in load_image)."""
    source = io.BytesIO(data) if data is not None else path
    if is_dicom_name(path):
        return 1 if dicom_is_greyscale(source, os.fspath(path)) else 3
    try:
        with Image.open(source) as image:
            return 1 if _is_gray_mode(image.mode) else 3
    except (OSError, SyntaxError, ValueError) as error:
        raise DataError(
            f"Cannot open image {os.fspath(path)} to decide channels='auto' ({error}); fix the file "
            "or pass channels=1 or channels=3 explicitly."
        ) from error


# --------------------------------------------------------------------------- bad-file log

def append_bad_file(log: str | os.PathLike, path: str, reason: str) -> None:
    # One JSON object per line, written with a single append so DataLoader workers can
    # share the file without interleaving lines.
    line = json.dumps({"path": path, "reason": reason}) + "\n"
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(line)


def first_readable(index: int, n: int, known_bad: set[int], read: Callable[[int], dict],
                   bad_files_log: str | os.PathLike | None) -> dict | None:
    """``read(index)``, or of the next index (wrapping) whose file decodes; None when none does.

    An index that fails is remembered in ``known_bad`` (never decoded twice) and its file, ``DataError.path``,
    appended to ``bad_files_log``. A ``DataError`` without a path (not an unreadable file) propagates.
    """
    for step in range(n):
        current = (index + step) % n
        if current in known_bad:
            continue
        try:
            return read(current)
        except DataError as error:
            if error.path is None:
                raise
            known_bad.add(current)
            if bad_files_log is not None:
                append_bad_file(bad_files_log, error.path, str(error.__cause__ or error))
    return None


def read_bad_files(log: str | os.PathLike) -> list[str]:
    """The distinct paths recorded in a ``bad_files_log``, in first-seen order ([] if no log)."""
    log = Path(log)
    if not log.exists():
        return []
    seen: dict[str, None] = {}
    for line in log.read_text(encoding="utf-8").splitlines():
        if line.strip():
            seen.setdefault(json.loads(line)["path"], None)
    return list(seen)


# --------------------------------------------------------------------------- datasets

class _ImageFilesDataset(torch.utils.data.Dataset):
    """Shared decoding, channel handling and bad-file skipping over a list of paths."""

    def __init__(
        self,
        paths: Sequence[Path],
        labels: Sequence[int],
        class_names: list[str] | None,
        source: str,
        channels: str | int,
        transform: Transform | None,
        skip_bad_files: bool,
        bad_files_log: str | os.PathLike | None,
        mean: Sequence[float] | None,
        std: Sequence[float] | None,
        dicom_window: tuple[float, float] | None = None,
    ):
        self.paths = [str(p) for p in paths]
        self.dicom_window = dicom_window
        self.labels = list(labels)
        self.class_names = class_names
        self.num_classes = len(class_names) if class_names is not None else None
        if channels == "auto":
            channels = self._auto_channels(source, skip_bad_files)
        if channels not in (1, 3):
            raise DataError(f"{source}: channels must be 'auto', 1 or 3, got {channels!r}.")
        self.channels = channels
        self.transform = transform
        self.skip_bad_files = skip_bad_files
        self.bad_files_log = bad_files_log
        self.mean = tuple(mean) if mean is not None else (IMAGENET_MEAN if channels == 3 else GRAY_MEAN)
        self.std = tuple(std) if std is not None else (IMAGENET_STD if channels == 3 else GRAY_STD)
        for name, value in (("mean", self.mean), ("std", self.std)):
            if len(value) != channels:
                raise DataError(
                    f"{source}: {name} has {len(value)} values but the images have {channels} "
                    f"channel(s); pass {channels} value(s)."
                )
        self._known_bad: set[int] = set()  # per process: never decode a known-bad file twice

    def _auto_channels(self, source: str, skip_bad_files: bool) -> int:
        """1 or 3 from the first readable file's mode (only the first file unless skipping bad ones)."""
        for path in self.paths if skip_bad_files else self.paths[:1]:
            try:
                return channels_of(Path(path))
            except DataError:
                if not skip_bad_files:
                    raise
        raise DataError(f"{source}: none of the {len(self.paths)} files opens as an image; check the files.")

    def __len__(self) -> int:
        return len(self.paths)

    def _item(self, index: int, keep_uint8: bool = False, reduction: Callable[[int, int], int] | None = None) -> dict:
        try:
            image = load_image(self.paths[index], self.channels, dicom_window=self.dicom_window,
                               keep_uint8=keep_uint8, reduction=reduction)
        except DataError as error:
            raise DataError(f"Item {index}: {error}", path=self.paths[index]) from error.__cause__
        if self.transform is not None:
            image = self.transform(image)
        return {"image": image, "label": self.labels[index], "path": self.paths[index]}

    def __getitem__(self, index: int) -> dict:
        return self.item(index)

    def item(self, index: int, keep_uint8: bool = False, reduction: Callable[[int, int], int] | None = None) -> dict:
        """``self[index]``; with ``keep_uint8`` an 8-bit file's image is its uint8 pixels, a JPEG possibly
        decoded at reduced size (``reduction``, see :func:`load_image`), unless the dataset has its own
        ``transform``, which gets full-size floats as always."""
        keep_uint8 = keep_uint8 and self.transform is None
        if not self.skip_bad_files:
            return self._item(index, keep_uint8, reduction)
        read = lambda i: self._item(i, keep_uint8, reduction)  # noqa: E731
        item = first_readable(index, len(self.paths), self._known_bad, read, self.bad_files_log)
        if item is not None:
            return item
        n = len(self.paths)
        raise DataError(
            f"Every one of the {n} images (e.g. {self.paths[0]}) failed to decode; check the files "
            "or the path list."
        )

    def verify(self, progress: bool = True) -> list[str]:
        """Decode every file once and return the paths that fail (also appended to ``bad_files_log``)."""
        indices: Iterable[int] = range(len(self.paths))
        if progress:
            from tqdm.auto import tqdm

            indices = tqdm(indices, desc="verifying images", unit="img")
        bad = []
        for index in indices:
            try:
                load_image(self.paths[index], self.channels, dicom_window=self.dicom_window)
            except DataError as error:
                bad.append(self.paths[index])
                self._known_bad.add(index)
                if self.bad_files_log is not None:
                    append_bad_file(self.bad_files_log, self.paths[index], str(error.__cause__ or error))
        return bad


def _normalise_extensions(extensions: Iterable[str]) -> tuple[str, ...]:
    return tuple(e.lower().lstrip(".") for e in extensions)


def _is_image(path: Path, extensions: tuple[str, ...]) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower().lstrip(".") in extensions


def _list_images(folder: Path, extensions: tuple[str, ...]) -> list[Path]:
    """Every image under ``folder`` (recursive, hidden entries skipped), sorted by relative path."""
    found = []
    for directory, subdirs, files in os.walk(folder, followlinks=True):
        subdirs[:] = [d for d in subdirs if not d.startswith(".")]
        found.extend(p for p in (Path(directory) / f for f in files) if _is_image(p, extensions))
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


class ImageFolderDataset(_ImageFilesDataset):
    """Every image under ``root`` (recursive, sorted), labelled by class sub-folder when there are any.

    Labels come from sub-folder names (sorted) when ``root`` contains at least two
    sub-folders with images and no loose images; otherwise every label is −1 and
    ``num_classes``/``class_names`` are None. ``channels="auto"`` takes 1 or 3 from the
    first file's mode; every image is converted to that count.
    ``mean``/``std`` default to ImageNet (3 channels) or (0.5,)/(0.25,) (1 channel).
    With ``skip_bad_files`` an unreadable image is replaced by the next readable one
    (wrapping) and logged to ``bad_files_log`` (JSON lines, append mode). ``dicom_window``:
    ``[low, high]`` in modality units for ``.dcm`` files (:func:`sslkit.data.dicom.read_dicom`).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        channels: str | int = "auto",
        transform: Transform | None = None,
        skip_bad_files: bool = False,
        bad_files_log: str | os.PathLike | None = None,
        extensions: Sequence[str] = DEFAULT_EXTENSIONS,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        dicom_window: tuple[float, float] | None = None,
    ):
        root = Path(root)
        self.root = root
        if not root.is_dir():
            raise DataError(f"Image folder {root} does not exist or is not a directory; check the path.")
        extensions = _normalise_extensions(extensions)
        paths = _list_images(root, extensions)
        if not paths:
            raise DataError(
                f"Image folder {root} contains no images with extensions {list(extensions)}; "
                "add images or pass other extensions."
            )
        loose = [p for p in paths if p.parent == root]
        classes = sorted({p.relative_to(root).parts[0] for p in paths if p.parent != root})
        if not loose and len(classes) >= 2:
            class_names: list[str] | None = classes
            index_of = {name: i for i, name in enumerate(classes)}
            labels = [index_of[p.relative_to(root).parts[0]] for p in paths]
        else:
            class_names, labels = None, [-1] * len(paths)
        super().__init__(paths, labels, class_names, f"Image folder {root}", channels, transform,
                         skip_bad_files, bad_files_log, mean, std, dicom_window)


def _read_list_file(list_file: Path) -> tuple[list[str], list[str] | None]:
    """(paths as written, raw label strings or None) from a .csv or .txt list."""
    suffix = list_file.suffix.lower()
    if suffix == ".csv":
        with open(list_file, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [h.strip() for h in (reader.fieldnames or [])]
            if "path" not in header:
                raise DataError(
                    f"List file {list_file} has no 'path' column (header: {header}); "
                    "add a header line with a 'path' column (and optionally 'label')."
                )
            rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
        rows = [r for r in rows if r.get("path")]
        labels = [r.get("label", "") for r in rows] if "label" in header else None
        return [r["path"] for r in rows], labels
    if suffix == ".txt":
        lines = list_file.read_text(encoding="utf-8").splitlines()
        return [s.strip() for s in lines if s.strip() and not s.strip().startswith("#")], None
    raise DataError(f"List file {list_file} must end in .csv or .txt; rename it or convert it.")


def _label_indices(raw: list[str]) -> tuple[list[int], list[str] | None]:
    """Map label strings to sorted class indices (numeric sort when all are integers); '' → −1."""
    names = {r for r in raw if r != ""}
    if not names:
        return [-1] * len(raw), None
    try:
        ordered = sorted(names, key=int)
    except ValueError:
        ordered = sorted(names)
    index_of = {name: i for i, name in enumerate(ordered)}
    return [index_of[r] if r != "" else -1 for r in raw], ordered


class PathListDataset(_ImageFilesDataset):
    """Images named in a list file: a ``.csv`` with ``path`` (and optional ``label``) columns, or a ``.txt``.

    Relative paths are resolved against ``root`` (default: the list file's folder).
    CSV labels may be any strings: they map to indices in sorted order (numeric order
    when all are integers), ``class_names`` holds the sorted strings, and an empty
    label cell means unlabelled (−1). Every listed file must exist at construction.
    Other options as in ``ImageFolderDataset``.
    """

    def __init__(
        self,
        list_file: str | os.PathLike,
        root: str | os.PathLike | None = None,
        channels: str | int = "auto",
        transform: Transform | None = None,
        skip_bad_files: bool = False,
        bad_files_log: str | os.PathLike | None = None,
        extensions: Sequence[str] = DEFAULT_EXTENSIONS,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        dicom_window: tuple[float, float] | None = None,
    ):
        list_file = Path(list_file)
        self.list_file = list_file
        if not list_file.is_file():
            raise DataError(f"List file {list_file} does not exist; check the path.")
        base = Path(root) if root is not None else list_file.parent
        if not base.is_dir():
            raise DataError(f"Root folder {base} for list file {list_file} does not exist; check the path.")
        self.root = base
        written, raw_labels = _read_list_file(list_file)
        if not written:
            raise DataError(f"List file {list_file} lists no images; add one path per line.")
        paths = [Path(p) if Path(p).is_absolute() else base / p for p in written]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            shown = ", ".join(missing[:_MAX_LISTED_MISSING])
            more = f" and {len(missing) - _MAX_LISTED_MISSING} more" if len(missing) > _MAX_LISTED_MISSING else ""
            raise DataError(
                f"{len(missing)} file(s) listed in {list_file} do not exist: {shown}{more}; "
                f"fix the list or the root folder ({base})."
            )
        extensions = _normalise_extensions(extensions)
        wrong = [str(p) for p in paths if p.suffix.lower().lstrip(".") not in extensions]
        if wrong:
            raise DataError(
                f"{len(wrong)} file(s) listed in {list_file} are not images with extensions "
                f"{list(extensions)}, e.g. {wrong[0]}; remove them or pass extensions=."
            )
        labels, class_names = _label_indices(raw_labels) if raw_labels is not None else ([-1] * len(paths), None)
        super().__init__(paths, labels, class_names, f"List file {list_file}", channels, transform,
                         skip_bad_files, bad_files_log, mean, std, dicom_window)
