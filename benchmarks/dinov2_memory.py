"""Peak memory of a DINOv2 step against the bare backbone, and what the two memory levers buy (issue 22, item 3).

Setting (the issue's): ViT-S/16 from ``recipes/dinov2-vits16.yaml`` — 2×224 + 8×96 crops, B = 16, DINO/iBOT head
2048 → 256 → K = 65 536 (one head shared by CLS and iBOT, as the recipe), fp32, one thread. Each step kind runs
in a fresh process (``pretrain_throughput.memory_child``'s method: batches first, then the peak RSS is reset,
then the model is built and ``--steps`` steps run; a second instance under ``LiveTensorBytes`` gives the peak of
live tensor bytes, which does not depend on the allocator):

- ``bare-student``: student backbone forward + backward + AdamW, no teacher;
- ``bare``: the same plus the teacher backbone's forward (the reference point of the earlier figures);
- ``full``: the engine's DINOv2 step (``pretrain_throughput.FullStep``), with ``dinov2.fused_prototype_loss`` on
  (the default: the student's logits are never formed);
- ``full-unfused``: the same with the plain head output (the step before this lever);
- ``full-ckpt`` / ``bare-ckpt``: ``model.grad_checkpointing=true`` (activations recomputed in backward).

Time: the kinds named by ``--time`` run interleaved round-robin in this process on the same batch (per-round
ratios), with FLOPs counted by ``torch.utils.flop_counter`` (recomputation included).

    OMP_NUM_THREADS=1 python benchmarks/dinov2_memory.py --json benchmarks/results/dinov2_memory.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pretrain_throughput as pt  # noqa: E402

from sslkit.config import load_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KINDS = {
    "bare-student": ("student", []),
    "bare": ("bare", []),
    "full": ("full", []),
    "full-unfused": ("full", ["dinov2.fused_prototype_loss=false"]),
    "full-ckpt": ("full", ["model.grad_checkpointing=true"]),
    "bare-ckpt": ("bare", ["model.grad_checkpointing=true"]),
}


def config(kind: str, batch_size: int, recipe: str):
    step_kind, overrides = KINDS[kind]
    cfg = load_config(ROOT / recipe, [f"optim.batch_size={batch_size}", "trainer.precision=32-true",
                                      "model.drop_path_rate=0.0", *overrides])
    return step_kind, cfg


def child(kind: str, batch_size: int, steps: int, recipe: str) -> dict:
    step_kind, cfg = config(kind, batch_size, recipe)
    batches = pt.make_batches(cfg, 1)
    base = pt.proc_status_kib("VmRSS")
    reset = pt.reset_peak_rss()
    step = pt.make_step(step_kind, cfg)
    for _ in range(steps):
        step(batches[0])
    peak = pt.proc_status_kib("VmHWM") if reset else float("nan")
    del step
    tracker = pt.LiveTensorBytes()
    with tracker:
        step = pt.make_step(step_kind, cfg)
        for _ in range(steps):
            step(batches[0])
    return {"rss_mib": (peak - base) / 1024, "tensor_mib": tracker.peak / 2**20}


def measure(kind: str, batch_size: int, steps: int, recipe: str) -> dict:
    cmd = [sys.executable, __file__, "--child", f"{kind}:{batch_size}:{steps}:{recipe}"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def timing(kinds: list[str], batch_size: int, rounds: int, recipe: str) -> dict:
    steps, batch = {}, None
    for kind in kinds:
        step_kind, cfg = config(kind, batch_size, recipe)
        batch = batch or pt.make_batches(cfg, 1)[0]
        steps[kind] = pt.make_step(step_kind, cfg)
    flops = {kind: pt.count_flops(step, batch) for kind, step in steps.items()}
    times = pt.time_steps(steps, [batch], warmup=1, timed=rounds)
    ref = kinds[0]
    return {"flops": flops, "median_s": {k: statistics.median(v) for k, v in times.items()},
            "ratio_to_" + ref: {k: sorted(a / b for a, b in zip(v, times[ref])) for k, v in times.items()},
            "times_s": times}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", default=",".join(KINDS), help="memory kinds (default: all)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=2, help="steps per memory process (2: AdamW state exists)")
    parser.add_argument("--recipe", default="recipes/dinov2-vits16.yaml")
    parser.add_argument("--time", default="full,full-ckpt", help="kinds timed side by side ('' to skip)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.child:
        kind, batch_size, steps, recipe = args.child.split(":")
        print(json.dumps(child(kind, int(batch_size), int(steps), recipe)))
        return
    load_before = os.getloadavg()
    memory = {}
    for kind in [k for k in args.kinds.split(",") if k]:
        memory[kind] = measure(kind, args.batch_size, args.steps, args.recipe)
        print(f"{kind:13s} peak RSS {memory[kind]['rss_mib']:8.0f} MiB   peak tensors {memory[kind]['tensor_mib']:8.0f} MiB",
              flush=True)
    for ref in ("bare", "bare-student"):
        if ref in memory:
            for kind, m in memory.items():
                print(f"  {kind:13s} / {ref:12s}: RSS {m['rss_mib'] / memory[ref]['rss_mib']:.3f}   "
                      f"tensors {m['tensor_mib'] / memory[ref]['tensor_mib']:.3f}")
    timed = timing(args.time.split(","), args.batch_size, args.rounds, args.recipe) if args.time else None
    if timed:
        for kind, ratios in timed[next(k for k in timed if k.startswith("ratio_to_"))].items():
            print(f"{kind:13s} median step {timed['median_s'][kind]:.2f} s   GFLOP {timed['flops'][kind] / 1e9:.1f}   "
                  f"time ratio per round {statistics.median(ratios):.3f} [{ratios[0]:.3f}–{ratios[-1]:.3f}]")
    load_after = os.getloadavg()
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    if args.json:
        from sslkit.atomic_files import write_json_atomic

        write_json_atomic(args.json, {"torch": torch.__version__, "batch_size": args.batch_size, "steps": args.steps,
                                      "recipe": args.recipe, "memory_mib": memory, "timing": timed,
                                      "load_average": [load_before[0], load_after[0]]})


if __name__ == "__main__":
    main()
