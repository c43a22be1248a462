"""F4 of docs/method-audit.md: projector BatchNorms use global statistics when several accelerator processes train."""

import pytest

from sslkit.config import TrainerConfig
from sslkit.engine.strategy import wants_sync_batchnorm


@pytest.mark.parametrize("accelerator, devices, nodes, expected", [
    ("gpu", 8, 1, True), ("cuda", "0,1", 1, True), ("gpu", 1, 2, True),
    ("gpu", 1, 1, False), ("gpu", "1", 1, False),
    # torch's SyncBatchNorm refuses CPU tensors: CPU processes keep per-process statistics.
    ("cpu", 2, 1, False), ("cpu", 1, 4, False),
])
def test_sync_batchnorm_only_across_accelerator_processes(accelerator, devices, nodes, expected):
    cfg = TrainerConfig(accelerator=accelerator, devices=devices, num_nodes=nodes)
    assert wants_sync_batchnorm(cfg) is expected
