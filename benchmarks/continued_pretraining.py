"""Continued pretraining against pretraining from scratch at equal steps (issue 21, item 2).

Per seed: a *source* run of the DINOv2 learning budget (``tests/learning_budgets.py``: 2-block width-64 ViT,
patch 4, 16 px, batch 64) on the built-in ``shapes`` (3-channel renders) for ``--source-steps``; then two runs
on ``digits`` (1 channel) with the same seed and budget (150 steps): one from scratch, one with
``model.init`` = the source's exported backbone (its RGB patch filters summed to one channel, its heads
fresh, the teacher a copy of the student), and one with that init and ``dinov2-continue-tiny``'s changes
(lr / 4, backbone frozen for the first half epoch). kNN (k = 20, T = 0.07) on the 360 held-out digits; the paired
difference continued − scratch with a 95 % t interval. Writes ``benchmarks/results/continued_pretraining.json``.

    OMP_NUM_THREADS=1 python benchmarks/continued_pretraining.py --seeds 0,1,2,3,4 --workers 2
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from learning_budgets import learning_run_args  # noqa: E402


def run_seed(job: tuple[int, int]) -> dict:
    import torch

    torch.set_num_threads(1)
    from sslkit.cli import main

    seed, source_steps = job
    row = {"seed": seed}
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "source"
        start = time.perf_counter()
        assert main(learning_run_args("dinov2", source, seed, {
            "data.source": "shapes", "optim.epochs": source_steps // 50, "monitor.baselines": "false"})) == 0
        row["source_s"] = time.perf_counter() - start
        row["source_knn_on_shapes"] = 100 * json.loads((source / "report.json").read_text())["knn_top1"]["pretrained"]
        init = {"model.init": source / "backbone.safetensors"}
        # continued_recipe: dinov2-continue-tiny's changes to dinov2-tiny (lr / 4, backbone frozen for the first
        # half epoch, no last-layer freeze, a short warm-up)
        arms = (("scratch", {}), ("continued", init),
                ("continued_recipe", {**init, "optim.base_lr": 0.001, "optim.warmup_epochs": 0.25,
                                      "optim.freeze_backbone_epochs": 0.5, "optim.freeze_last_layer_epochs": 0}))
        for name, changes in arms:
            out = Path(tmp) / name
            start = time.perf_counter()
            assert main(learning_run_args("dinov2", out, seed, changes)) == 0
            knn = json.loads((out / "report.json").read_text())["knn_top1"]
            row[name] = 100 * knn["pretrained"]
            row[f"{name}_s"] = time.perf_counter() - start
            row["random_init"] = 100 * knn["random_init"]
            if "initial" in knn:
                row["source_weights_on_digits"] = 100 * knn["initial"]
    row["difference"] = row["continued"] - row["scratch"]
    row["difference_recipe"] = row["continued_recipe"] - row["scratch"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--source-steps", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "continued_pretraining.json")
    args = parser.parse_args()
    from claims import paired

    seeds = [int(s) for s in args.seeds.split(",")]
    load_before = os.getloadavg()[0]
    with mp.get_context("spawn").Pool(args.workers, maxtasksperchild=1) as pool:
        rows = sorted(pool.imap_unordered(run_seed, [(s, args.source_steps) for s in seeds]), key=lambda r: r["seed"])
    for r in rows:
        print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in r.items()}))
    diffs = [r["difference"] for r in rows]
    recipe_diffs = [r["difference_recipe"] for r in rows]
    summary = {"continued_mean": statistics.fmean(r["continued"] for r in rows),
               "continued_recipe_mean": statistics.fmean(r["continued_recipe"] for r in rows),
               "scratch_mean": statistics.fmean(r["scratch"] for r in rows),
               "difference_mean": statistics.fmean(diffs), "difference_ci95": paired(diffs, 0.0, None)["ci95"],
               "difference_recipe_mean": statistics.fmean(recipe_diffs),
               "difference_recipe_ci95": paired(recipe_diffs, 0.0, None)["ci95"]}
    record = {"settings": {"budget": "tests/learning_budgets.py dinov2 (150 steps on digits)",
                           "source": f"shapes, {args.source_steps} steps, same budget", "seeds": seeds,
                           "command": "OMP_NUM_THREADS=1 python benchmarks/continued_pretraining.py "
                                      + " ".join(sys.argv[1:]), "date": time.strftime("%Y-%m-%d %H:%M")},
              "load_before": load_before, "load_after": os.getloadavg()[0], "summary": summary, "rows": rows}
    args.json.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
