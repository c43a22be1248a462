"""Frozen linear probe against full fine-tuning of the same backbone on the built-in ``digits`` (issue 21, item 3).

Per seed, two backbones of the learning-outcome shape (``tests/learning_budgets.py``: 2-block width-64 ViT,
patch 4, 16 px, 1 channel):

* ``random``: that ViT at random init (``torch.manual_seed(seed)``), saved as an sslkit backbone;
* ``simclr``: the SimCLR learning run of ``tests/learning_budgets.py`` (``recipes/simclr-tiny.yaml`` narrowed,
  150 steps of batch 64 on digits, seed ``seed``), the method that learns fastest on digits there.

Each is scored twice on the 360 held-out digits: the frozen linear probe (``sslkit.eval.linear.linear_probe``,
its default 13 × 3 lr / weight-decay sweep selected on a 10 % validation split, over the class-token features
``sslkit evaluate`` uses) and ``sslkit finetune`` (``sslkit.eval.finetune``) with the settings below, early
stopping on its own 10 % validation split. Reports per-seed accuracies and the paired difference
finetune − probe with a 95 % t interval, per backbone. Writes ``benchmarks/results/finetune_vs_probe.json``.

    OMP_NUM_THREADS=1 python benchmarks/finetune_vs_probe.py --seeds 0,1,2,3,4
"""

from __future__ import annotations

import argparse
import json
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

# Fine-tuning settings: the paper's (arXiv 2506.19552) layer decay, mixup, cutmix and label smoothing; no flip
# (a mirrored digit is another glyph) and crops of at least half the image at 16 px.
FINETUNE = {"epochs": 20, "batch_size": 64, "lr": 2e-3, "weight_decay": 0.05, "layer_decay": 0.65,
            "warmup_epochs": 2.0, "mixup": 0.8, "cutmix": 1.0, "label_smoothing": 0.1, "patience": 5,
            "crop_min_scale": 0.5, "hflip": 0.0}


def backbones(tmp: Path, seed: int) -> dict[str, Path]:
    """{arm: backbone directory}: the SimCLR learning run and the same ViT shape at random init."""
    import torch

    from sslkit.cli import main
    from sslkit.nn.export import save_backbone
    from sslkit.nn.vit import ViT, ViTConfig

    run = tmp / "simclr"
    assert main(learning_run_args("simclr", run, seed, {"monitor.baselines": "false"})) == 0
    meta = json.loads((run / "backbone.json").read_text())
    torch.manual_seed(seed)
    random_vit = ViT(ViTConfig.from_dict(meta["config"]))
    return {"random": save_backbone(random_vit, tmp / "random", mean=meta["mean"], std=meta["std"]), "simclr": run}


def probe(backbone: Path, seed: int) -> float:
    from sslkit.eval.feature_cache import feature_set
    from sslkit.eval.linear import LinearProbeConfig, linear_probe

    train = feature_set(str(backbone), "digits", "train", "cls", cache_dir=False)
    test = feature_set(str(backbone), "digits", "test", "cls", cache_dir=False)
    result = linear_probe(train.features, train.labels, test.features, test.labels, LinearProbeConfig(seed=seed))
    return 100 * result.test_accuracy


def finetune(backbone: Path, seed: int) -> dict:
    from sslkit.eval.finetune import FinetuneConfig, finetune as run_finetune

    report = run_finetune(str(backbone), "digits", FinetuneConfig(**FINETUNE, seed=seed)).report
    return {"accuracy": 100 * report["results"]["test_accuracy"], "best_epoch": report["best_epoch"],
            "epochs_run": report["epochs_run"], "seconds": report["seconds"]}


def run_seed(seed: int) -> dict:
    import torch

    torch.set_num_threads(1)
    row: dict = {"seed": seed}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        arms = backbones(Path(tmp), seed)
        row["pretrain_s"] = time.perf_counter() - start
        for arm, path in arms.items():
            start = time.perf_counter()
            row[f"{arm}_probe"] = probe(path, seed)
            row[f"{arm}_probe_s"] = time.perf_counter() - start
            tuned = finetune(path, seed)
            row[f"{arm}_finetune"] = tuned.pop("accuracy")
            row.update({f"{arm}_finetune_{k}": v for k, v in tuned.items()})
            row[f"{arm}_difference"] = row[f"{arm}_finetune"] - row[f"{arm}_probe"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "finetune_vs_probe.json")
    args = parser.parse_args()
    from claims import paired

    from sslkit.atomic_files import write_json_atomic
    from sslkit.json_values import json_ready

    seeds = [int(s) for s in args.seeds.split(",")]
    load_before, started = os.getloadavg(), time.perf_counter()
    rows = []
    for seed in seeds:
        rows.append(run_seed(seed))
        print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in rows[-1].items()}), flush=True)
    summary = {}
    for arm in ("random", "simclr"):
        diffs = [r[f"{arm}_difference"] for r in rows]
        summary[arm] = {"probe_mean": statistics.fmean(r[f"{arm}_probe"] for r in rows),
                        "finetune_mean": statistics.fmean(r[f"{arm}_finetune"] for r in rows),
                        "difference_mean": statistics.fmean(diffs), "difference_ci95": paired(diffs, 0.0, None)["ci95"]}
    record = {"settings": {"data": "digits (1437 train / 360 test, 16 px)",
                           "backbone": "2-block width-64 ViT, patch 4 (tests/learning_budgets.py)",
                           "simclr": "tests/learning_budgets.py simclr run (150 steps, batch 64)",
                           "probe": "sslkit.eval.linear.linear_probe defaults over class-token features",
                           "finetune": FINETUNE, "seeds": seeds, "threads": 1,
                           "command": "OMP_NUM_THREADS=1 python benchmarks/finetune_vs_probe.py " + " ".join(sys.argv[1:]),
                           "date": time.strftime("%Y-%m-%d %H:%M")},
              "load_before": list(load_before), "load_after": list(os.getloadavg()),
              "wall_seconds": time.perf_counter() - started, "summary": summary, "rows": rows}
    write_json_atomic(args.json, json_ready(record))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
