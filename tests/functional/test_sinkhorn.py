import math
import multiprocessing
import os

import pytest
import torch
import torch.nn.functional as F

from sslkit.functional.dino import update_center
from sslkit.functional.sinkhorn import sinkhorn_knopp


def init_head_logits(n, k, seed=0):
    """Logits of a weight-normalised last layer on unit inputs, as at initialisation."""
    g = torch.Generator().manual_seed(seed)
    x = F.normalize(torch.randn(n, 256, generator=g), dim=-1)
    w = F.normalize(torch.randn(k, 256, generator=g), dim=-1)
    return x @ w.t()


def sinkhorn_loop(logits, temp, n_iterations):
    """Direct transcription of the spec's steps with Python loops, in float64."""
    n, k = len(logits), len(logits[0])
    q = [[math.exp(logits[b][j] / temp) for b in range(n)] for j in range(k)]
    total = sum(sum(row) for row in q)
    q = [[v / total for v in row] for row in q]
    for _ in range(n_iterations):
        for j in range(k):
            row_sum = sum(q[j])
            q[j] = [v / (k * row_sum) for v in q[j]]
        for b in range(n):
            col_sum = sum(q[j][b] for j in range(k))
            for j in range(k):
                q[j][b] = q[j][b] / (n * col_sum)
    return torch.tensor([[n * q[j][b] for j in range(k)] for b in range(n)], dtype=torch.float64)


def test_rows_sum_to_one_and_prototypes_balanced():
    """Spec item 2."""
    n, k = 256, 1024
    probs = sinkhorn_knopp(init_head_logits(n, k), teacher_temp=0.04, n_iterations=3)
    assert probs.dtype == torch.float32 and probs.shape == (n, k)
    assert (probs.sum(dim=1) - 1).abs().max().item() < 1e-6
    mass = probs.double().sum(dim=0)
    assert ((mass - n / k).abs() / (n / k)).max().item() < 1e-2


def test_equals_direct_loop_implementation():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(5, 7, generator=g)
    expected = sinkhorn_loop(logits.double().tolist(), 0.5, 3)
    torch.testing.assert_close(sinkhorn_knopp(logits, 0.5, 3).double(), expected, rtol=1e-5, atol=1e-7)


def test_max_shift_keeps_large_logits_finite():
    # exp(60 / 0.04) overflows float32; subtracting the max must not change the result.
    # Multiples of 1/256 keep "+ 60" exact in float32, so the results must be identical.
    g = torch.Generator().manual_seed(2)
    logits = torch.randint(-16, 16, (16, 32), generator=g).float() / 256
    shifted = sinkhorn_knopp(logits + 60.0, 0.04)
    assert torch.isfinite(shifted).all()
    torch.testing.assert_close(shifted, sinkhorn_knopp(logits, 0.04), rtol=0, atol=0)


def test_more_iterations_balance_better():
    logits = init_head_logits(64, 128, seed=3) * 5
    imbalance = lambda p: (p.double().sum(0) - 64 / 128).abs().max().item()  # noqa: E731
    assert imbalance(sinkhorn_knopp(logits, 0.04, 10)) < imbalance(sinkhorn_knopp(logits, 0.04, 1))


def _distributed_worker(rank, world_size, store_path, logits, center, result_queue):
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{store_path}", rank=rank, world_size=world_size
    )
    try:
        out = []
        for split in (3, 0):  # unequal shards 3 + 5 rows, and an empty shard 0 + 8
            shard = logits[:split] if rank == 0 else logits[split:]
            probs = sinkhorn_knopp(shard, 0.07, 3)
            new_center = update_center(center, shard, momentum=0.9)
            # Plain lists: tensors would travel as shared-memory handles that die with the worker.
            out.append((probs.reshape(-1).tolist(), new_center.tolist()))
        result_queue.put((rank, out))
    finally:
        torch.distributed.destroy_process_group()


def test_distributed_matches_single_process(tmp_path):
    """Row count, sums and the centre mean are all-reduced over workers (2 gloo workers)."""
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(8, 6, generator=g)
    center = torch.randn(1, 6, generator=g)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    store = os.path.join(tmp_path, "store")
    workers = [
        ctx.Process(target=_distributed_worker, args=(r, 2, store, logits, center, queue))
        for r in range(2)
    ]
    for w in workers:
        w.start()
    results = dict(queue.get(timeout=60) for _ in workers)
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    expected_probs = sinkhorn_knopp(logits, 0.07, 3)
    expected_center = update_center(center, logits, momentum=0.9)
    for case in range(2):
        gathered = torch.tensor(results[0][case][0] + results[1][case][0]).view(8, 6)
        torch.testing.assert_close(gathered, expected_probs)
        for rank in range(2):
            torch.testing.assert_close(torch.tensor(results[rank][case][1]), expected_center)


def test_no_rows_anywhere_keeps_center_and_gives_empty_targets():
    center = torch.ones(1, 4)
    torch.testing.assert_close(update_center(center, torch.zeros(0, 4)), center)
    assert sinkhorn_knopp(torch.zeros(0, 4), 0.07).shape == (0, 4)


def test_rejects_non_matrix():
    with pytest.raises(ValueError, match=r"\(n, K\)"):
        sinkhorn_knopp(torch.zeros(3), 0.1)
