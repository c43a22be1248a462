"""Issue 21 item 4: tar shards split across 2 gloo ranks × 2 DataLoader workers serve every sample exactly
once per epoch (no duplicate, no gap).

Each rank is a process forked from this one (torch is imported already, so a rank starts in milliseconds,
where a fresh interpreter would spend seconds importing torch); it joins a gloo process group, builds its
loader as ``engine/data_module.py`` builds pretraining's (``StreamSampler`` for its rank over an
``AugmentedStream``, 2 workers, which fork in turn) and gathers what it saw to rank 0 with
``all_gather_object``. Lightning is left out: its import alone would cost seconds.
"""

import json
import multiprocessing
import socket

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image
from torch.utils.data import DataLoader, default_collate, get_worker_info

from sslkit.data.folder import ImageFolderDataset
from sslkit.data.shard_pack import pack_shards
from sslkit.data.shards import ShardDataset, shard_files
from sslkit.data.stream import AugmentedStream, StreamSampler

N = 24  # one image per class: the label identifies the sample
WORLD, BATCH = 2, 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _collate_with_worker(items):
    batch = default_collate(items)
    batch["worker"] = get_worker_info().id
    return batch


def _rank(rank: int, pattern: str, steps: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    stream = AugmentedStream(ShardDataset(shard_files(pattern)), lambda image: image, seed=11)
    sampler = StreamSampler(BATCH, steps, start_step=0, rank=rank, world_size=WORLD)
    loader = DataLoader(stream, batch_size=BATCH, sampler=sampler, collate_fn=_collate_with_worker, num_workers=2,
                        generator=torch.Generator().manual_seed(11))
    seen = [(int(p), int(label), batch["worker"])
            for batch in loader for p, label in zip(batch["position"], batch["label"])]
    gathered = [None] * WORLD
    dist.all_gather_object(gathered, seen)
    if rank == 0:
        with open(out, "w", encoding="utf-8") as handle:
            json.dump(gathered, handle)
    dist.destroy_process_group()


def test_two_ranks_two_workers_see_every_sample_once_per_epoch(tmp_path):
    for i in range(N):
        (tmp_path / "src" / f"c{i:02d}").mkdir(parents=True)
        Image.fromarray(np.full((4, 4), 10 * i, dtype=np.uint8)).save(tmp_path / "src" / f"c{i:02d}" / "x.png")
    result = pack_shards(ImageFolderDataset(tmp_path / "src"), tmp_path / "shards", 5, source="src", progress=False)
    assert len(result.shards) == 5  # 5+5+5+5+4: the last shard is short
    steps = 2 * N // (BATCH * WORLD)  # two epochs
    out = tmp_path / "seen.json"
    context = multiprocessing.get_context("fork")
    port = _free_port()
    ranks = [context.Process(target=_rank, args=(r, result.pattern, steps, port, str(out))) for r in range(WORLD)]
    for process in ranks:
        process.start()
    for process in ranks:
        process.join(timeout=60)
    for process in ranks:
        if process.is_alive():  # a hung rank fails the test instead of outliving it
            process.kill()
            process.join()
    assert [process.exitcode for process in ranks] == [0, 0]
    per_rank = json.loads(out.read_text())
    for epoch in range(2):
        labels = [label for seen in per_rank for position, label, _ in seen if position // N == epoch]
        assert sorted(labels) == list(range(N)), (epoch, labels)  # every sample exactly once
    positions = [set(p for p, _, _ in seen) for seen in per_rank]
    assert not positions[0] & positions[1] and len(positions[0]) == len(positions[1]) == N
    assert all({w for _, _, w in seen} == {0, 1} for seen in per_rank)  # both workers of each rank served
