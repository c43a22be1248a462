"""Issue 21 item 4: tar shards split across 2 gloo ranks × 2 DataLoader workers serve every sample exactly
once per epoch (no duplicate, no gap), through the sampler and loader pretraining uses."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sslkit.data.folder import ImageFolderDataset
from sslkit.data.shard_pack import pack_shards

WORKER = Path(__file__).with_name("shard_ddp_worker.py")
N = 24  # one image per class: the label identifies the sample


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # two Python processes with torch: about 7 s on a loaded 2-core machine
def test_two_ranks_two_workers_see_every_sample_once_per_epoch(tmp_path):
    for i in range(N):
        (tmp_path / "src" / f"c{i:02d}").mkdir(parents=True)
        Image.fromarray(np.full((4, 4), 10 * i, dtype=np.uint8)).save(tmp_path / "src" / f"c{i:02d}" / "x.png")
    result = pack_shards(ImageFolderDataset(tmp_path / "src"), tmp_path / "shards", 5, source="src", progress=False)
    assert len(result.shards) == 5  # 5+5+5+5+4: the last shard is short
    steps = 2 * N // (3 * 2)  # two epochs of global batches of 3 per rank × 2 ranks
    out = tmp_path / "seen.json"
    port = _free_port()
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2",
           "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    ranks = [subprocess.Popen([sys.executable, str(WORKER), result.pattern, str(steps), str(out)],
                              env={**env, "RANK": str(r)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for r in range(2)]
    logs = [rank.communicate(timeout=120)[0].decode() for rank in ranks]
    assert all(rank.returncode == 0 for rank in ranks), logs
    per_rank = json.loads(out.read_text())
    for epoch in range(2):
        labels = [label for seen in per_rank for position, label, _ in seen if position // N == epoch]
        assert sorted(labels) == list(range(N)), (epoch, labels)  # every sample exactly once
    positions = [set(p for p, _, _ in seen) for seen in per_rank]
    assert not positions[0] & positions[1] and len(positions[0]) == len(positions[1]) == N
    assert all({w for _, _, w in seen} == {0, 1} for seen in per_rank)  # both workers of each rank served
