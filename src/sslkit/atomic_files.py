"""Writing files so that a crash never leaves half of one: write to a temporary name in the same
directory, then ``os.replace`` (atomic on POSIX). Every layer that writes results uses these."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Callable, Mapping, Optional

__all__ = ["write_bytes_atomic", "write_folder_atomic", "write_text_atomic", "save_safetensors_atomic",
           "save_safetensors_with_json"]


def write_bytes_atomic(path: str | os.PathLike, payload: bytes) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_bytes(payload)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def _default_file_mode() -> int:
    """0666 minus the process umask: the mode ``open()`` gives a new file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def save_safetensors_atomic(path: str | os.PathLike, tensors: Mapping, metadata: Optional[dict] = None) -> None:
    """One safetensors file, written to a temporary name and renamed (readable like any other file)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
        os.chmod(tmp, _default_file_mode())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_safetensors_with_json(directory: Path, tensors: Mapping, weights_name: str, json_name: str, json_text: str,
                               metadata: Optional[dict] = None) -> None:
    """Weights + their JSON description, both written to temporary names first and renamed only once
    both are complete (a crash leaves the previous pair, never a new weights file with old JSON)."""
    from safetensors.torch import save_file

    save_id = uuid.uuid4().hex
    tmp_weights = directory / f".{weights_name}.{save_id}.tmp"
    tmp_json = directory / f".{json_name}.{save_id}.tmp"
    try:
        save_file(dict(tensors), str(tmp_weights), metadata=metadata)
        os.chmod(tmp_weights, _default_file_mode())  # safetensors writes 0600; weights are as readable as the JSON
        tmp_json.write_text(json_text, encoding="utf-8")
        os.replace(tmp_weights, directory / weights_name)
        os.replace(tmp_json, directory / json_name)
    finally:
        for tmp in (tmp_weights, tmp_json):
            if tmp.exists():
                tmp.unlink()


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
