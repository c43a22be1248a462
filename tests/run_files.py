"""Checks on the files a command left behind, shared by the reliability tests (bad inputs, write failures, chaos)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` with its content hash: equal snapshots mean nothing was changed or created."""
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir")
            for p in sorted(root.rglob("*"))}


def assert_whole(run: Path) -> None:
    """Every file of a run directory parses as what it is (temporary ``*.tmp`` files and tensorboard aside)."""
    import torch
    import yaml
    from safetensors.torch import load_file

    for path in run.rglob("*"):
        if not path.is_file() or path.name.endswith(".tmp") or "tensorboard" in path.parts:
            continue
        if path.suffix == ".ckpt":
            torch.load(path, map_location="cpu", weights_only=True)
        elif path.suffix == ".json" or path.name == ".lock":
            json.loads(path.read_text())
        elif path.suffix == ".yaml":
            yaml.safe_load(path.read_text())
        elif path.suffix == ".jsonl":
            data = path.read_bytes()
            assert not data or data.endswith(b"\n"), f"{path} ends mid-line"
            [json.loads(line) for line in path.read_text().splitlines()]
        elif path.suffix == ".safetensors":
            load_file(str(path))
        elif path.suffix == ".csv":
            assert path.read_text().endswith("\n"), f"{path} is cut"
        elif path.suffix == ".png":
            assert path.read_bytes()[-8:] == b"IEND\xaeB`\x82", f"{path} is cut"
