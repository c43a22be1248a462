"""Joint embedding vs reconstruction as the irrelevant feature grows (issue 11, item 3).

The theory (arXiv 2505.12477; ``sslkit.theory.linear``): with additive irrelevant features of large
magnitude, joint-embedding SSL needs less augmentation alignment than reconstruction to keep the
signal, so at large magnitudes JE should keep the relevant features while reconstruction spends its
capacity on the irrelevant ones.

Here the signal is the shape class of ``shapes`` on a plain background, and the irrelevant feature
is i.i.d. Gaussian pixel noise of growing std added to the background only
(``data.background_noise``; the augmentations are not aligned with it: crops and colour jitter keep it).
For each noise level a joint-embedding method (SimCLR by default, ``--je dinov2`` for DINOv2) and MAE
are pretrained with their tiny recipes for the same number of epochs, then a linear probe (the
evaluation suite's LR × weight-decay sweep, selected on a validation split) reads the shape class
from the frozen CLS features of the clean-label train/test splits *at the same noise level*.

Usage::

    python benchmarks/je_vs_recon.py [--levels 0,0.1,0.2,0.4] [--epochs 3] [--je simclr] [--quick]

Writes ``benchmarks/figures/je_vs_recon.png`` and ``.json`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pretrain_and_probe(method: str, recipe: str, level: float, epochs: float, workdir: Path, quick: bool) -> dict:
    from sslkit.config import load_config
    from sslkit.engine.run import pretrain
    from sslkit.eval.linear import linear_probe
    from sslkit.eval.models import compute_features

    overrides = ["data.background=plain", f"data.background_noise={level}", f"optim.epochs={epochs}",
                 "trainer.progress_bar=false", "monitor.knn_every_n_steps=0", "monitor.baselines=false",
                 "trainer.checkpoint_every_n_steps=0"]
    if quick:
        overrides += ["data.num_samples=512", "optim.iters_per_epoch=4"]
    cfg = load_config(str(ROOT / "recipes" / recipe), overrides)
    out = workdir / f"{method}-{level:g}"
    start = time.perf_counter()
    pretrain(cfg, out, log=lambda *_: None)
    seconds = time.perf_counter() - start
    options = {"background": "plain", "background_noise": level}
    if quick:
        options["num_samples"] = 512
    xtr, ytr = compute_features(str(out), "shapes", "train", "cls", data_options=options, cache_dir=None)
    xte, yte = compute_features(str(out), "shapes", "test", "cls", data_options=options, cache_dir=None)
    probe = linear_probe(xtr, ytr, xte, yte)
    return {"method": method, "level": level, "linear_top1": probe.test_accuracy, "pretrain_seconds": seconds}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for method in sorted({r["method"] for r in rows}):
        pts = sorted((r["level"], 100 * r["linear_top1"]) for r in rows if r["method"] == method)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=method)
    ax.set_xlabel("background noise std (irrelevant-feature magnitude)")
    ax.set_ylabel("linear probe, shape class (%)")
    ax.set_title("joint embedding vs reconstruction on shapes")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=130)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="0,0.1,0.2,0.4")
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--je", default="simclr", choices=["simclr", "vicreg", "dinov2"])
    parser.add_argument("--quick", action="store_true", help="tiny data and steps: a smoke run of the script")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "figures" / "je_vs_recon"))
    args = parser.parse_args()
    levels = [float(v) for v in args.levels.split(",")]
    from sslkit.commands.pretrain import quiet_lightning

    quiet_lightning()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for level in levels:
            for method, recipe in ((args.je, f"{args.je}-tiny.yaml"), ("mae", "mae-tiny.yaml")):
                row = pretrain_and_probe(method, recipe, level, args.epochs, Path(tmp), args.quick)
                rows.append(row)
                print(f"noise {level:<5g} {method:<7} linear {100 * row['linear_top1']:5.1f} %  "
                      f"({row['pretrain_seconds']:.0f} s)", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"epochs": args.epochs, "rows": rows}, indent=2))
    plot(rows, out.with_suffix(".png"))
    print("\n| noise std | " + " | ".join(f"{args.je} %" if m == args.je else "mae %" for m in (args.je, "mae")) + " |")
    print("|---:|---:|---:|")
    for level in levels:
        cells = [next(100 * r["linear_top1"] for r in rows if r["level"] == level and r["method"] == m)
                 for m in (args.je, "mae")]
        print(f"| {level:g} | {cells[0]:.1f} | {cells[1]:.1f} |")


if __name__ == "__main__":
    main()
