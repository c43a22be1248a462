"""`sslkit noise`: write a reproducible noisy copy of a dataset (Gaussian / shot / speckle, arXiv 2505.12191)."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "noise"

NOISE_EPILOG = """levels (the paper's settings):
  gaussian  σ on the 0-255 scale: 50, 100, 255     y = clip(x + N(0, (σ/255)²))
  shot      λ: 1, 3, 10 (smaller is noisier)       y = clip(Poisson(λx)/λ)
  speckle   c: 0.4, 0.7, 1.0                       y = clip(x + x·N(0, c²))

output (--out DIR, written to a temporary folder then renamed):
  DIR/<class>/<index>.png (labelled built-ins), DIR/<relative path>.png (folders), DIR/noise.json
  Image i uses its own generator seeded by (--seed, i): rerunning gives identical files.
  Use DIR as --data of 'sslkit pretrain' or 'sslkit denoise train'.
"""


def add_parser(verbs) -> None:
    p = verbs.add_parser("noise", help="write a noisy copy of a dataset",
                         description="Write a noisy copy of a dataset (8-bit PNG, floored like the reference).",
                         epilog=NOISE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="'shapes', 'digits', an image folder or a .csv/.txt path list")
    p.add_argument("--kind", required=True, choices=["gaussian", "shot", "speckle"], help="noise model")
    p.add_argument("--level", required=True, type=float, help="σ (gaussian, 0-255 scale), λ (shot) or c (speckle)")
    p.add_argument("--out", required=True, help="output folder (must not exist unless --overwrite)")
    p.add_argument("--seed", type=int, default=42, help="noise seed (default 42, the reference's)")
    p.add_argument("--split", default="train", choices=["train", "test"], help="built-in datasets: which split")
    p.add_argument("--size", type=int, default=32, help="built-in datasets: image size (default 32)")
    p.add_argument("--num-samples", type=int, help="'shapes': number of images (default 4000 train / 1000 test)")
    p.add_argument("--channels", default="auto", help="auto, 1 or 3 (folders and digits)")
    p.add_argument("--format", default="png", choices=["png", "tiff"], help="png (8-bit) or tiff (16-bit, 1 channel)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    p.set_defaults(run=run)


def run(args) -> int:
    from rich.console import Console

    from sslkit.data.noise import open_image_source, source_record, write_noisy_copy

    console = Console()
    channels = args.channels if args.channels == "auto" else int(args.channels)
    dataset = open_image_source(args.data, args.split, args.size, args.num_samples, channels)
    source = source_record(args.data, args.split, args.size, args.num_samples, channels)
    copy = write_noisy_copy(dataset, Path(args.out), kind=args.kind, level=args.level, seed=args.seed,
                            fmt=args.format, source=source, overwrite=args.overwrite, progress=True)
    shown = f"{copy.psnr_noisy:.2f} dB" if copy.psnr_noisy is not None else "n/a"
    console.print(f"wrote {len(copy.files)} noisy images ({args.kind} {args.level:g}, seed {args.seed}) to {copy.directory}; "
                  f"mean PSNR vs clean {shown}")
    return 0
