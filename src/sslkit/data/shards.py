"""Images in WebDataset-style tar shards, read by random access: one map-style dataset over every member.

A shard is an uncompressed tar whose members follow the WebDataset convention: ``KEY.EXT`` holds one
sample's image (``png``, ``jpg``, ``tif``, ``dcm``, ...) and an optional ``KEY.cls`` its integer label
(https://github.com/webdataset/webdataset, "WebDataset format"). ``sslkit data pack`` writes such shards and,
beside them, ``shards.json``: for every shard its member names, the byte offset and size of each image's
data inside the tar, the labels, and the class names (:mod:`sslkit.data.shard_pack`).

Why random access rather than WebDataset's sequential streaming: a streamed tar is an iterable whose order
depends on the number of DataLoader workers, ranks and shuffle buffers, so a batch would not be a pure
function of (seed, step) and ``--resume`` could not land on the exact batches of an uninterrupted run. Here
the shards become one indexable dataset (``os.pread`` of the bytes at the indexed offset, decoded as an
image file would be), so :class:`sslkit.data.stream.AugmentedStream` and ``StreamSampler`` serve them as
they serve a folder: every batch a function of (seed, step), every sample once per epoch across ranks and
workers. Shards without ``shards.json`` (written by other tools) are indexed by reading their tar headers
once when opened.
"""

from __future__ import annotations

import json
import os
import tarfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from sslkit.data.brace_pattern import expand_braces, has_braces
from sslkit.data.errors import DataError
from sslkit.data.folder import (DEFAULT_EXTENSIONS, GRAY_MEAN, GRAY_STD, IMAGENET_MEAN, IMAGENET_STD,
                                channels_of, first_readable, load_image)

INDEX_NAME = "shards.json"
INDEX_FORMAT = "sslkit-shards-1"
# Open shard files per process: random access over thousands of shards must stay under the usual limit of
# 1024 descriptors (ulimit -n), with DataLoader workers and the rest of the process counted.
MAX_OPEN_SHARDS = 64
_MAX_LISTED_MISSING = 3

__all__ = ["ShardDataset", "shard_files", "index_tar", "INDEX_NAME", "INDEX_FORMAT"]


@dataclass
class ShardEntry:
    """One shard's part of the index: its image members in tar order."""

    file: str  # the tar's file name (no folder)
    names: list[str]
    offsets: list[int]  # byte offset of each member's data in the tar
    sizes: list[int]
    labels: list[int]  # −1: unlabelled

    def as_json(self) -> dict:
        return {"file": self.file, "count": len(self.names), "names": self.names, "offsets": self.offsets,
                "sizes": self.sizes, "labels": self.labels}


def shard_files(source: str) -> Optional[list[Path]]:
    """The tar shards ``source`` names, or None when it names no shards (a built-in set, a folder, a list).

    Shards are named by a brace pattern of tars (``DIR/shard-{000000..000099}.tar``) or of folders written by
    ``sslkit data pack`` (``DIR/part-{00..09}``: every shard of each), one ``.tar`` file, or one such folder.
    A pattern whose names do not all exist is one DataError naming the missing ones.
    """
    path = Path(source)
    if path.is_dir():
        return _packed_folder(path) if (path / INDEX_NAME).is_file() else None
    if not (has_braces(source) or path.suffix.lower() == ".tar"):
        return None
    names = [Path(name) for name in expand_braces(source)]
    missing = [str(f) for f in names if not (f.is_file() or (f / INDEX_NAME).is_file())]
    if len(missing) == len(names):
        raise DataError(f"Data pattern '{source}' matches no file (e.g. {missing[0]} does not exist); check the "
                        "folder and the shard numbers (sslkit data pack prints the pattern of what it wrote).")
    if missing:
        shown = ", ".join(missing[:_MAX_LISTED_MISSING])
        raise DataError(f"{len(missing)} of the {len(names)} shards of '{source}' do not exist ({shown}); "
                        "fix the range or restore the files.")
    return [shard for name in names for shard in (_packed_folder(name) if name.is_dir() else [name])]


def _packed_folder(folder: Path) -> list[Path]:
    """Every shard a ``sslkit data pack`` folder's index lists, in its order."""
    return [folder / shard["file"] for shard in _read_index_file(folder / INDEX_NAME)["shards"]]


