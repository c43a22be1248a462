"""SimCLR negatives and VICReg statistics over 2 gloo workers equal one process over the whole batch.

Each worker holds half of the batch; DDP averages the workers' losses and parameter gradients, so
the mean of the two worker losses must equal the single-process loss, and the gradient a worker
receives for its own rows, halved, must equal the single-process gradient of those rows.
"""

import json
import subprocess
import sys

import torch

from sslkit.functional.contrastive import nt_xent_loss
from sslkit.functional.vicreg import vicreg_loss


def _losses(z1, z2):
    return {"nt_xent": nt_xent_loss(z1, z2, 0.2), "vicreg": vicreg_loss(z1, z2)["loss"]}


def _inputs():
    g = torch.Generator().manual_seed(0)
    return torch.randn(8, 5, generator=g, dtype=torch.float64), torch.randn(8, 5, generator=g, dtype=torch.float64)


# Each worker is a fresh interpreter: autograd cannot run in a child forked from a process that
# already used it (the rest of the test session has), so fork-based workers would hang.
WORKER = """
import json, sys, torch
from sslkit.functional.contrastive import nt_xent_loss
from sslkit.functional.vicreg import vicreg_loss
rank, store, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
torch.distributed.init_process_group("gloo", init_method="file://" + store, rank=rank, world_size=2)
g = torch.Generator().manual_seed(0)
z1, z2 = torch.randn(8, 5, generator=g, dtype=torch.float64), torch.randn(8, 5, generator=g, dtype=torch.float64)
rows = slice(rank * 4, (rank + 1) * 4)
result = {}
for name in ("nt_xent", "vicreg"):
    a = z1[rows].clone().requires_grad_(True)
    b = z2[rows].clone().requires_grad_(True)
    loss = nt_xent_loss(a, b, 0.2) if name == "nt_xent" else vicreg_loss(a, b)["loss"]
    loss.backward()
    result[name] = (loss.item(), a.grad.tolist(), b.grad.tolist())
with open(out, "w") as f:
    json.dump(result, f)
torch.distributed.barrier()
# Skip interpreter teardown: gloo's threads can abort it ("terminate called without an active
# exception") after backward ran a collective, although everything above has finished.
import os
os._exit(0)
"""


def test_two_workers_equal_one_process(tmp_path):
    z1, z2 = _inputs()
    store = tmp_path / "store"
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(r), str(store), str(tmp_path / f"rank{r}.json")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    results = {r: json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)}
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
