"""Greyscale DICOM images as float arrays in [0, 1], read with pydicom (the optional ``dicom`` extra).

The stored pixel values go through the Modality LUT's linear form, ``value = RescaleSlope · stored +
RescaleIntercept`` (DICOM PS3.3 C.11.1.1.2; 1 and 0 when the file has no such attributes), and are then
scaled to [0, 1] by a fixed window:

- by default the range the file's stored bits can hold (``BitsStored``, signed when ``PixelRepresentation``
  is 1) taken through the same rescale, so an unsigned 16-bit file without rescale reads as ``stored /
  65535``, exactly as :mod:`sslkit.data.folder` reads a 16-bit PNG or TIFF (no per-image min-max);
- or ``window=(low, high)`` in modality units (Hounsfield units for CT), the same for every file, so one
  physical value reads as one number across files whose slope or intercept differ.

``MONOCHROME1`` (minimum value shown white) is inverted so that bright means high signal as in
``MONOCHROME2``. Colour and multi-frame files are refused with a sentence saying so. Compressed transfer
syntaxes decode only where pydicom has a handler for them (Pillow covers JPEG baseline and JPEG 2000 here;
JPEG-LS needs ``pylibjpeg`` plugins); otherwise the error names the file, the syntax and what to install or
how to convert the file.
"""

from __future__ import annotations

import os
from typing import BinaryIO, Optional

import numpy as np

from sslkit.data.errors import DataError

DICOM_EXTENSIONS = ("dcm", "dicom")


def is_dicom_name(name: str) -> bool:
    """Whether a file or shard member name has a DICOM extension."""
    return os.path.splitext(str(name))[1].lower().lstrip(".") in DICOM_EXTENSIONS


def read_dicom(source: str | os.PathLike | BinaryIO, name: str,
               window: Optional[tuple[float, float]] = None) -> np.ndarray:
    """The image of one single-frame greyscale DICOM file as (H, W) float32 in [0, 1].

    ``source`` is a path or an open binary file; ``name`` is what error messages call it.
    """
    dataset = _open(source, name)
    syntax = dataset.file_meta.get("TransferSyntaxUID") if hasattr(dataset, "file_meta") else None
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    if photometric not in ("MONOCHROME1", "MONOCHROME2") or int(dataset.get("SamplesPerPixel", 1)) != 1:
        raise DataError(f"DICOM file {name} is {photometric} with {dataset.get('SamplesPerPixel', 1)} samples per "
                        "pixel; sslkit reads greyscale (MONOCHROME1/2) DICOM only: convert the file to greyscale.")
    if int(dataset.get("NumberOfFrames", 1) or 1) > 1:
        raise DataError(f"DICOM file {name} holds {dataset.NumberOfFrames} frames; sslkit reads single-frame "
                        "images: split the frames into files first.")
    _check_decodable(syntax, name)
    try:
        stored = dataset.pixel_array
    except Exception as error:  # pydicom raises many types for bad pixel data; each means 'cannot decode'
        what = f"{syntax.name} " if syntax is not None and syntax.is_compressed else ""
        reason = " ".join(str(error).split())  # pydicom lists its plugins over several lines: keep one sentence
        raise DataError(f"Cannot decode the {what}pixel data of DICOM file {name} ({reason}); replace the file or "
                        "convert it to uncompressed Explicit VR Little Endian (e.g. dcmdjpeg, gdcmconv --raw).",
                        path=name) from error
    return scaled_modality_values(np.asarray(stored), slope=float(dataset.get("RescaleSlope", 1.0) or 1.0),
                                  intercept=float(dataset.get("RescaleIntercept", 0.0) or 0.0),
                                  bits_stored=int(dataset.get("BitsStored", stored.dtype.itemsize * 8)),
                                  signed=int(dataset.get("PixelRepresentation", 0)) == 1,
                                  inverted=photometric == "MONOCHROME1", window=window)


def dicom_is_greyscale(source: str | os.PathLike | BinaryIO, name: str) -> bool:
    """Whether the file's header says greyscale (what ``channels='auto'`` needs; pixels are not decoded)."""
    dataset = _open(source, name, header_only=True)
    return str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).strip() in ("MONOCHROME1", "MONOCHROME2")


def _open(source, name: str, header_only: bool = False):
    try:
        import pydicom
        from pydicom.errors import InvalidDicomError
    except ImportError as error:
        raise DataError(f"Reading the DICOM file {name} needs pydicom; install it with "
                        "pip install 'sslkit[dicom]' (or pip install pydicom).") from error
    try:
        return pydicom.dcmread(source, stop_before_pixels=header_only)
    except (InvalidDicomError, OSError, ValueError, EOFError, AttributeError, KeyError) as error:
        raise DataError(f"Cannot read DICOM file {name} ({error}); replace or remove the file.", path=name) from error


def _check_decodable(syntax, name: str) -> None:
    """One clear error for a compressed transfer syntax that no installed pydicom handler decodes."""
    if syntax is None or not syntax.is_compressed:
        return
    from pydicom.pixels import get_decoder

    try:
        available = get_decoder(syntax).is_available
    except NotImplementedError:
        available = False
    if not available:
        raise DataError(f"DICOM file {name} is compressed as {syntax.name} ({syntax}), which pydicom cannot decode "
                        "with the packages installed; install a decoder (pip install pylibjpeg pylibjpeg-libjpeg "
                        "pylibjpeg-openjpeg) or convert the file to uncompressed Explicit VR Little Endian "
                        "(e.g. gdcmconv --raw).", path=name)


def scaled_modality_values(stored: np.ndarray, *, slope: float, intercept: float, bits_stored: int, signed: bool,
                           inverted: bool, window: Optional[tuple[float, float]] = None) -> np.ndarray:
    """Stored values → modality values (slope, intercept) → [0, 1] by ``window`` or the stored bits' range."""
    values = stored.astype(np.float64) * slope + intercept
    if window is None:
        low_stored, high_stored = (-(2 ** (bits_stored - 1)), 2 ** (bits_stored - 1) - 1) if signed else (0, 2 ** bits_stored - 1)
        ends = (low_stored * slope + intercept, high_stored * slope + intercept)
        low, high = min(ends), max(ends)
    else:
        low, high = float(window[0]), float(window[1])
    scaled = np.clip((values - low) / (high - low), 0.0, 1.0) if high > low else np.zeros_like(values)
    return (1.0 - scaled if inverted else scaled).astype(np.float32)
