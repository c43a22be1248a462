"""`sslkit align`: CKA / mutual kNN / CKNNA between models, and identifiability against the latents of 'shapes'."""

from __future__ import annotations

import argparse

from sslkit.commands.feature_options import add_feature_arguments
from sslkit.commands.run_dir import add_output_arguments, report_on_models

NAME = "align"

ALIGN_EPILOG = """models:
  RUN_DIR                          an sslkit run (backbone.safetensors + backbone.json from `sslkit pretrain`)
  timm:NAME                        any timm architecture, random init (seed 0); nothing is downloaded
  timm:NAME@/path/w.safetensors    a timm architecture with weights from a local safetensors file
  FILE.safetensors                 precomputed features of the --split rows in dataset order:
                                   'features' [+ 'labels'] or 'test.features' [+ 'test.labels'] ...

metrics (--metrics, comma-separated; default cka_linear,cka_rbf,mutual_knn,cknna):
  cka_linear cka_rbf cka_linear_unbiased mutual_knn cknna
  Every entry is also computed with one model's rows shuffled (the permutation null; --no-null skips it);
  mutual kNN of independent representations is k/(n−1).

identifiability (--data shapes only): held-out linear R² (ridge 1e-6, 80/20 split) and MCC (|Pearson|,
  Hungarian matching) of each model against shape (one-hot), color, scale, position, rotation (cos, sin)
  and all continuous factors together. One model is enough for it; the matrices need two or more.

examples:
  sslkit align runs/dino-a runs/dino-b timm:resnet18 --data shapes
  sslkit align runs/tiny-digits feats.safetensors --data digits --metrics cka_linear,mutual_knn --k 20

output (--out, default runs/align-<data>-<time>):
  align.json  cka_linear.png  cka_rbf.png  mutual_knn.png  cknna.png  identifiability.png
"""


def add_parser(verbs) -> None:
    p = verbs.add_parser("align", help="cross-model alignment (CKA, mutual kNN, CKNNA) and identifiability",
                         description="Compare the representations of several models on the same images, and on "
                                     "'shapes' how linearly each one encodes the true latent factors.",
                         epilog=ALIGN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", metavar="MODEL", help="run directory, timm:NAME[@weights], or features file")
    p.add_argument("--data", help="'shapes', 'digits', an image folder or a .csv/.txt path list")
    p.add_argument("--split", default="test", help="split whose images are compared (default test)")
    p.add_argument("--pooling", default="cls", choices=["cls", "mean", "cls+mean"], help="image features (default cls)")
    p.add_argument("--k", type=int, default=10, help="neighbours of mutual kNN and CKNNA (default 10)")
    p.add_argument("--metrics", default="cka_linear,cka_rbf,mutual_knn,cknna", help="comma-separated (see below)")
    p.add_argument("--samples", type=int, default=2000,
                   help="at most this many rows (seeded subset) for the matrices (default 2000)")
    p.add_argument("--no-null", action="store_true", help="skip the shuffled-rows permutation null")
    p.add_argument("--ridge", type=float, default=1e-6, help="ridge of the linear R² fit (default 1e-6, the spec's)")
    add_output_arguments(p, "runs/align-<data>-<time>")
    p.add_argument("--image-size", type=int, help="input side (default: the model's training size, else 32)")
    p.add_argument("--seed", type=int, default=0, help="seed of the subset, the null's permutation and the R² split")
    add_feature_arguments(p)
    p.set_defaults(run=run)


def settings_from_args(args):
    from sslkit.analysis.align import AlignSettings
    from sslkit.commands.arg_checks import at_least

    at_least(args, 1, "batch_size", "image_size")
    metrics = tuple(m.strip() for m in args.metrics.split(",") if m.strip())
    return AlignSettings(split=args.split, pooling=args.pooling, k=args.k, metrics=metrics, samples=args.samples,
                         permutation_null=not args.no_null, ridge=args.ridge, seed=args.seed,
                         image_size=args.image_size,
                         batch_size=args.batch_size, device=args.device,
                         cache_dir=False if args.no_cache else (args.cache_dir or True))


def print_tables(console, report: dict) -> None:
    from rich.table import Table

    from sslkit.analysis.align import ALIGNMENT_METRICS

    alignment = report.get("alignment")
    if alignment:
        names = alignment["names"]
        for metric, matrix in alignment["matrices"].items():
            title = f"{ALIGNMENT_METRICS[metric][1]} · n={alignment['n']}"
            if metric in ("mutual_knn", "cknna"):
                title += f", k={alignment['k']}"
            if metric == "mutual_knn":
                title += f" · random k/(n−1) = {alignment['random_baseline']['mutual_knn']:.3f}"
            table = Table(title=title)
            table.add_column("")
            for name in names:
                table.add_column(name, justify="right")
            null = (alignment.get("permutation_null") or {}).get(metric)
            for i, name in enumerate(names):
                cells = [f"{matrix[i][j]:.3f}" + (f" [dim](null {null[i][j]:.3f})[/dim]" if null and i != j else "")
                         for j in range(len(names))]
                table.add_row(name, *cells)
            console.print(table)
    ident = report.get("identifiability")
    if ident:
        where = f"{report['data']['source']}/{report['data']['split']}"
        titles = {"r2": f"linear R² on {where} (fit {ident['fit_size']} rows, held out {ident['test_size']})",
                  "mcc": f"MCC ({ident['mcc_method']}, matched) on {where}"}
        for key, title in titles.items():
            table = Table(title=title)
            table.add_column("model", no_wrap=True)
            for latent in ident["latents"]:
                table.add_column(latent, justify="right")
            for name in ident["names"]:
                table.add_row(name, *[f"{ident[key][name][c]:.2f}" for c in ident["latents"]])
            console.print(table)
    for note in report.get("notes", []):
        console.print(f"[yellow]note:[/yellow] {note}")


def run(args) -> int:
    from sslkit.analysis.align import align, write_align_report

    settings = settings_from_args(args)
    console, report, paths = report_on_models(
        args, "align", f"/{args.split}",
        lambda log: align(args.models, args.data, settings, progress=True, log=log), write_align_report)
    print_tables(console, report)
    pngs = [p.name for key, p in paths.items() if key != "json"]
    console.print(f"report: {paths['json']}" + (f" and {', '.join(pngs)}" if pngs else ""))
    return 0
