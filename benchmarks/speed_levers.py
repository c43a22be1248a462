"""What each speed lever buys the DINOv2 step on a CPU, side by side (issue 22, item 2).

The engine's step (``pretrain_throughput.FullStep``) at the issue's setting — ViT 12 blocks, width 192, patch 4,
32 px, 2×32 + 6×16 crops, B = 64, head hidden 2048, K = 4096, one thread — in these variants, built from the
same weights and run interleaved round-robin on the same batches (per-round ratios to ``fp32``):

- ``fp32``: eager float32 (what the peer benchmark compares with lightly's eager fp32 step);
- ``bf16``: ``torch.autocast("cpu", torch.bfloat16)``, i.e. ``trainer.precision=bf16-mixed``;
- ``bf16+fused``: AdamW with ``fused=True`` instead of ``foreach=True``;
- ``bf16+compile``: ``trainer.compile=true`` (``sslkit.engine.compile``: blocks and head MLPs compiled in place);
- ``bf16+compile+fused``: both.

Each variant's compilation happens in its warm-up steps (reported apart). FLOPs are counted once (eager fp32).

    OMP_NUM_THREADS=1 python benchmarks/speed_levers.py --json benchmarks/results/speed_levers.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pretrain_throughput as pt  # noqa: E402

from sslkit.config import load_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SETTING = ["model.depth=12", "dinov2.head_hidden_dim=2048", "dinov2.head_out_dim=4096", "trainer.precision=32-true",
           "model.drop_path_rate=0.0"]
VARIANTS = ("fp32", "bf16", "bf16+fused", "bf16+compile", "bf16+compile+fused")


class LeverStep:
    """``FullStep`` with the variant's levers applied."""

    def __init__(self, cfg, variant: str):
        self.step = pt.FullStep(cfg)
        self.bf16 = variant.startswith("bf16")
        if "fused" in variant:
            groups = [{k: v for k, v in g.items() if k not in ("foreach", "fused", "params")} | {"params": g["params"]}
                      for g in self.step.optimizer.param_groups]
            self.step.optimizer = torch.optim.AdamW(groups, betas=cfg.optim.betas, fused=True)
        if "compile" in variant:
            from sslkit.engine.compile import compile_step_modules

            compile_step_modules(self.step.method)

    def __call__(self, batch: dict) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            self.step(batch)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2, help="steps per variant before timing (compilation)")
    parser.add_argument("--recipe", default="recipes/dinov2-tiny.yaml")
    parser.add_argument("--extra", default="", help="comma-separated extra overrides (smoke runs)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    overrides = SETTING + [f"optim.batch_size={args.batch_size}"] + [o for o in args.extra.split(",") if o]
    cfg = load_config(ROOT / args.recipe, overrides)
    batches = pt.make_batches(cfg, 2)
    load_before = os.getloadavg()
    variants = [v for v in args.variants.split(",") if v]
    steps, warmup_s = {}, {}
    for variant in variants:
        steps[variant] = LeverStep(cfg, variant)
        started = time.perf_counter()
        for i in range(args.warmup):
            steps[variant](batches[i % len(batches)])
        warmup_s[variant] = time.perf_counter() - started
        print(f"{variant:20s} warm-up {warmup_s[variant]:.1f} s", flush=True)
    flops = pt.count_flops(pt.FullStep(cfg), batches[0])
    times = pt.time_steps(steps, batches, warmup=0, timed=args.rounds)
    ref = variants[0]
    result = {}
    for variant in variants:
        ratios = sorted(r / v for r, v in zip(times[ref], times[variant]))  # speed-up over the reference, per round
        q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
        result[variant] = {"median_s": statistics.median(times[variant]),
                           "images_per_s": args.batch_size / statistics.median(times[variant]),
                           "speedup_vs_" + ref: {"median": statistics.median(ratios), "iqr": [q[0], q[2]]},
                           "warmup_s": warmup_s[variant], "times_s": times[variant]}
        print(f"{variant:20s} {result[variant]['median_s']:7.3f} s/step  {result[variant]['images_per_s']:6.1f} img/s  "
              f"×{statistics.median(ratios):.2f} [{q[0]:.2f}–{q[2]:.2f}] vs {ref}", flush=True)
    load_after = os.getloadavg()
    print(f"GFLOP per step (eager fp32) {flops / 1e9:.1f}; load average {load_before[0]:.2f} → {load_after[0]:.2f}")
    if args.json:
        from sslkit.atomic_files import write_json_atomic

        write_json_atomic(args.json, {"torch": torch.__version__, "overrides": overrides, "gflop_per_step": flops / 1e9,
                                      "rounds": args.rounds, "variants": result,
                                      "load_average": [load_before[0], load_after[0]]})


if __name__ == "__main__":
    main()
