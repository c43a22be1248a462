"""Writing files so that a crash never leaves half of one: write to a temporary name in the same
directory, then ``os.replace`` (atomic on POSIX). Every layer that writes results uses these.

:func:`write_file_atomic` is the one place that does it; the others say what is written (bytes, text, JSON,
a ``torch.save`` pickle, safetensors). ``fsync=True`` also flushes the file to the disk before the rename and
the directory entry after it, so that a power cut, not only a crash of the process, leaves the old file or
the new one (for checkpoints and exported weights). A failed write raises ``OSError`` naming the file that
was to be written, never its temporary name, and leaves no temporary file behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

__all__ = ["fsync_directory", "fsync_file", "save_safetensors_atomic", "save_safetensors_with_json", "torch_save_atomic",
           "write_bytes_atomic", "write_file_atomic", "write_folder_atomic", "write_json_atomic", "write_text_atomic"]


def _temporary_name(path: Path) -> Path:
    """A hidden, unique sibling of ``path`` (``.NAME.<hex>.tmp``): on the same file system, so the rename is atomic."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")


def fsync_file(path: Path) -> None:
    """Flush a written file's data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_directory(directory: Path) -> None:
    """Flush a directory entry (makes a rename durable). Best effort: not every platform has directory fds."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _naming(err: OSError, path: Path, temporaries: tuple[Path, ...]) -> OSError:
    """``err`` about ``path``: an error raised on a temporary file (or on none) names the file the user asked for."""
    if err.filename is not None and str(err.filename) not in {str(t) for t in temporaries}:
        return err
    return OSError(err.errno, err.strerror or str(err), str(path))


def _default_file_mode() -> int:
    """0666 minus the process umask: the mode ``open()`` gives a new file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_file_atomic(path: str | os.PathLike, fill: Callable[[Path], None], *, fsync: bool = False) -> Path:
    """Write ``path`` whole or not at all: ``fill(tmp)`` writes the complete file at a temporary name, which
    is then renamed onto ``path``. The parent directory is created if missing. Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_name(path)
    try:
        fill(tmp)
        if fsync:
            fsync_file(tmp)
        os.replace(tmp, path)
    except OSError as err:
        named = _naming(err, path, (tmp,))
        if named is err:
            raise
        raise named from err
    finally:
        if tmp.exists():
            tmp.unlink()
    if fsync:
        fsync_directory(path.parent)
    return path


def write_bytes_atomic(path: str | os.PathLike, payload: bytes, *, fsync: bool = False) -> Path:
    return write_file_atomic(path, lambda tmp: tmp.write_bytes(payload), fsync=fsync)


def write_text_atomic(path: str | os.PathLike, text: str, *, fsync: bool = False) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"), fsync=fsync)


def write_json_atomic(path: str | os.PathLike, value: Any, *, indent: Optional[int] = 2, fsync: bool = False) -> Path:
    """``value`` as strict JSON (NaN and infinities refused: pass ``sslkit.json_values.json_ready(value)`` to
    write them as null), one trailing newline. Serialised before the disk is touched."""
    text = json.dumps(value, indent=indent, allow_nan=False) + "\n"
    return write_text_atomic(path, text, fsync=fsync)


def torch_save_atomic(path: str | os.PathLike, obj: Any, *, fsync: bool = False) -> Path:
    """``torch.save(obj)`` to ``path`` through a temporary file and a rename."""
    import torch

    def fill(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            torch.save(obj, f)

    return write_file_atomic(path, fill, fsync=fsync)


def save_safetensors_atomic(path: str | os.PathLike, tensors: Mapping, metadata: Optional[dict] = None, *,
                            fsync: bool = False) -> Path:
    """One safetensors file, written to a temporary name and renamed (readable like any other file)."""
    from safetensors.torch import save_file

    def fill(tmp: Path) -> None:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
        os.chmod(tmp, _default_file_mode())  # safetensors writes 0600; weights are as readable as any file

    return write_file_atomic(path, fill, fsync=fsync)


def save_safetensors_with_json(directory: Path, tensors: Mapping, weights_name: str, json_name: str, json_text: str,
                               metadata: Optional[dict] = None, *, fsync: bool = False) -> None:
    """Weights + their JSON description, both written to temporary names first and renamed only once
    both are complete (a crash leaves the previous pair, never a new weights file with old JSON)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tmp_weights = _temporary_name(directory / weights_name)
    tmp_json = _temporary_name(directory / json_name)
    target = directory / weights_name
    try:
        save_file(dict(tensors), str(tmp_weights), metadata=metadata)
        os.chmod(tmp_weights, _default_file_mode())  # safetensors writes 0600; weights are as readable as the JSON
        tmp_json.write_text(json_text, encoding="utf-8")
        if fsync:
            fsync_file(tmp_weights)
            fsync_file(tmp_json)
        # Both temporaries are complete before either rename, so a failure up to here leaves the previous pair.
        os.replace(tmp_weights, target)
        target = directory / json_name
        os.replace(tmp_json, target)
    except OSError as err:
        named = _naming(err, target, (tmp_weights, tmp_json))
        if named is err:
            raise
        raise named from err
    finally:
        for tmp in (tmp_weights, tmp_json):
            if tmp.exists():
                tmp.unlink()
    if fsync:
        fsync_directory(directory)


def write_folder_atomic(out: str | os.PathLike, fill: Callable[[Path], None], overwrite: bool = False) -> None:
    """Build a folder in a temporary sibling with ``fill(tmp)`` and rename it onto ``out``.

    ``out`` is never half-written, and a failure in ``fill`` leaves an existing ``out`` as it was. An
    existing ``out`` is refused unless ``overwrite``; then it is replaced as a whole, so no stale file
    of an earlier result (a figure of a model no longer evaluated) survives next to the new ones.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"Output folder '{out}' already exists; choose another --out or pass --overwrite "
                              "to replace it.")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        fill(tmp)
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; a results folder is as readable as any other
        if out.exists():
            trash = out.parent / f".{out.name}.{uuid.uuid4().hex}.old"
            os.replace(out, trash)
            os.replace(tmp, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
