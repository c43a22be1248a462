"""Fast DINOv2 against DINOv2 at the same number of epochs (issue 4, item 7).

Two runs of ``sslkit pretrain`` on the same data, side by side in one process:

baseline
    ``recipes/dinov2-tiny.yaml``: every step at full resolution (32-px global, 16-px local crops).
fast
    ``recipes/fast-dinov2-tiny.yaml``: the low-frequency-first curriculum of FastDINOv2 (arXiv 2507.03779)
    (shared/specs/fast-dinov2.md) — 75 % of the steps on 16/8-px crops, then 25 % at full resolution
    with Gaussian noise patching and restarted schedules.

Both are then evaluated by ``sslkit evaluate`` on the held-out test split: kNN (k = 20) and linear
probe top-1 on the clean images, and the corruption suite (17 ImageNet-C-style corruptions ×
severities 1–5, kNN on the frozen features) with its mean accuracy and the relative mean corruption
error of fast against baseline. FLOPs are the engine's count for the whole run (the same counter
``sslkit flops`` prints); wall time is the pretraining time measured here.

Targets (issue 4): fast ≥ baseline − 1 point kNN, fast ≥ baseline mean corruption accuracy, at
≤ 0.5× the FLOPs and ≤ 0.7× the wall time.

Usage::

    python benchmarks/fast_curriculum.py [--data digits] [--epochs 12] [--seed 0] [--quick]

Writes ``benchmarks/figures/fast_curriculum.json`` (and the evaluation report next to it) and
prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
ARMS = (("baseline", "dinov2-tiny.yaml"), ("fast", "fast-dinov2-tiny.yaml"))


def pretrain_arm(recipe: str, data: str, epochs: float, seed: int, out: Path, quick: bool) -> dict:
    """Pretrain one arm into ``out`` (reused when ``out`` holds a finished run of this script)."""
    from sslkit.config import load_config
    from sslkit.engine.run import pretrain

    timing = out / "benchmark_seconds.json"
    if (out / "report.json").is_file() and timing.is_file():
        return summarise_arm(out, json.loads(timing.read_text())["seconds"])

    overrides = [f"data.source={data}", f"optim.epochs={epochs}", f"trainer.seed={seed}",
                 "trainer.progress_bar=false", "monitor.knn_every_n_steps=0", "monitor.baselines=false",
                 "monitor.count_flops=true", "trainer.checkpoint_every_n_steps=0"]
    if quick:
        overrides += ["optim.iters_per_epoch=4", "optim.warmup_epochs=0.5", "dinov2.warmup_teacher_temp_epochs=0.5"]
    cfg = load_config(str(ROOT / "recipes" / recipe), overrides)
    start = time.perf_counter()
    pretrain(cfg, out, log=lambda *_: None)
    seconds = time.perf_counter() - start
    timing.write_text(json.dumps({"seconds": seconds}))
    return summarise_arm(out, seconds)


def summarise_arm(out: Path, seconds: float) -> dict:
    report = json.loads((out / "report.json").read_text())
    return {"seconds": seconds, "steps": report["steps"], "flops": report["flops"]["total_planned"],
            "train_knn_top1": report["knn_top1"].get("pretrained")}


def interleaved_step_ratio(batch_size: int, warmup: int = 2, timed: int = 6) -> dict:
    """Wall-time ratio fast / baseline predicted from step times measured side by side.

    The two pretraining runs above run one after the other, so machine load can differ between them.
    Here one engine step at every stage's crop sizes (``pretrain_throughput.FullStep``, the engine's
    step without Lightning) is timed round-robin on synthetic batches, and the fast recipe's time is
    Σ_k fraction_k · t_k relative to the baseline's t_full (data loading, incl. noise patching, excluded).
    """
    import pretrain_throughput as pt
    from sslkit.config import load_config

    fast = load_config(str(ROOT / "recipes" / "fast-dinov2-tiny.yaml"), [f"optim.batch_size={batch_size}"])
    sizes = {"full": (fast.crops.global_size, fast.crops.local_size)}
    for k, stage in enumerate(fast.curriculum):
        sizes[f"stage{k}"] = (stage.global_size or fast.crops.global_size, stage.local_size or fast.crops.local_size)
    steps, batches = {}, {}
    for name, (g, loc) in sizes.items():
        cfg = load_config(str(ROOT / "recipes" / "dinov2-tiny.yaml"),
                          [f"optim.batch_size={batch_size}", f"crops.global_size={g}", f"crops.local_size={loc}"])
        steps[name], batches[name] = pt.FullStep(cfg), pt.make_batches(cfg, 2)
    times = {name: [] for name in steps}
    for i in range(warmup + timed):
        for name, step in steps.items():
            start = time.perf_counter()
            step(batches[name][i % 2])
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(t) for name, t in times.items()}
    predicted = sum(stage.fraction * median[f"stage{k}"] for k, stage in enumerate(fast.curriculum)) / median["full"]
    return {"median_step_seconds": median, "predicted_wall_time_ratio": predicted}


def evaluate(runs: dict[str, Path], data: str, out: Path, quick: bool, image_size: int = 32) -> dict:
    from sslkit.cli import main

    # Both models at the resolution they finished training at (the fast curriculum's last stage is full size).
    args = ["evaluate", *map(str, runs.values()), "--data", data, "--protocols", "knn,linear,robustness",
            "--image-size", str(image_size),
            "--knn-k", "20", "--reference", str(runs["baseline"]), "--out", str(out), "--no-cache"]
    if quick:
        args += ["--linear-lrs", "0.001,0.01", "--linear-wds", "0", "--linear-epochs", "1",
                 "--corruptions", "gaussian_noise,contrast", "--severities", "1,5", "--robustness-samples", "100"]
    code = main(args)
    if code != 0:
        raise SystemExit(f"sslkit evaluate failed with exit code {code}")
    return json.loads((out / "report.json").read_text())


def model_entry(report: dict, run: Path) -> dict:
    """The evaluation report's entry for one run directory."""
    for model in report["models"]:
        if model["name"] == run.name:
            return model
    raise KeyError(f"no evaluation of {run} in the report")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="digits", help="built-in dataset or folder (default digits; see RESULTS.md)")
    parser.add_argument("--epochs", type=float, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="4 steps per epoch and a reduced evaluation: a smoke run")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "figures" / "fast_curriculum"))
    args = parser.parse_args()
    from sslkit.commands.pretrain import quiet_lightning

    quiet_lightning()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs, rows = {}, {}
    for name, recipe in ARMS:
        runs[name] = out / f"{name}-{args.data}-seed{args.seed}"
        rows[name] = pretrain_arm(recipe, args.data, args.epochs, args.seed, runs[name], args.quick)
        print(f"{name}: {rows[name]['steps']} steps, {rows[name]['seconds']:.0f} s, {rows[name]['flops']:.3e} FLOPs",
              flush=True)
    report = evaluate(runs, args.data, out / f"evaluation-{args.data}-seed{args.seed}", args.quick)
    for name in rows:
        entry = model_entry(report, runs[name])
        results = entry["results"]
        rows[name]["knn_top1"] = results["knn"]["accuracy"]["20"]
        rows[name]["linear_top1"] = results["linear"]["test_accuracy"]
        rows[name]["corruption_mean"] = results["robustness"]["mean_corruption_accuracy"]
        rows[name]["clean_knn_robustness_subset"] = results["robustness"]["clean_accuracy"]
        rows[name]["relative_mce"] = results["robustness"]["relative_mce"]
    b, f = rows["baseline"], rows["fast"]
    timing = interleaved_step_ratio(8 if args.quick else 64, timed=2 if args.quick else 6)
    summary = {"data": args.data, "epochs": args.epochs, "seed": args.seed, "rows": rows, "step_timing": timing,
               "ratios": {"flops": f["flops"] / b["flops"], "wall_time": f["seconds"] / b["seconds"],
                          "wall_time_interleaved": timing["predicted_wall_time_ratio"],
                          "knn_points": 100 * (f["knn_top1"] - b["knn_top1"]),
                          "corruption_points": 100 * (f["corruption_mean"] - b["corruption_mean"])}}
    (out / f"fast_curriculum-{args.data}-seed{args.seed}.json").write_text(json.dumps(summary, indent=2))
    print(f"\n{args.data}, {args.epochs:g} epochs, seed {args.seed}\n")
    print("| run | steps | kNN top-1 % | linear top-1 % | mean corruption acc % | FLOPs | wall time s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r['steps']} | {100 * r['knn_top1']:.1f} | {100 * r['linear_top1']:.1f} | "
              f"{100 * r['corruption_mean']:.1f} | {r['flops']:.3e} | {r['seconds']:.0f} |")
    q = summary["ratios"]
    print(f"\nfast / baseline: FLOPs {q['flops']:.2f}x (target <= 0.5), wall time {q['wall_time']:.2f}x of the two runs "
          f"and {q['wall_time_interleaved']:.2f}x from interleaved step times (target <= 0.7), "
          f"kNN {q['knn_points']:+.1f} points (target >= -1), mean corruption accuracy {q['corruption_points']:+.1f} "
          f"points (target >= 0)")


if __name__ == "__main__":
    main()
