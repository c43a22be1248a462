"""A DINOv2 step on 2 gloo workers × B/2 equals the same step on 1 process × B.

The two workers run this file as a script (``__main__`` below): each wraps the method in
``torch.nn.parallel.DistributedDataParallel`` — what Lightning's DDP strategy does — takes its half
of one fixed global batch and runs one forward/backward. The single-process reference runs in the
test process. Compared, in float64:

- teacher targets: softmax-centred CLS and masked-patch probabilities, and the Sinkhorn-Knopp
  assignments (whose row/column sums are all-reduced);
- the teacher centres after the step (their batch means are all-reduced);
- the DINO and iBOT losses (the mean of the two workers' losses is the global loss because each
  worker normalises by its own, equal, number of crops, as the reference);
- every student gradient, averaged over workers by DDP.

KoLeo is the documented exception: the reference (facebookresearch/dinov2 ``koleo_loss.py``)
looks for nearest neighbours among one device's crops only, so it differs with the split; the
equality is checked with ``koleo_weight = 0`` and the per-device KoLeo is shown to differ.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from sslkit.config import load_config
from sslkit.engine.builders import build_method

RECIPE = str(Path(__file__).resolve().parents[2] / "recipes" / "dinov2-tiny.yaml")
B, N_GLOBAL, N_LOCAL, SIZE, LOCAL, PATCH, K = 8, 2, 2, 16, 8, 4, 64
N_PATCHES = (SIZE // PATCH) ** 2
TEACHER_TEMP = 0.06
CENTERINGS = ("softmax", "sinkhorn")


def build(centering: str, koleo_weight: float = 0.0):
    cfg = load_config(RECIPE, [
        f"crops.global_size={SIZE}", f"crops.local_size={LOCAL}", f"crops.n_local={N_LOCAL}",
        "model.embed_dim=32", "model.depth=2", "model.num_heads=2", f"model.patch_size={PATCH}",
        f"dinov2.head_out_dim={K}", "dinov2.head_hidden_dim=48", "dinov2.head_bottleneck_dim=16",
        f"dinov2.centering={centering}", f"dinov2.koleo_weight={koleo_weight}"])
    torch.manual_seed(0)
    method = build_method(cfg, in_chans=3).double()
    with torch.no_grad():  # non-zero centres, so a missing all-reduce of the centre update shows
        method.dino_center.normal_(0, 0.1)
        method.ibot_center.normal_(0, 0.1)
    return method.train()


def global_batch() -> dict:
    g = torch.Generator().manual_seed(1)
    masks = torch.rand(N_GLOBAL * B, N_PATCHES, generator=g) < 0.4
    masks[1::2] = False  # half the crops unmasked, as the reference's mask_probability = 0.5
    masks[0::2, 0] = True  # every other crop has at least one masked patch, on both workers
    return {"global_crops": torch.randn(N_GLOBAL * B, 3, SIZE, SIZE, generator=g, dtype=torch.float64),
            "local_crops": torch.randn(N_LOCAL * B, 3, LOCAL, LOCAL, generator=g, dtype=torch.float64),
            "masks": masks}


def shard(batch: dict, rank: int, world: int) -> dict:
    """Rank ``rank``'s images of a crop-major batch: its block of B/world rows in every crop chunk."""
    def rows(x: torch.Tensor, n_crops: int) -> torch.Tensor:
        per = x.shape[0] // n_crops
        chunks = x.reshape(n_crops, per, *x.shape[1:])
        b = per // world
        return chunks[:, rank * b:(rank + 1) * b].reshape(-1, *x.shape[1:])
    return {"global_crops": rows(batch["global_crops"], N_GLOBAL), "local_crops": rows(batch["local_crops"], N_LOCAL),
            "masks": rows(batch["masks"], N_GLOBAL)}


