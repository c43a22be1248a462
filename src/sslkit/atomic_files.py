"""Writing files so that a crash never leaves half of one: write to a temporary name in the same
directory, then ``os.replace`` (atomic on POSIX). Every layer that writes results uses these."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Mapping, Optional

__all__ = ["write_bytes_atomic", "write_text_atomic", "save_safetensors_with_json"]


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
        tmp_json.write_text(json_text, encoding="utf-8")
        os.replace(tmp_weights, directory / weights_name)
        os.replace(tmp_json, directory / json_name)
    finally:
        for tmp in (tmp_weights, tmp_json):
            if tmp.exists():
                tmp.unlink()
