"""Joint embedding vs reconstruction as the irrelevant feature grows (issue 11, item 3).

The theory (arXiv 2505.12477; ``sslkit.theory.linear``, shared/specs/linear-ssl-theory.md): with
irrelevant features of large magnitude, joint-embedding SSL needs less augmentation alignment than
reconstruction to keep the signal, so at large magnitudes JE should keep the relevant features while
reconstruction spends its capacity on the irrelevant ones; at small magnitudes the order may reverse.

The signal is the class of a built-in dataset; the irrelevant feature is i.i.d. Gaussian pixel noise
of growing std added to the background only (``data.background_noise``), fixed per image (it is part
of the data, not an augmentation). The augmentations are each method's own (SimCLR: crops, colour
jitter, blur, which attenuate the noise; MAE: crops and flips). For each noise level and seed a
joint-embedding method (SimCLR by default, ``--je dinov2`` or ``vicreg``) and MAE are pretrained with
their tiny recipes for the same number of epochs, then a linear probe (the evaluation suite's
LR × weight-decay sweep, selected on a validation split) reads the class from the frozen CLS
features of the train/test splits *at the same noise level*.

Data: ``digits`` by default. The issue asks for ``shapes`` (``--data shapes``, plain background), but
on ``shapes`` no method learns the shape class in a CPU budget (even a supervised ViT of this size is
at 15 % after 300 steps, benchmarks/RESULTS.md), so both curves would sit at chance.

Runs are independent; ``--workers 2`` runs two at a time, one thread each.

Usage::

    python benchmarks/je_vs_recon.py [--data digits] [--levels 0,0.25,0.5,1] [--epochs 12]
                                     [--seeds 0,1] [--je simclr] [--workers 2] [--quick]

Writes ``benchmarks/figures/je_vs_recon.png`` and ``.json`` and prints the table (mean over seeds,
with each seed's value). ``--merge A.json B.json`` pools the rows of earlier runs (e.g. more seeds at
some levels) into one table and plot without training.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def data_options(data: str, level: float, quick: bool) -> dict:
    """The built-in dataset's options at one noise level, shared by pretraining and the probe."""
    options = {"background_noise": level}
    if data == "shapes":
        options["background"] = "plain"
        if quick:
            options["num_samples"] = 512
    return options


def pretrain_and_probe(job: dict) -> dict:
    """One (method, level, seed) run: pretrain in a temporary directory, then the linear probe."""
    import torch

    torch.set_num_threads(job["threads"])
    from sslkit.commands.pretrain import quiet_lightning
    from sslkit.config import load_config
    from sslkit.engine.run import pretrain
    from sslkit.eval.linear import linear_probe
    from sslkit.eval.models import compute_features

    quiet_lightning()
    options = data_options(job["data"], job["level"], job["quick"])
    overrides = [f"data.source={job['data']}", f"optim.epochs={job['epochs']}", f"trainer.seed={job['seed']}",
                 "trainer.progress_bar=false", "monitor.knn_every_n_steps=0", "monitor.baselines=false",
                 "trainer.checkpoint_every_n_steps=0"]
    overrides += [f"data.{key}={value}" for key, value in options.items()]
    if job["quick"]:
        overrides += ["optim.iters_per_epoch=4"]
    cfg = load_config(str(ROOT / "recipes" / job["recipe"]), overrides)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        start = time.perf_counter()
        pretrain(cfg, out, log=lambda *_: None)
        seconds = time.perf_counter() - start
        xtr, ytr = compute_features(str(out), job["data"], "train", "cls", data_options=options, cache_dir=None)
        xte, yte = compute_features(str(out), job["data"], "test", "cls", data_options=options, cache_dir=None)
    probe = linear_probe(xtr, ytr, xte, yte)
    return {"method": job["method"], "level": job["level"], "seed": job["seed"],
            "linear_top1": probe.test_accuracy, "pretrain_seconds": seconds}


def pixel_probe(data: str, level: float, quick: bool) -> float:
    """Linear-probe accuracy (%) on the raw pixels at one noise level: how much class signal the data keeps."""
    import torch

    from sslkit.data.builtin import load_builtin
    from sslkit.eval.linear import linear_probe

    options = data_options(data, level, quick)
    splits = []
    for split in ("train", "test"):
        dataset = load_builtin(data, split, **options)
        items = [dataset[i] for i in range(len(dataset))]
        splits += [torch.stack([it["image"].flatten() for it in items]), torch.tensor([it["label"] for it in items])]
    return 100 * linear_probe(*splits).test_accuracy


