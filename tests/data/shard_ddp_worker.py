"""One gloo rank of tests/data/test_shards_ddp.py: stream tar shards through the training DataLoader.

Run as ``python shard_ddp_worker.py PATTERN STEPS OUT.json`` with RANK, WORLD_SIZE, MASTER_ADDR and
MASTER_PORT set. The loader is built as ``engine/data_module.py`` builds pretraining's (StreamSampler for this
rank, batch size 3, 2 workers), without importing Lightning, whose import alone would cost seconds per rank;
rank 0 writes every rank's (position, label, worker) triples.
"""

import json
import sys

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, default_collate, get_worker_info

from sslkit.data.shards import ShardDataset, shard_files
from sslkit.data.stream import AugmentedStream, StreamSampler


def collate_with_worker(items):
    batch = default_collate(items)
    batch["worker"] = get_worker_info().id
    return batch


def main(pattern: str, steps: int, out: str) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    stream = AugmentedStream(ShardDataset(shard_files(pattern)), lambda image: image, seed=11)
    sampler = StreamSampler(3, steps, start_step=0, rank=rank, world_size=world)
    loader = DataLoader(stream, batch_size=3, sampler=sampler, collate_fn=collate_with_worker, num_workers=2,
                        generator=torch.Generator().manual_seed(11))
    seen = [(int(p), int(label), batch["worker"])
            for batch in loader for p, label in zip(batch["position"], batch["label"])]
    gathered = [None] * world
    dist.all_gather_object(gathered, seen)
    if rank == 0:
        with open(out, "w", encoding="utf-8") as handle:
            json.dump(gathered, handle)
    dist.destroy_process_group()


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
