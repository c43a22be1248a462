"""`sslkit denoise train|apply`: a Neighbor2Neighbor denoiser trained on noisy images only (arXiv 2505.12191)."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "denoise"

DENOISE_EPILOG = """typical use (the denoised→noisy curriculum's first step):
  sslkit noise   --data shapes --kind gaussian --level 100 --out noisy
  sslkit denoise train --data noisy --out n2n --epochs 10
  sslkit denoise apply --model n2n --data noisy --out denoised

train writes MODEL/denoiser.safetensors + denoiser.json (config, history, PSNR on a sample when the
clean source is known from noise.json). apply writes a folder with the noisy copy's file names and
denoise.json (mean PSNR of the noisy input and of the output when the clean source is known).
The paper's schedule is 100 epochs, crops 256, batch 8, Adam 3e-4 halved at 20/40/60/80 %, γ = 2e/E;
on a CPU shrink --epochs (and --steps-per-epoch): the γ ramp and halvings follow E.
"""


def add_parser(verbs) -> None:
    p = verbs.add_parser("denoise", help="train / apply a Neighbor2Neighbor denoiser",
                         description="Train a Neighbor2Neighbor denoiser on noisy images only, or apply it.",
                         epilog=DENOISE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    t = actions.add_parser("train", help="train on noisy images (no clean image is used)")
    t.add_argument("--data", required=True, help="a noisy copy (from 'sslkit noise'), an image folder or path list")
    t.add_argument("--out", required=True, help="folder for denoiser.safetensors + denoiser.json")
    t.add_argument("--epochs", type=int, default=100, help="epochs E (default 100, the paper's)")
    t.add_argument("--steps-per-epoch", type=int, help="cap the steps of an epoch (default: one pass)")
    t.add_argument("--batch-size", type=int, default=8)
    t.add_argument("--crop", type=int, default=256, help="random crop side (capped by the image size)")
    t.add_argument("--width", type=int, default=48, help="UNet features (default 48)")
    t.add_argument("--depth", type=int, default=5, help="UNet poolings (default 5)")
    t.add_argument("--lr", type=float, default=3e-4)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--channels", default="auto", help="auto, 1 or 3")
    t.set_defaults(run=run_train)
    a = actions.add_parser("apply", help="write a denoised copy of a noisy dataset")
    a.add_argument("--model", required=True, help="folder written by 'sslkit denoise train'")
    a.add_argument("--data", required=True, help="the noisy copy (or image folder) to denoise")
    a.add_argument("--out", required=True, help="output folder (same file names as --data)")
    a.add_argument("--clean", help="aligned clean source for PSNR (default: the source in --data/noise.json)")
    a.add_argument("--channels", default="auto", help="auto, 1 or 3")
    a.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    a.set_defaults(run=run_apply)


def _open_noisy(data: str, channels):
    """(dataset, noise.json or None): a noisy copy in its source order, else any sslkit source."""
    from sslkit.data.noise import open_image_source, open_noisy_copy

    channels = channels if channels == "auto" else int(channels)
    if Path(data).is_dir():
        return open_noisy_copy(data, channels=channels)
    return open_image_source(data, channels=channels), None


def _psnr_sample(model, noisy, clean, count: int = 64) -> dict | None:
    from sslkit.analysis.denoise import denoise_images, mean_psnr

    if clean is None or len(clean) != len(noisy):
        return None
    step = max(1, len(noisy) // count)
    indices = list(range(0, len(noisy), step))[:count]
    ys = [noisy[i]["image"] for i in indices]
    xs = [clean[i]["image"] for i in indices]
    outs = [denoise_images(model, y) for y in ys]
    return {"images": len(indices), "psnr_noisy": mean_psnr(ys, xs), "psnr_denoised": mean_psnr(outs, xs)}


def run_train(args) -> int:
    from rich.console import Console

    from sslkit.analysis.denoise import DenoiserTrainConfig, save_denoiser, train_denoiser
    from sslkit.data.noise import open_clean_source

    console = Console()
    # The settings first: a bad value costs no data loading.
    config = DenoiserTrainConfig(width=args.width, depth=args.depth, epochs=args.epochs, batch_size=args.batch_size,
                                 crop=args.crop, lr=args.lr, steps_per_epoch=args.steps_per_epoch, seed=args.seed)
    noisy, meta = _open_noisy(args.data, args.channels)
    console.print(f"[bold]sslkit denoise train[/bold] on {len(noisy)} noisy images → {args.out}")
    result = train_denoiser(noisy, config, progress=True, log=console.print)
    sample = _psnr_sample(result.model, noisy, open_clean_source(meta))
    extra = {"train": vars(config), "history": result.history, "seconds": round(result.seconds, 2),
             "steps": result.steps, "data": str(args.data),
             "noise": {k: v for k, v in (meta or {}).items() if k in ("kind", "level", "seed")},
             "psnr_sample": sample}
    save_denoiser(result.model, args.out, extra=extra)
    if sample:
        console.print(f"PSNR on {sample['images']} images: noisy {sample['psnr_noisy']:.2f} dB → "
                      f"denoised {sample['psnr_denoised']:.2f} dB")
    console.print(f"done: {result.steps} steps in {result.seconds:.1f} s; denoiser in {Path(args.out)}")
    return 0


def run_apply(args) -> int:
    from rich.console import Console

    from sslkit.analysis.denoise import apply_denoiser, load_denoiser
    from sslkit.data.noise import open_clean_source, open_image_source

    console = Console()
    model = load_denoiser(args.model)
    noisy, meta = _open_noisy(args.data, args.channels)
    data_channels = noisy[0]["image"].shape[0] if len(noisy) else model.config.channels
    if data_channels != model.config.channels:
        from sslkit.data.errors import DataError

        raise DataError(f"The denoiser in '{args.model}' was trained on {model.config.channels}-channel images, but "
                        f"'{args.data}' has {data_channels} channel(s); pass --channels {model.config.channels} or "
                        "train a denoiser on this kind of image.")
    if args.clean:
        clean = open_image_source(args.clean)
    else:
        clean = open_clean_source(meta)
    if clean is not None and len(clean) != len(noisy):
        console.print(f"[yellow]clean source has {len(clean)} images, noisy data {len(noisy)}: PSNR not computed[/yellow]")
        clean = None
    files = (meta or {}).get("files")
    if files is None and hasattr(noisy, "paths") and getattr(noisy, "root", None) is not None:
        files = [Path(p).relative_to(noisy.root).with_suffix(".png").as_posix() for p in noisy.paths]
    copy = apply_denoiser(model, noisy, Path(args.out), files=files, clean=clean, noise_meta=meta,
                          overwrite=args.overwrite, progress=True, extra={"model": str(Path(args.model).resolve())})
    if copy.psnr_denoised is not None:
        console.print(f"mean PSNR vs clean: noisy {copy.psnr_noisy:.2f} dB → denoised {copy.psnr_denoised:.2f} dB")
    console.print(f"wrote {len(copy.files)} denoised images to {copy.directory}")
    return 0
