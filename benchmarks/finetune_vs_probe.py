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
finetune − probe with a 95 % t interval, per backbone.

Segmentation part (``--parts segment``): the foreground masks of the built-in ``shapes`` (RGB, 32 px,
``SHAPES_SAMPLES`` training images, the fixed 1000-image test split) with the same ViT shape at random init
(3 channels): the frozen linear segmentation probe of ``sslkit evaluate`` (``sslkit.eval.segmentation``)
against ``sslkit finetune --task segment`` with the linear and the multi-level head; mIoU on the test split.

Writes ``benchmarks/results/finetune_vs_probe.json`` (a part run alone keeps the other part's record).

    OMP_NUM_THREADS=1 python benchmarks/finetune_vs_probe.py --seeds 0,1,2,3,4 --parts classify,segment
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


SHAPES_SAMPLES = 1000
SEGMENT = {"task": "segment", "epochs": 10, "batch_size": 32, "lr": 2e-3, "weight_decay": 0.05, "layer_decay": 0.65,
           "warmup_epochs": 1.0, "patience": 5, "crop_min_scale": 0.5, "hflip": 0.5, "levels": 2,
           "num_samples": SHAPES_SAMPLES}


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


def segmentation_seed(seed: int) -> dict:
    """mIoU (%) on the shapes test masks: frozen probe, fine-tuned linear head, fine-tuned multi-level head."""
    import torch

    from sslkit.eval.eval_data import open_eval_data
    from sslkit.eval.feature_cache import feature_set
    from sslkit.eval.finetune import FinetuneConfig, finetune as run_finetune
    from sslkit.eval.segmentation import SegmentationConfig, load_masks, segmentation_probe
    from sslkit.nn.export import save_backbone
    from sslkit.nn.vit import ViT, ViTConfig

    torch.set_num_threads(1)
    row: dict = {"seed": seed}
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(seed)
        vit = ViT(ViTConfig(img_size=32, patch_size=4, in_chans=3, embed_dim=64, depth=2, num_heads=2,
                            layerscale_init=None))
        data = open_eval_data("shapes", 32, {"num_samples": SHAPES_SAMPLES})
        path = save_backbone(vit, Path(tmp) / "random", mean=list(data.mean), std=list(data.std))
        start = time.perf_counter()
        train, test = (feature_set(str(path), data, split, "patch", cache_dir=False) for split in ("train", "test"))
        probe = segmentation_probe(train.features, load_masks(data.splits["train"], 32), test.features,
                                   load_masks(data.splits["test"], 32), num_classes=2,
                                   config=SegmentationConfig(seed=seed))
        row["probe"], row["probe_s"] = 100 * probe.miou, time.perf_counter() - start
        for head in ("linear", "multilevel"):
            report = run_finetune(str(path), "shapes", FinetuneConfig(**SEGMENT, head=head, seed=seed)).report
            row[f"finetune_{head}"] = 100 * report["results"]["miou"]
            row[f"finetune_{head}_best_epoch"] = report["best_epoch"]
            row[f"finetune_{head}_s"] = report["seconds"]
            row[f"{head}_difference"] = row[f"finetune_{head}"] - row["probe"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--parts", default="classify,segment", help="classify, segment or both")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "finetune_vs_probe.json")
    args = parser.parse_args()
    from claims import paired

    from sslkit.atomic_files import write_json_atomic
    from sslkit.json_values import json_ready

    seeds = [int(s) for s in args.seeds.split(",")]
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    record = json.loads(args.json.read_text()) if args.json.exists() else {}
    if "classify" in parts:
        record.update(classification_part(seeds, paired))
    if "segment" in parts:
        record["segmentation"] = segmentation_part(seeds, paired)
    write_json_atomic(args.json, json_ready(record))


def _timed(seeds: list[int], run) -> tuple[list[dict], dict]:
    load_before, started = os.getloadavg(), time.perf_counter()
    rows = []
    for seed in seeds:
        rows.append(run(seed))
        print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in rows[-1].items()}), flush=True)
    return rows, {"load_before": list(load_before), "load_after": list(os.getloadavg()),
                  "wall_seconds": time.perf_counter() - started, "date": time.strftime("%Y-%m-%d %H:%M")}


def classification_part(seeds: list[int], paired) -> dict:
    rows, timing = _timed(seeds, run_seed)
    summary = {}
    for arm in ("random", "simclr"):
        diffs = [r[f"{arm}_difference"] for r in rows]
        summary[arm] = {"probe_mean": statistics.fmean(r[f"{arm}_probe"] for r in rows),
                        "finetune_mean": statistics.fmean(r[f"{arm}_finetune"] for r in rows),
                        "difference_mean": statistics.fmean(diffs), "difference_ci95": paired(diffs, 0.0, None)["ci95"]}
    print(json.dumps(summary, indent=2))
    return {"settings": {"data": "digits (1437 train / 360 test, 16 px)",
                         "backbone": "2-block width-64 ViT, patch 4 (tests/learning_budgets.py)",
                         "simclr": "tests/learning_budgets.py simclr run (150 steps, batch 64)",
                         "probe": "sslkit.eval.linear.linear_probe defaults over class-token features",
                         "finetune": FINETUNE, "seeds": seeds, "threads": 1,
                         "command": "OMP_NUM_THREADS=1 python benchmarks/finetune_vs_probe.py " + " ".join(sys.argv[1:])},
            **timing, "summary": summary, "rows": rows}


def segmentation_part(seeds: list[int], paired) -> dict:
    rows, timing = _timed(seeds, segmentation_seed)
    summary = {"probe_mean": statistics.fmean(r["probe"] for r in rows)}
    for head in ("linear", "multilevel"):
        diffs = [r[f"{head}_difference"] for r in rows]
        summary[head] = {"finetune_mean": statistics.fmean(r[f"finetune_{head}"] for r in rows),
                         "difference_mean": statistics.fmean(diffs), "difference_ci95": paired(diffs, 0.0, None)["ci95"]}
    print(json.dumps(summary, indent=2))
    return {"settings": {"data": f"shapes foreground masks ({SHAPES_SAMPLES} train / 1000 test, RGB 32 px)",
                         "backbone": "2-block width-64 ViT, patch 4, 3 channels, random init (torch.manual_seed(seed))",
                         "probe": "sslkit.eval.segmentation.segmentation_probe defaults (30 epochs, AdamW 1e-2)",
                         "finetune": SEGMENT, "seeds": seeds, "threads": 1,
                         "command": "OMP_NUM_THREADS=1 python benchmarks/finetune_vs_probe.py " + " ".join(sys.argv[1:])},
            **timing, "summary": summary, "rows": rows}


if __name__ == "__main__":
    main()
