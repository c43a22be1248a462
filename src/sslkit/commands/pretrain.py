"""`sslkit pretrain`: pretrain a DINOv2-style ViT and export its teacher backbone."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from sslkit.commands.run_dir import data_name, output_dir

NAME = "pretrain"

PRETRAIN_EPILOG = """overrides:
  Any recipe key can be set as key.sub=value (values are YAML), e.g.
    optim.epochs=20 optim.batch_size=128 model.depth=6 crops.n_local=4 trainer.precision=bf16-mixed
  Unknown keys and bad values fail before training starts.

data:
  shapes | glyphs | digits   built-in offline datasets (labelled; a kNN monitor runs on their test split)
  DIR                        an image folder; one subfolder per class gives labels
  FILE.csv | FILE.txt        a list of image paths (CSV: 'path' and optional 'label' columns)
  'DIR/shard-{000000..000099}.tar'   tar shards written by 'sslkit data pack' (or DIR itself: every shard)
  .dcm files                 greyscale DICOM in folders, lists and shards (pip install 'sslkit[dicom]')

output (--out, default runs/<recipe>-<data>-<time>):
  config.yaml  metrics.jsonl  tensorboard/  checkpoints/  backbone.safetensors  backbone.json  report.json
  Load the exported teacher with: sslkit.load_backbone("RUN_DIR")
"""


def add_parser(verbs) -> None:
    from sslkit.config import recipe_keys_help

    p = verbs.add_parser("pretrain", help="pretrain a backbone (DINOv2, MAE, SimCLR, VICReg) and export it",
                         description="Pretrain a ViT (DINOv2, MAE, SimCLR or VICReg, as the recipe says) and export its backbone.",
                         epilog=PRETRAIN_EPILOG + "\nrecipe keys (section: key=default; a recipe file sets them, key.sub=value "
                                "overrides them):\n" + recipe_keys_help(),
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="'shapes', 'glyphs', 'digits', an image folder, a .csv/.txt path list or tar "
                                  "shards 'DIR/shard-{000000..000099}.tar' "
                                  "(default: the recipe's data.source)")
    p.add_argument("--recipe", help="YAML recipe, e.g. recipes/dinov2-tiny.yaml (default: the DINOv2 ViT-S/16 defaults)")
    p.add_argument("--out", help="run directory (default runs/<recipe>-<data>-<time>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint (its config.yaml is the base)")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="recipe overrides")
    p.set_defaults(run=run)


def _default_out(recipe: str | None, data: str) -> Path:
    stem = Path(recipe).stem if recipe else "dinov2"
    name = data_name(data) if data not in ("shapes", "glyphs", "digits") else data
    return output_dir(None, stem, name)


def _print_knn_table(console, result, k: int, cfg=None) -> None:
    from rich.table import Table

    arch = cfg.model.arch if cfg is not None else "backbone"
    from sslkit.methods.registry import method_spec

    # What was evaluated and exported: the method's spec says (DINOv2: its EMA teacher).
    evaluated = "EMA teacher" if cfg is None else f"{cfg.method} {method_spec(cfg.method).evaluated}"
    rows = [("raw pixels", "raw_pixels"), (f"random-init {arch} (same architecture)", "random_init"),
            ("model.init weights (where this run started)", "initial"),
            (f"pretrained {arch} ({evaluated})", "pretrained")]
    table = Table(title=f"kNN top-1 on the held-out split (k={k}, T=0.07, cosine)")
    table.add_column("features")
    table.add_column("accuracy %", justify="right")
    for label, key in rows:
        if key in result.knn:
            table.add_row(label, f"{100 * result.knn[key]:.1f}")
    console.print(table)


def _accelerated(overrides: list[str]) -> bool:
    """Whether the overrides ask for an accelerator (gpu, cuda, ...) rather than the CPU default."""
    for text in overrides:
        key, _, value = text.partition("=")
        if key.strip() == "trainer.accelerator":
            return value.strip().lower() not in ("cpu", "auto")
    return False


def quiet_lightning() -> None:
    """Keep the terminal for sslkit's own lines: Lightning's banners and tips say nothing a user needs."""
    import logging
    import warnings

    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric.utilities.rank_zero").setLevel(logging.WARNING)
    # "Received SIGTERM": sslkit says itself what it does with it (engine/interrupt.py).
    logging.getLogger("lightning.pytorch.trainer.connectors.signal_connector").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated.*")


def run(args) -> int:
    from rich.console import Console

    from sslkit.config import ConfigError, load_config, read_recipe
    from sslkit.engine.run import pretrain
    from sslkit.engine.slurm import requeued_restart

    quiet_lightning()
    console = Console()
    overrides = list(args.overrides)
    if args.data and any(o.split("=", 1)[0].strip() == "data.source" for o in overrides):
        raise ConfigError(f"--data {args.data} and a data.source=... override both name the data; keep one.")
    if args.resume:
        if not args.out:
            raise ConfigError("--resume needs --out RUN_DIR (the run to continue).")
        if args.recipe:
            raise ConfigError(f"--recipe {args.recipe} cannot be combined with --resume: a resumed run continues with "
                              f"its own config.yaml; to train another recipe, start a new run with another --out.")
        base = Path(args.out) / "config.yaml"
        if not base.is_file():
            raise ConfigError(f"Cannot resume: '{base}' does not exist (is --out a run directory?).")
        recipe = read_recipe(base)
        recipe.pop("resolved", None)  # facts written for people, not recipe keys
    else:
        recipe = args.recipe
        if recipe is None and not _accelerated(overrides):
            raise ConfigError("Without --recipe, pretrain trains the DINOv2 ViT-S/16 defaults (224 px, 10 crops, "
                              "125,000 steps): months on a CPU. Pass --recipe recipes/dinov2-tiny.yaml (minutes here), "
                              "or --recipe recipes/dinov2-vits16.yaml with trainer.accelerator=gpu to mean it.")
    if args.data:
        overrides.insert(0, f"data.source={args.data}")
    cfg = load_config(recipe, overrides)
    out = Path(args.out) if args.out else _default_out(args.recipe, cfg.data.source)
    console.print(f"[bold]sslkit pretrain[/bold] → {out}")
    resume = args.resume
    if not resume and requeued_restart(out):
        resume = True  # the same command line, run again by SLURM after a requeue (engine/slurm.py)
        console.print(f"requeued job {os.environ.get('SLURM_JOB_ID')} (restart "
                      f"{os.environ.get('SLURM_RESTART_COUNT')}): resuming the run in {out}")
    result = pretrain(cfg, out, resume=resume, log=console.print)
    if result.knn:
        _print_knn_table(console, result, cfg.monitor.knn_k, cfg)
    for name, values in result.heldout.items():  # the method's own objective on the held-out split
        console.print(f"{name.replace('_', ' ')} (the method's objective on the test split): pretrained "
                      f"{values['pretrained']:.3f}"
                      + (f", random-init {values['random_init']:.3f}" if "random_init" in values else ""))
    console.print(f"done: {result.steps} steps; backbone in {out / 'backbone.safetensors'}; "
                  f"report in {out / 'report.json'}")
    return 0
