"""bf16 autocast against fp32 on the CPU, for every method's tiny recipe (issue 18, item 5).

For each method, two copies of the engine's training step (same initial weights, same batches) run
interleaved round-robin in one process: ``fp32`` and ``bf16`` (the step under
``torch.autocast("cpu", dtype=torch.bfloat16)``, what Lightning's ``precision=bf16-mixed`` does on a
CPU; losses stay fp32 where the methods say so). Each round times one step of each; the figure is the
per-round ratio fp32 time / bf16 time (median and interquartile range), so background load hits both
alike. Batches are real multi-crop views of ``--data`` (the recipe's augmentation and the method's
collate: iBOT block masks for DINOv2, random 75 % masks for MAE), built before timing.

The step is the engine's (``engine/module.py``): set lr/wd → ``method(batch, **schedule inputs)`` →
backward → per-sub-module clipping (where the recipe clips) → AdamW → EMA teacher update. Alongside
the time, the losses of the two copies over the same batches are printed: they drift apart as bf16
rounding accumulates, which is what the learning-curve comparison then has to judge.

Usage::

    OMP_NUM_THREADS=2 python benchmarks/cpu_bf16.py [--methods dinov2,simclr,vicreg,mae] [--rounds 12]
                                                   [--batch-size 64] [--data digits] [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time
from pathlib import Path

import torch

from sslkit.config import load_config
from sslkit.data.sources import open_data
from sslkit.engine.builders import build_method, build_schedules, build_views
from sslkit.engine.module import PretrainModule
from sslkit.engine.param_groups import dinov2_param_groups

ROOT = Path(__file__).resolve().parents[1]


class EngineStep:
    """One training step of the engine on ``method``, optionally under CPU bf16 autocast."""

    def __init__(self, method, cfg, bf16: bool):
        self.method, self.bf16 = method.train(), bf16
        self.schedules = build_schedules(cfg, 100, cfg.optim.batch_size)
        groups = dinov2_param_groups(method.student, cfg.optim.layer_decay, cfg.optim.patch_embed_lr_mult)
        self.engine = PretrainModule(method, self.schedules, groups, clip_grad=cfg.optim.clip_grad,
                                     betas=cfg.optim.betas)
        self.optimizer = self.engine.configure_optimizers()
        self.clip_grad = cfg.optim.clip_grad
        self.it = self.schedules.lr_warmup_iters  # mid-run: momentum < 1, so the EMA runs

    def __call__(self, batch: dict) -> float:
        values = self.schedules.at(self.it)
        self.engine._apply_schedules(self.optimizer, values)
        inputs = {name: values[name] for name in self.method.schedule_inputs}
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            out = self.method(batch, **inputs)
        loss = out["loss"]
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip_grad and self.clip_grad > 0:
            for module in self.method.student.values():
                torch.nn.utils.clip_grad_norm_(module.parameters(), self.clip_grad)
        self.optimizer.step()
        self.method.update_teacher(values["momentum"])
        self.it += 1
        return float(loss.detach())


def make_batches(cfg, data: str, n: int) -> list[dict]:
    splits = open_data(data, image_size=cfg.data.image_size)
    augmentation, collate = build_views(cfg, splits.channels, splits.mean, splits.std)
    torch.manual_seed(0)
    b = cfg.optim.batch_size
    return [collate([{"image": augmentation(splits.train[(k * b + i) % len(splits.train)]["image"]),
                      "position": k * b + i} for i in range(b)]) for k in range(n)]


def quartiles(values: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(values, n=4)
    return q[0], statistics.median(values), q[2]


def measure(method_name: str, args) -> dict:
    cfg = load_config(ROOT / "recipes" / f"{method_name}-tiny.yaml",
                      [f"optim.batch_size={args.batch_size}", f"data.source={args.data}"])
    batches = make_batches(cfg, args.data, args.warmup + args.rounds)
    channels = batches[0]["global_crops"].shape[1]
    torch.manual_seed(0)
    method = build_method(cfg, channels)
    steps = {"fp32": EngineStep(method, cfg, bf16=False), "bf16": EngineStep(copy.deepcopy(method), cfg, bf16=True)}
    times = {k: [] for k in steps}
    losses = {k: [] for k in steps}
    for i, batch in enumerate(batches):
        order = list(steps) if i % 2 == 0 else list(reversed(steps))  # alternate who goes first
        for kind in order:
            start = time.perf_counter()
            losses[kind].append(steps[kind](batch))
            elapsed = time.perf_counter() - start
            if i >= args.warmup:
                times[kind].append(elapsed)
    ratios = [a / b for a, b in zip(times["fp32"], times["bf16"])]
    q1, med, q3 = quartiles(ratios)
    return {"method": method_name, "batch_size": args.batch_size, "rounds": args.rounds,
            "fp32_step_s": statistics.median(times["fp32"]), "bf16_step_s": statistics.median(times["bf16"]),
            "speedup_median": med, "speedup_iqr": [q1, q3], "ratios": ratios,
            "loss_fp32": losses["fp32"], "loss_bf16": losses["bf16"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default="dinov2,simclr,vicreg,mae")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--data", default="digits")
    parser.add_argument("--json")
    args = parser.parse_args()
    load_before = os.getloadavg()
    results = [measure(m, args) for m in args.methods.split(",")]
    load_after = os.getloadavg()
    print(f"threads {torch.get_num_threads()}, load average {load_before[0]:.1f} -> {load_after[0]:.1f}")
    print("| method | fp32 step s | bf16 step s | fp32/bf16 per round, median [IQR] | loss fp32 → bf16 at the last step |")
    print("|---|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['method']} | {r['fp32_step_s']:.3f} | {r['bf16_step_s']:.3f} | {r['speedup_median']:.2f} "
              f"[{r['speedup_iqr'][0]:.2f}–{r['speedup_iqr'][1]:.2f}] | {r['loss_fp32'][-1]:.4f} → {r['loss_bf16'][-1]:.4f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": torch.get_num_threads(), "load_average": [load_before, load_after],
                       "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