def mean_accuracy(rows: list[dict], method: str, level: float) -> tuple[float, list[float]]:
    """Mean linear accuracy (%) over seeds and the per-seed values, in seed order."""
    values = [100 * r["linear_top1"] for r in sorted(rows, key=lambda r: r["seed"])
              if r["method"] == method and r["level"] == level]
    return statistics.fmean(values), values


def plot(rows: list[dict], data: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    levels = sorted({r["level"] for r in rows})
    for method in sorted({r["method"] for r in rows}):
        means = [mean_accuracy(rows, method, level)[0] for level in levels]
        line, = ax.plot(levels, means, marker="o", label=method)
        for r in rows:
            if r["method"] == method:
                ax.scatter(r["level"], 100 * r["linear_top1"], color=line.get_color(), alpha=0.35, s=12)
    ax.set_xlabel("background noise std (irrelevant-feature magnitude)")
    ax.set_ylabel(f"linear probe, {data} class (%)")
    ax.set_title(f"joint embedding vs reconstruction on {data}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=130)


def report(rows: list[dict], data: str, je: str, epochs: float, quick: bool, out: Path) -> None:
    """Write ``out``.json and .png and print the table (mean over seeds, each seed's value, JE − MAE)."""
    levels = sorted({r["level"] for r in rows})
    seeds = sorted({r["seed"] for r in rows})
    pixels = {level: pixel_probe(data, level, quick) for level in levels}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(
        {"data": data, "epochs": epochs, "je": je, "seeds": seeds, "rows": rows,
         "pixels_linear_top1": {str(level): value / 100 for level, value in pixels.items()}}, indent=2))
    plot(rows, data, out.with_suffix(".png"))
    print(f"\n| noise std | raw pixels % | {je} % (per seed) | mae % (per seed) | {je} − mae (per seed) |")
    print("|---:|---:|---:|---:|---:|")
    for level in levels:
        (je_mean, je_seeds), (mae_mean, mae_seeds) = (mean_accuracy(rows, m, level) for m in (je, "mae"))
        cells = [f"{mean:.1f} ({' / '.join(f'{v:.1f}' for v in per_seed)})"
                 for mean, per_seed in ((je_mean, je_seeds), (mae_mean, mae_seeds))]
        gaps = " / ".join(f"{a - b:+.1f}" for a, b in zip(je_seeds, mae_seeds))
        print(f"| {level:g} | {pixels[level]:.1f} | {cells[0]} | {cells[1]} | {je_mean - mae_mean:+.1f} ({gaps}) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="digits", choices=["digits", "shapes"])
    parser.add_argument("--levels", default="0,0.25,0.5,1")
    parser.add_argument("--epochs", type=float, default=12)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--je", default="simclr", choices=["simclr", "vicreg", "dinov2"])
    parser.add_argument("--workers", type=int, default=1, help="runs at a time, one thread each when > 1")
    parser.add_argument("--quick", action="store_true", help="tiny data and steps: a smoke run of the script")
    parser.add_argument("--merge", nargs="+", metavar="JSON",
                        help="train nothing: pool the rows of earlier runs' .json files (same data, JE method "
                             "and epochs) and write the combined table and plot to --out")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "figures" / "je_vs_recon"))
    args = parser.parse_args()
    if args.merge:
        runs = [json.loads(Path(path).read_text()) for path in args.merge]
        for key in ("data", "je", "epochs"):
            values = {run[key] for run in runs}
            if len(values) > 1:
                raise SystemExit(f"--merge: the files disagree on {key!r} ({sorted(map(str, values))}); "
                                 "pool only runs of one setting.")
        rows = [row for run in runs for row in run["rows"]]
        report(rows, runs[0]["data"], runs[0]["je"], runs[0]["epochs"], args.quick, Path(args.out))
        return
    levels = [float(v) for v in args.levels.split(",")]
    seeds = [int(v) for v in args.seeds.split(",")]
    import torch

    threads = 1 if args.workers > 1 else torch.get_num_threads()
    jobs = [{"method": method, "recipe": f"{method}-tiny.yaml", "level": level, "seed": seed, "data": args.data,
             "epochs": args.epochs, "quick": args.quick, "threads": threads}
            for seed in seeds for level in levels for method in (args.je, "mae")]
    rows = []
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for row in pool.map(pretrain_and_probe, jobs):
            rows.append(row)
            print(f"noise {row['level']:<5g} seed {row['seed']} {row['method']:<7} linear "
                  f"{100 * row['linear_top1']:5.1f} %  ({row['pretrain_seconds']:.0f} s)", flush=True)
    report(rows, args.data, args.je, args.epochs, args.quick, Path(args.out))


if __name__ == "__main__":
    main()
