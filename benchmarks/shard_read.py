"""Tar shards against an image folder: read speed on the same images, and what the index costs at scale.

Two measurements, one process, ``OMP_NUM_THREADS=1``:

1. **Read speed.** ``--images`` 64×64 RGB PNGs in 10 class folders are packed with ``pack_shards``
   (``--shard-size``); then every item is read once, in the seeded random order a training epoch uses, through
   ``ImageFolderDataset`` and through ``ShardDataset`` (decode included, page cache warm for both), in
   ``--rounds`` interleaved rounds. The figure is images/s per round and the per-round ratio shard/folder.
2. **Index at scale.** A synthetic ``shards.json`` of ``--index-entries`` members (the layout ``sslkit data pack``
   writes, shards of 10 000) is opened by ``ShardDataset`` in a fresh process: the seconds, the growth of its
   peak and resident memory (``/proc/self/status``, Linux), to size the ten-million-image case of
   docs/data-at-scale.md.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/shard_read.py [--images 2000] [--rounds 5] [--index-entries 1000000]
                                                      [--json benchmarks/results/shard_read.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sslkit.atomic_files import write_json_atomic
from sslkit.data.folder import ImageFolderDataset
from sslkit.data.shard_pack import pack_shards
from sslkit.data.shards import INDEX_FORMAT, INDEX_NAME, ShardDataset, shard_files
from sslkit.json_values import json_ready

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--shard-size", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--index-entries", type=int, default=1_000_000)
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "shard_read.json"))
    parser.add_argument("--open-index", help=argparse.SUPPRESS)  # internal: the fresh process of _index_cost
    args = parser.parse_args()
    if args.open_index:
        print(json.dumps(_open_index(Path(args.open_index), args.index_entries)))
        return
    torch.set_num_threads(1)
    load_before = _load_average()
    with tempfile.TemporaryDirectory() as tmp:
        read = _read_speed(Path(tmp), args.images, args.shard_size, args.rounds)
    with tempfile.TemporaryDirectory() as tmp:
        index = _index_cost(Path(tmp), args.index_entries)
    result = {"images": args.images, "image_size": 64, "shard_size": args.shard_size, "rounds": args.rounds,
              "read": read, "index": index, "load_average_before": load_before, "load_average_after": _load_average(),
              "torch_threads": torch.get_num_threads()}
    write_json_atomic(args.json, json_ready(result))
    print(json.dumps(json_ready(result), indent=1))


def _read_speed(root: Path, n: int, shard_size: int, rounds: int) -> dict:
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / "images" / f"class{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        smooth = np.kron(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), np.ones((8, 8, 1), dtype=np.uint8))
        Image.fromarray(smooth).save(folder / f"{i:06d}.png")
    folder = ImageFolderDataset(root / "images")
    start = time.perf_counter()
    packed = pack_shards(folder, root / "shards", shard_size, source="images", progress=False)
    pack_seconds = time.perf_counter() - start
    shards = ShardDataset(shard_files(packed.pattern))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0)).tolist()
    per_round = []
    for _ in range(rounds):
        timings = {}
        for name, dataset in (("folder", folder), ("shards", shards)):
            start = time.perf_counter()
            for index in order:
                dataset[index]
            timings[name] = n / (time.perf_counter() - start)
        per_round.append(timings)
    ratios = [r["shards"] / r["folder"] for r in per_round]
    return {"pack_seconds": pack_seconds, "per_round_images_per_s": per_round,
            "median_images_per_s": {k: statistics.median(r[k] for r in per_round) for k in ("folder", "shards")},
            "ratio_shards_over_folder": {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}}


def _index_cost(root: Path, entries: int) -> dict:
    per_shard = 10_000
    shards = []
    for k in range(0, entries, per_shard):
        count = min(per_shard, entries - k)
        keys = range(k, k + count)
        shards.append({"file": f"shard-{k // per_shard:06d}.tar", "count": count,
                       "names": [f"{i:012d}.jpg" for i in keys], "offsets": [1536 * (i - k) + 512 for i in keys],
                       "sizes": [1000] * count, "labels": [i % 1000 for i in keys]})
    index = {"format": INDEX_FORMAT, "source": "synthetic", "count": entries, "shard_size": per_shard,
             "class_names": [str(c) for c in range(1000)], "shards": shards}
    write_json_atomic(root / INDEX_NAME, index, indent=None)
    del shards, index
    # Opened in a fresh process, so that its peak memory is the index's and not that of writing it.
    opened = json.loads(subprocess.run([sys.executable, __file__, "--open-index", str(root), "--index-entries",
                                        str(entries)], capture_output=True, text=True, check=True).stdout)
    return {"entries": entries, "index_file_mb": (root / INDEX_NAME).stat().st_size / 2**20, **opened}


def _open_index(root: Path, entries: int) -> dict:
    files = [root / f"shard-{k:06d}.tar" for k in range(-(-entries // 10_000))]
    Path("/proc/self/clear_refs").write_text("5")  # Linux: reset the peak (VmHWM) to the current RSS
    before = _memory_mb("VmRSS")
    start = time.perf_counter()
    dataset = ShardDataset(files, channels=3)  # channels given: the (absent) tars are never opened
    seconds = time.perf_counter() - start
    arrays_mb = sum(a.nbytes for a in (dataset.offsets, dataset.sizes, dataset.labels, dataset._names)) / 2**20
    return {"open_seconds": seconds, "peak_memory_growth_mb": _memory_mb("VmHWM") - before,
            "resident_growth_mb": _memory_mb("VmRSS") - before, "arrays_mb": arrays_mb, "length": len(dataset)}


def _memory_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def _load_average() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip() if os.name == "posix" else ""


if __name__ == "__main__":
    main()
