"""Write a dataset as WebDataset-style tar shards plus ``shards.json``, the index that
:class:`sslkit.data.shards.ShardDataset` reads them by (``sslkit data pack``).

Shard ``k`` is ``shard-{k:06d}.tar`` with ``shard_size`` samples; sample ``i`` is the members ``{i:012d}.EXT``
(the image) and ``{i:012d}.cls`` (its label, where the source has labels), in the WebDataset layout, so
other WebDataset tools read the shards too. Files of a folder or a path list are stored byte for byte (a
16-bit PNG stays 16-bit, a DICOM stays DICOM, a JPEG is not re-encoded); a built-in dataset's images are
stored as 8-bit PNG. Tar headers carry mtime 0 and no owner, so packing the same source twice gives
identical shards.

The whole output is built in a temporary sibling folder and renamed onto ``out`` at the end
(:func:`sslkit.atomic_files.write_folder_atomic`): a crash leaves no half-written shard or index.
"""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from sslkit.atomic_files import write_file_atomic, write_folder_atomic, write_json_atomic
from sslkit.data.errors import DataError
from sslkit.data.shards import INDEX_FORMAT, INDEX_NAME, index_tar

SHARD_NAME = "shard-{:06d}.tar"
KEY_DIGITS = 12


@dataclass
class PackResult:
    out: Path
    shards: list[Path]
    count: int
    labelled: bool

    @property
    def pattern(self) -> str:
        """The ``--data`` pattern naming every shard written."""
        return str(self.out / f"shard-{{{0:06d}..{len(self.shards) - 1:06d}}}.tar")


def pack_shards(dataset, out: Path, shard_size: int, *, source: str, overwrite: bool = False,
                progress: bool = True) -> PackResult:
    """Write every sample of ``dataset`` (an sslkit dataset: a folder, a path list or a built-in set) to ``out``."""
    if shard_size < 1:
        raise DataError(f"--shard-size must be at least 1, got {shard_size}.")
    n = len(dataset)
    class_names = getattr(dataset, "class_names", None)
    written: list[str] = []

    def fill(folder: Path) -> None:
        entries = []
        for first in range(0, n, shard_size):
            name = SHARD_NAME.format(first // shard_size)
            members = list(range(first, min(first + shard_size, n)))
            write_file_atomic(folder / name, lambda tmp: _write_tar(tmp, members, dataset, class_names is not None))
            entries.append(index_tar(folder / name).as_json())
            written.append(name)
            bar.update(len(members))
        write_json_atomic(folder / INDEX_NAME, {"format": INDEX_FORMAT, "source": source, "count": n,
                                               "shard_size": shard_size, "class_names": class_names,
                                               "shards": entries}, indent=None)

    from tqdm.auto import tqdm

    with tqdm(total=n, desc="packing shards", unit="img", disable=not progress) as bar:
        write_folder_atomic(out, fill, overwrite=overwrite)
    return PackResult(out=out, shards=[out / name for name in written], count=n, labelled=class_names is not None)


def _write_tar(path: Path, indices: list[int], dataset, labelled: bool) -> None:
    with tarfile.open(path, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for index in indices:
            data, extension, label = sample_bytes(dataset, index)
            key = f"{index:0{KEY_DIGITS}d}"
            _add(tar, f"{key}.{extension}", data)
            if labelled and label >= 0:
                _add(tar, f"{key}.cls", str(label).encode())


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))


def sample_bytes(dataset, index: int) -> tuple[bytes, str, int]:
    """(file bytes, extension, label) of one sample: the file itself for file datasets, else a PNG."""
    paths: Optional[list] = getattr(dataset, "paths", None)
    if paths is not None:
        path = Path(paths[index])
        try:
            data = path.read_bytes()
        except OSError as error:
            raise DataError(f"Cannot read {path} to pack it ({error}); check the file.") from error
        return data, path.suffix.lower().lstrip(".") or "bin", int(dataset.labels[index])
    item = dataset[index]
    return png_bytes(item["image"].numpy()), "png", int(item.get("label", -1))


def png_bytes(image: np.ndarray) -> bytes:
    """A (C, H, W) float image in [0, 1] as 8-bit PNG bytes (1 channel: L, 3 channels: RGB)."""
    pixels = np.clip(np.rint(np.asarray(image, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)
    pil = Image.fromarray(pixels[0]) if pixels.shape[0] == 1 else Image.fromarray(pixels.transpose(1, 2, 0))
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG")
    return buffer.getvalue()


def describe(result: PackResult) -> str:
    """The line ``sslkit data pack`` ends with: what was written and the ``--data`` to use."""
    kind = "labelled" if result.labelled else "unlabelled"
    return (f"wrote {result.count} {kind} images in {len(result.shards)} shard(s) and {INDEX_NAME} to {result.out}; "
            f"train on them with --data '{result.pattern}'")


__all__ = ["pack_shards", "PackResult", "describe", "png_bytes", "sample_bytes", "SHARD_NAME"]
