"""`sslkit finetune`: full fine-tuning of a backbone for classification or segmentation."""

from __future__ import annotations

import argparse
from pathlib import Path

from sslkit.commands.run_dir import add_output_arguments

NAME = "finetune"
CHECKPOINT_NAME = "best.safetensors"

FINETUNE_EPILOG = """models (as for `sslkit evaluate`):
  RUN_DIR | backbone.safetensors   an sslkit run or exported backbone
  timm:NAME[@/path/w.safetensors]  a timm architecture, random init (seed 0) or local weights
  vit:/path/weights                public ViT weights (timm, facebookresearch/dinov2 hub .pth, transformers folder)

data:
  digits | shapes | glyphs         built-in sets (shapes and glyphs also carry foreground masks for --task segment)
  FOLDER | LIST.csv                labelled images (class sub-folders / a 'label' column), seeded 90/10 test hold-out
  FOLDER with images/ + masks/     --task segment: masks are integer PNGs with the images' names (pixel = class)

defaults follow the DINOv2 fine-tuning of arXiv 2506.19552: AdamW, layer decay 0.65, mixup 0.8, cutmix 1.0,
label smoothing 0.1, warm-up + cosine; early stopping on the validation split restores the best epoch.

examples:
  sslkit finetune runs/tiny-digits --data digits --epochs 20 --out runs/ft-digits
  sslkit finetune runs/tiny-shapes --data shapes --task segment --head multilevel --out runs/ft-seg

output (--out, default runs/finetune-<data>-<time>; written as a whole at the end):
  report.json (test accuracy + macro-F1, or mIoU; best epoch; per-epoch curve)  best.safetensors
  (the best epoch's backbone + head)  learning_curve.png
"""


def add_parser(verbs) -> None:
    from sslkit.eval.finetune.config import HEADS, TASKS, FinetuneConfig

    d = FinetuneConfig()
    p = verbs.add_parser("finetune", help="fine-tune a backbone end to end: classification or segmentation",
                         description="Fine-tune a backbone and a task head end to end, with early stopping on a "
                                     "validation split; write report.json, the best checkpoint and the learning "
                                     "curve.", epilog=FINETUNE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="MODEL", help="run directory, backbone file, timm:NAME[@weights] or vit:PATH")
    p.add_argument("--data", required=True, help="'digits', 'shapes', 'glyphs', a folder or a .csv/.txt list")
    p.add_argument("--task", default=d.task, choices=TASKS, help=f"default {d.task}")
    add_output_arguments(p, "runs/finetune-<data>-<time>")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"at most this many epochs (default {d.epochs})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"default {d.batch_size}")
    p.add_argument("--lr", type=float, default=d.lr, help=f"peak learning rate of the head (default {d.lr:g})")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay, help=f"AdamW (default {d.weight_decay:g})")
    p.add_argument("--layer-decay", type=float, default=d.layer_decay,
                   help=f"block i learns at lr·decay^(depth+1-i), in (0, 1] (default {d.layer_decay:g})")
    p.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs, help=f"default {d.warmup_epochs:g}")
    p.add_argument("--mixup", type=float, default=d.mixup, help=f"mixup alpha, 0 = off (default {d.mixup:g})")
    p.add_argument("--cutmix", type=float, default=d.cutmix, help=f"cutmix alpha, 0 = off (default {d.cutmix:g})")
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing, help=f"default {d.label_smoothing:g}")
    p.add_argument("--patience", type=int, default=d.patience,
                   help=f"stop after this many epochs without a better validation score (default {d.patience})")
    p.add_argument("--val-fraction", type=float, default=d.val_fraction,
                   help=f"share of the training split held out for validation (default {d.val_fraction:g})")
    p.add_argument("--test-fraction", type=float, default=d.test_fraction,
                   help=f"test hold-out of an image+mask folder (default {d.test_fraction:g})")
    p.add_argument("--crop-min-scale", type=float, default=d.crop_min_scale,
                   help=f"smallest area of the random resized crop (default {d.crop_min_scale:g})")
    p.add_argument("--hflip", type=float, default=d.hflip, help=f"horizontal flip probability (default {d.hflip:g})")
    p.add_argument("--head", default=d.head, choices=HEADS,
                   help="segmentation head: linear (last block) or multilevel (last --levels blocks)")
    p.add_argument("--levels", type=int, default=d.levels, help=f"blocks of the multilevel head (default {d.levels})")
    p.add_argument("--image-size", type=int, help="input side (default: the model's training size, else 32 for "
                                                  "built-in data and 224 for folders)")
    p.add_argument("--num-samples", type=int, help="training images of the built-in 'shapes' / 'glyphs'")
    p.add_argument("--device", default=d.device, help=f"default {d.device}")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the splits, the head, augmentation and mixup")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def config_from_args(args):
    """FinetuneConfig from parsed arguments (kept separate so tests can check the mapping)."""
    from sslkit.eval.finetune.config import FinetuneConfig
    from sslkit.eval.report import check_device

    check_device(args.device)
    return FinetuneConfig(task=args.task, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                          weight_decay=args.weight_decay, layer_decay=args.layer_decay,
                          warmup_epochs=args.warmup_epochs, mixup=args.mixup, cutmix=args.cutmix,
                          label_smoothing=args.label_smoothing, patience=args.patience,
                          val_fraction=args.val_fraction, test_fraction=args.test_fraction,
                          crop_min_scale=args.crop_min_scale, hflip=args.hflip, head=args.head, levels=args.levels,
                          image_size=args.image_size, num_samples=args.num_samples, device=args.device,
                          seed=args.seed)


def run(args) -> int:
    from rich.console import Console

    from sslkit.commands.run_dir import check_output_free, output_dir, write_results
    from sslkit.eval.finetune import finetune
    from sslkit.eval.finetune.report import write_report

    config = config_from_args(args)
    console = Console()
    out = output_dir(args.out, "finetune", Path(args.data).name)
    check_output_free(out, args.overwrite)  # before the work, not after it
    console.print(f"[bold]sslkit finetune[/bold] {args.model} on {args.data} ({config.task}) → {out}")
    outcome = {}

    def train_and_write(folder: Path) -> dict:
        # The checkpoint is written (atomically) into the folder being built whenever validation improves;
        # the folder replaces --out only when the run has finished.
        ran = finetune(args.model, args.data, config, checkpoint=folder / CHECKPOINT_NAME,
                       progress=not args.no_progress, log=console.print)
        ran.report["checkpoint"] = str(out / CHECKPOINT_NAME)
        outcome["report"] = ran.report
        return {**write_report(ran.report, folder), "checkpoint": folder / CHECKPOINT_NAME}

    paths = write_results(out, train_and_write, args.overwrite)
    report = outcome["report"]
    results = report["results"]
    if config.task == "classify":
        summary = f"test accuracy {results['test_accuracy']:.2%}, macro-F1 {results['macro_f1']:.3f}"
    else:
        summary = f"test mIoU {results['miou']:.2%}, pixel accuracy {results['pixel_accuracy']:.2%}"
    console.print(f"{summary} (best epoch {report['best_epoch']} of {report['epochs_run']})")
    console.print(f"report: {paths['json']}, checkpoint: {paths['checkpoint']}, curve: {paths['curve']}")
    return 0