class ShardDataset(torch.utils.data.Dataset):
    """Every image member of ``files`` (tar shards), in shard order; items follow the sslkit protocol.

    ``{"image": (C, H, W) float32 in [0, 1], "label": int, "path": "SHARD.tar/MEMBER"}``; decoding, channels,
    ``mean``/``std`` defaults and ``skip_bad_files`` (an undecodable member is replaced by the next readable one
    and listed in ``bad_files_log`` as ``SHARD.tar/MEMBER``) behave as in
    :class:`sslkit.data.folder.ImageFolderDataset`.
    """

    def __init__(self, files: Sequence[str | os.PathLike], channels: str | int = "auto",
                 skip_bad_files: bool = False, bad_files_log: str | os.PathLike | None = None,
                 dicom_window: tuple[float, float] | None = None):
        self.files = [Path(f) for f in files]
        self.dicom_window = dicom_window
        entries, class_names = _load_entries(self.files)
        counts = np.array([len(e.names) for e in entries], dtype=np.int64)
        if counts.sum() == 0:
            raise DataError(f"The shards {self.files[0]} ... hold no image members; pack images with sslkit data pack.")
        # Flat arrays (not per-item Python objects): ten million items stay a few hundred MB, shared by
        # forked DataLoader workers without copy-on-write of reference counts.
        self.starts = np.concatenate([[0], np.cumsum(counts)])
        self.offsets = np.concatenate([np.asarray(e.offsets, dtype=np.int64) for e in entries])
        self.sizes = np.concatenate([np.asarray(e.sizes, dtype=np.int64) for e in entries])
        self.labels = np.concatenate([np.asarray(e.labels, dtype=np.int64) for e in entries])
        # Names as UTF-8 bytes (1 byte a character, where numpy's str_ takes 4): decoded when one is needed.
        self._names = np.concatenate([np.array([n.encode("utf-8") for n in e.names], dtype=np.bytes_)
                                      for e in entries])
        if class_names is None and (self.labels >= 0).any():
            class_names = [str(c) for c in range(int(self.labels.max()) + 1)]
        self.class_names = class_names if (self.labels >= 0).any() else None
        self.num_classes = len(self.class_names) if self.class_names is not None else None
        self.skip_bad_files, self.bad_files_log = skip_bad_files, bad_files_log
        self._handles: OrderedDict[int, int] = OrderedDict()  # shard -> descriptor, this process, least recent first
        self._pid = os.getpid()
        self._known_bad: set[int] = set()
        self.channels = self._auto_channels() if channels == "auto" else channels
        if self.channels not in (1, 3):
            raise DataError(f"Shards {self.files[0]} ...: channels must be 'auto', 1 or 3, got {channels!r}.")
        self.mean, self.std = (GRAY_MEAN, GRAY_STD) if self.channels == 1 else (IMAGENET_MEAN, IMAGENET_STD)

    @property
    def fingerprint_files(self) -> list[str]:
        """The files whose sizes and times identify the data (evaluate's feature cache)."""
        return [str(f) for f in self.files]

    def __len__(self) -> int:
        return int(self.starts[-1])

    def name(self, index: int) -> str:
        """The tar member name of item ``index`` (e.g. ``000000000042.png``)."""
        return self._names[index].decode("utf-8")

    def member_path(self, index: int) -> str:
        """``SHARD.tar/MEMBER``: how items, errors and the bad-files log name a member."""
        return f"{self.files[self._shard_of(index)]}/{self.name(index)}"

    def __getitem__(self, index: int) -> dict:
        return self.item(index)

    def item(self, index: int, keep_uint8: bool = False, reduction=None) -> dict:
        """``self[index]``; ``keep_uint8``/``reduction`` as for image folders (:func:`sslkit.data.folder.load_image`):
        the stream asks for an 8-bit member's uint8 pixels when its transform cuts crops before going to float."""
        read = lambda i: self._item(i, keep_uint8, reduction)  # noqa: E731
        if not self.skip_bad_files:
            return read(index)
        item = first_readable(index, len(self), self._known_bad, read, self.bad_files_log)
        if item is None:
            raise DataError(f"Every one of the {len(self)} images in the shards (e.g. {self.member_path(0)}) failed "
                            "to decode; check the shards.")
        return item

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_handles"] = OrderedDict()  # descriptors stay with the process that opened them
        return state

    def _item(self, index: int, keep_uint8: bool = False, reduction=None) -> dict:
        name = self.member_path(index)
        try:
            image = load_image(name, self.channels, data=self._bytes(index), dicom_window=self.dicom_window,
                               keep_uint8=keep_uint8, reduction=reduction)
        except DataError as error:
            shard = self.files[self._shard_of(index)]
            raise DataError(f"Shard {shard}, member {self.name(index)}: {error}", path=name) from error.__cause__
        return {"image": image, "label": int(self.labels[index]), "path": name}

    def _shard_of(self, index: int) -> int:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} shard members")
        return int(np.searchsorted(self.starts, index, side="right")) - 1

    def _bytes(self, index: int) -> bytes:
        shard = self._shard_of(index)
        size = int(self.sizes[index])
        data = os.pread(self._descriptor(shard), size, int(self.offsets[index]))
        if len(data) != size:
            raise DataError(f"Shard {self.files[shard]} ends inside member {self.name(index)} ({len(data)} of "
                            f"{size} bytes); the shard was truncated: pack it again.", path=self.member_path(index))
        return data

    def _descriptor(self, shard: int) -> int:
        """This process's descriptor of ``shard``, opened on first use; the least recently used one is closed
        beyond ``MAX_OPEN_SHARDS``."""
        if self._pid != os.getpid():  # a forked worker: the parent's descriptors are not its own to close
            self._handles, self._pid = OrderedDict(), os.getpid()
        if shard in self._handles:
            self._handles.move_to_end(shard)
            return self._handles[shard]
        try:
            descriptor = os.open(self.files[shard], os.O_RDONLY)
        except OSError as error:
            raise DataError(f"Cannot open shard {self.files[shard]} ({error.strerror}); check that it still "
                            "exists and is readable.") from error
        self._handles[shard] = descriptor
        while len(self._handles) > MAX_OPEN_SHARDS:
            os.close(self._handles.popitem(last=False)[1])
        return descriptor

    def _auto_channels(self) -> int:
        """1 or 3 from the first member (the first readable one when skipping bad files)."""
        for index in range(len(self) if self.skip_bad_files else 1):
            try:
                return channels_of(self.name(index), data=self._bytes(index))
            except DataError:
                if not self.skip_bad_files:
                    raise
        raise DataError(f"None of the {len(self)} shard members opens as an image; check the shards.")


