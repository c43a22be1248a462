"""SimCLR negatives and VICReg statistics over 2 gloo workers equal one process over the whole batch.

Each worker holds half of the batch; DDP averages the workers' losses and parameter gradients, so
the mean of the two worker losses must equal the single-process loss, and the gradient a worker
receives for its own rows, halved, must equal the single-process gradient of those rows.
"""

import multiprocessing
import os

import torch

from sslkit.functional.contrastive import nt_xent_loss
from sslkit.functional.vicreg import vicreg_loss


def _losses(z1, z2):
    return {"nt_xent": nt_xent_loss(z1, z2, 0.2), "vicreg": vicreg_loss(z1, z2)["loss"]}


def _worker(rank, store, z1, z2, queue):
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        half = z1.shape[0] // 2
        rows = slice(rank * half, (rank + 1) * half)
        out = {}
        for name in ("nt_xent", "vicreg"):
            a = z1[rows].clone().requires_grad_(True)
            b = z2[rows].clone().requires_grad_(True)
            loss = _losses(a, b)[name]
            loss.backward()
            out[name] = (loss.item(), a.grad.tolist(), b.grad.tolist())
        queue.put((rank, out))
    finally:
        torch.distributed.destroy_process_group()


def test_two_workers_equal_one_process(tmp_path):
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(8, 5, generator=g, dtype=torch.float64), torch.randn(8, 5, generator=g, dtype=torch.float64)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    store = os.path.join(tmp_path, "store")
    workers = [ctx.Process(target=_worker, args=(r, store, z1, z2, queue)) for r in range(2)]
    for w in workers:
        w.start()
    results = dict(queue.get(timeout=120) for _ in workers)
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    for name in ("nt_xent", "vicreg"):
        a, b = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
        loss = _losses(a, b)[name]
        loss.backward()
        mean_worker_loss = (results[0][name][0] + results[1][name][0]) / 2
        torch.testing.assert_close(torch.tensor(mean_worker_loss, dtype=torch.float64), loss.detach(), rtol=1e-10, atol=0)
        grad_a = torch.tensor(results[0][name][1] + results[1][name][1], dtype=torch.float64) / 2
        grad_b = torch.tensor(results[0][name][2] + results[1][name][2], dtype=torch.float64) / 2
        torch.testing.assert_close(grad_a, a.grad, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(grad_b, b.grad, rtol=1e-9, atol=1e-12)
    # Without gathering, the per-worker contrastive loss sees fewer negatives and differs.
    local = (nt_xent_loss(z1[:4], z2[:4], 0.2, gather=False) + nt_xent_loss(z1[4:], z2[4:], 0.2, gather=False)) / 2
    assert abs(local.item() - nt_xent_loss(z1, z2, 0.2).item()) > 1e-3