def step(method, batch: dict, forward=None) -> dict:
    """Teacher targets (patch targets scattered onto the dense grid), one forward/backward, centres and grads."""
    with torch.no_grad():  # the targets of this step, from a copy so the real step updates the centres once
        probe = copy.deepcopy(method)
        cls_probs, patch_probs = probe._teacher_targets(batch["global_crops"], batch["masks"].flatten(), TEACHER_TEMP)
        dense = torch.zeros(batch["masks"].numel(), K, dtype=patch_probs.dtype)
        dense[batch["masks"].flatten()] = patch_probs
    out = (forward or method)(batch, TEACHER_TEMP)
    out["loss"].backward()
    return {
        "cls_probs": cls_probs.tolist(), "patch_probs": dense.tolist(),
        "dino_center": method.dino_center.tolist(), "ibot_center": method.ibot_center.tolist(),
        "dino_loss": out["dino_loss"].item(), "ibot_loss": out["ibot_loss"].item(),
        "koleo_loss": out["koleo_loss"].item(),
        "grads": {n: p.grad.tolist() for n, p in method.student.named_parameters() if p.grad is not None},
    }


def unshard(parts: list[torch.Tensor], n_crops: int) -> torch.Tensor:
    """Inverse of ``shard`` for per-crop rows: worker blocks back into crop-major global order."""
    chunks = [p.reshape(n_crops, -1, *p.shape[1:]) for p in parts]
    return torch.cat(chunks, dim=1).reshape(-1, *parts[0].shape[1:])


def test_two_workers_equal_one_process(tmp_path):
    store = tmp_path / "store"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, __file__, str(r), str(store), str(tmp_path / f"rank{r}.json")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for r in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    workers = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    batch = global_batch()
    for centering in CENTERINGS:
        ref = step(build(centering), batch)
        got = [w[centering] for w in workers]
        t = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
        close = lambda a, b: torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-9)  # noqa: E731
        close(unshard([t(w["cls_probs"]) for w in got], N_GLOBAL), t(ref["cls_probs"]))
        dense = [t(w["patch_probs"]).reshape(-1, N_PATCHES, K) for w in got]
        close(unshard(dense, N_GLOBAL).reshape(-1, K), t(ref["patch_probs"]))
        for key in ("dino_center", "ibot_center"):
            close(t(got[0][key]), t(ref[key]))
            close(t(got[1][key]), t(ref[key]))
        for key in ("dino_loss", "ibot_loss"):
            close(t((got[0][key] + got[1][key]) / 2), t(ref[key]))
        assert ref["grads"].keys() == got[0]["grads"].keys() == got[1]["grads"].keys()
        for name, grad in ref["grads"].items():
            # DDP already averaged: both workers hold the same gradient, equal to the 1-process one.
            # Tolerance relative to the tensor's scale: Sinkhorn-Knopp runs in float32 (as the
            # reference), and its all-reduced sums round differently from the one-process sums.
            grad = t(grad)
            scale = float(grad.abs().max())
            for w in got:
                torch.testing.assert_close(t(w["grads"][name]), grad, rtol=1e-5, atol=1e-6 * scale)
        assert any(torch.tensor(g).abs().max() > 0 for g in ref["grads"].values())
    # The documented exception: KoLeo's neighbours are searched per device (as the reference).
    koleo_workers = (workers[0]["koleo_per_device"] + workers[1]["koleo_per_device"]) / 2
    koleo_global = build("softmax", koleo_weight=0.1)(batch, TEACHER_TEMP)["koleo_loss"].item()
    assert abs(koleo_workers - koleo_global) > 1e-3


if __name__ == "__main__":  # one DDP worker: rank, file-store path, output path
    rank, store, out_path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    torch.distributed.init_process_group("gloo", init_method="file://" + store, rank=rank, world_size=2)
    local = shard(global_batch(), rank, 2)
    result = {}
    for centering in CENTERINGS:
        method = build(centering)
        ddp = torch.nn.parallel.DistributedDataParallel(method)
        result[centering] = step(method, local, forward=ddp)
    with torch.no_grad():
        result["koleo_per_device"] = build("softmax", koleo_weight=0.1)(local, TEACHER_TEMP)["koleo_loss"].item()
    Path(out_path).write_text(json.dumps(result))
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
    # Skip interpreter teardown: gloo's threads can abort it after backward ran a collective
    # (see tests/functional/test_gathered_losses_distributed.py).
    os._exit(0)