# --------------------------------------------------------------------------- the index

def index_tar(path: Path, extensions: Sequence[str] = DEFAULT_EXTENSIONS) -> ShardEntry:
    """Index one tar by reading its headers: each key's image member (offset, size) and its ``.cls`` label."""
    images: dict[str, tuple[str, int, int]] = {}
    labels: dict[str, int] = {}
    try:
        with tarfile.open(path, mode="r:") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                key, _, ext = info.name.partition(".")
                ext = ext.lower()
                if ext == "cls":
                    labels[key] = _label_text(tar.extractfile(info).read(), path, info.name)
                elif ext.rsplit(".", 1)[-1] in extensions and key not in images:
                    images[key] = (info.name, info.offset_data, info.size)
    except (tarfile.TarError, OSError) as error:
        raise DataError(f"Cannot read shard {path} as an uncompressed tar ({error}); pack it again "
                        "(sslkit data pack) or check the file.") from error
    keys = list(images)
    return ShardEntry(file=path.name, names=[images[k][0] for k in keys], offsets=[images[k][1] for k in keys],
                      sizes=[images[k][2] for k in keys], labels=[labels.get(k, -1) for k in keys])


def _load_entries(files: list[Path]) -> tuple[list[ShardEntry], Optional[list[str]]]:
    """Each shard's entry from the ``shards.json`` beside it, or from its tar headers where there is none."""
    indexes: dict[Path, Optional[dict]] = {}
    entries, class_names = [], None
    for file in files:
        folder = file.parent
        if folder not in indexes:
            index_file = folder / INDEX_NAME
            indexes[folder] = _read_index_file(index_file) if index_file.is_file() else None
        index = indexes[folder]
        indexed = {s["file"]: s for s in index["shards"]} if index is not None else {}
        if file.name in indexed:
            record = indexed[file.name]
            entries.append(ShardEntry(record["file"], record["names"], record["offsets"], record["sizes"],
                                      record["labels"]))
            class_names = class_names or index.get("class_names")
        else:
            entries.append(index_tar(file))
    return entries, class_names


def _read_index_file(path: Path) -> dict:
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DataError(f"Cannot read the shard index {path} ({error}); pack the shards again or delete the "
                        "index to have the shards indexed from their tar headers.") from error
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT or not isinstance(index.get("shards"), list):
        raise DataError(f"{path} is not an sslkit shard index (format {INDEX_FORMAT}); pack the shards again "
                        "or delete the file.")
    return index


def _label_text(raw: bytes, path: Path, name: str) -> int:
    try:
        return int(raw.decode("utf-8").strip())
    except (UnicodeDecodeError, ValueError) as error:
        raise DataError(f"Shard {path}, member {name}: a .cls label must be an integer, got {raw[:20]!r}.") from error
