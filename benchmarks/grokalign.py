"""GrokAlign (arXiv 2506.12284) vs weight decay alone on the digits grokking setup: issue #10.

Both arms train the same x8-initialised bias-free ReLU MLP on 1024 standardised 28x28 digits
(AdamW, weight decay 0.01, MSE on one-hot, batch 256 in a fixed order) from the same seeds; the
GrokAlign arm adds lambda * (mean random-projection Jacobian norm). Each run stops when the test
accuracy first reaches the threshold (checked every ``--eval-every`` steps) or at the step cap.

Target: GrokAlign reaches the threshold in <= 0.5x the baseline's steps in at least 2 of 3 seeds.
Printed: per seed, the steps and wall time of both arms and their ratios; the step at which each
run first fits the training set (train acc >= 0.99), which shows the delayed generalisation.

Run: ``OMP_NUM_THREADS=1 python benchmarks/grokalign.py`` (about 5-10 min on one quiet core;
grok.json and grok.png go to ``--out``, default benchmarks/figures).
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from sslkit.analysis.grok import GrokConfig, run_grok, write_grok_outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--lam", type=float, default=None, help="GrokAlign lambda (default: the setup's)")
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--eval-every", type=int, default=None)
    parser.add_argument("--threshold", type=float, default=None)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--out", default="benchmarks/figures")
    args = parser.parse_args()
    torch.set_num_threads(1)

    cfg = GrokConfig(setup="digits", lam=args.lam, max_steps=args.max_steps, eval_every=args.eval_every,
                     threshold=args.threshold, dtype=args.dtype)
    started = time.perf_counter()

    def progress(reg: str, seed: int, step: int, row: dict) -> None:
        if step % 2000 == 0:
            print(f"  {reg:>9} seed {seed} step {step:6d}  train {row['train_acc']:.3f}  test {row['test_acc']:.3f}"
                  f"  align {row['train_alignment']:+.3f}  |J| {row['jacobian_norm']:.2f}  "
                  f"[{time.perf_counter() - started:.0f} s]", flush=True)

    report = run_grok(cfg, seeds=list(range(args.seeds)), regimes=["wd", "grokalign"], on_eval=progress)
    total = time.perf_counter() - started
    paths = write_grok_outputs(report, Path(args.out))
    summary = report.to_dict()
    race = summary["race"]
    ga_cfg = summary["configs"]["grokalign"]

    print()
    print(f"setup: {report.description}")
    print(f"AdamW lr {ga_cfg['lr']:g}, wd {ga_cfg['weight_decay']:g} (both arms), GrokAlign lambda {ga_cfg['lam']:g}, "
          f"{ga_cfg['dtype']}, threshold test acc >= {report.threshold:g}, cap {ga_cfg['max_steps']} steps, "
          f"eval every {ga_cfg['eval_every']}")
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} thread")
    print()
    header = (f"{'seed':>4} | {'wd fit':>7} {'wd steps':>8} {'wd s':>7} | {'GA fit':>7} {'GA steps':>8} {'GA s':>7} | "
              f"{'steps GA/wd':>11} {'time GA/wd':>10}")
    print(header)
    print("-" * len(header))
    for wd_run, ga_run, row in zip(report.arms["wd"], report.arms["grokalign"], race["per_seed"]):
        fmt = lambda s: str(s) if s is not None else "never"  # noqa: E731
        ratio = "n/a" if row["step_ratio"] is None else f"{row['step_ratio']:.2f}" + ("*" if row["ratio_is_upper_bound"] else "")
        print(f"{wd_run.seed:>4} | {fmt(wd_run.steps_to_train_fit):>7} {fmt(wd_run.steps_to_threshold):>8} "
              f"{wd_run.wall_time_s:>7.1f} | {fmt(ga_run.steps_to_train_fit):>7} {fmt(ga_run.steps_to_threshold):>8} "
              f"{ga_run.wall_time_s:>7.1f} | {ratio:>11} {row['wall_ratio']:>10.2f}")
    print()
    met = race["seeds_meeting_target"]
    print(f"GrokAlign reached the threshold in <= {race['target_ratio']}x the weight-decay steps in {met}/{race['seeds']} "
          f"seeds: target (>= 2 of 3) {'MET' if met >= 2 else 'NOT MET'}.")
    print(f"total wall time {total:.0f} s; wrote {paths['json']} and {paths['png']}")


if __name__ == "__main__":
    main()
