"""`sslkit flops`: total pretraining FLOPs of a recipe (optionally as a curriculum), without training."""

from __future__ import annotations

import argparse

NAME = "flops"

FLOPS_EPILOG = """counting:
  One DINOv2 step = 3 x forward of the student (backbone + heads) + 1 x forward of the teacher, at the
  global batch (optim.batch_size x trainer.devices x trainer.num_nodes). Models are built on the meta device
  and counted with torch.utils.flop_counter (1 multiply-add = 2 FLOPs); nothing is trained or downloaded.

examples:
  sslkit flops recipes/dinov2-vits16.yaml
  sslkit flops recipes/dinov2-vits16.yaml model.arch=vit_base --stages 0.75:112:48,0.25:224:96
"""


def add_parser(verbs) -> None:
    p = verbs.add_parser("flops", help="count the pretraining FLOPs of a recipe (no training)",
                         description="Print the pretraining FLOPs of a recipe per stage, in total and relative to "
                                     "the full-resolution recipe.",
                         epilog=FLOPS_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipe", metavar="RECIPE", help="YAML recipe, e.g. recipes/dinov2-vits16.yaml")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="recipe overrides")
    p.add_argument("--stages", help="curriculum as FRACTION:GLOBAL:LOCAL,... (e.g. 0.75:112:48,0.25:224:96); "
                                    "default: the recipe's curriculum, else one stage at its crops")
    p.add_argument("--steps", type=int, help="total steps (default optim.epochs x optim.iters_per_epoch)")
    p.add_argument("--in-chans", type=int, help="image channels (default data.channels, else 3)")
    p.add_argument("--json", dest="json_out", help="also write the numbers to this JSON file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file (default: refuse)")
    p.set_defaults(run=run)


def _si(flops: float) -> str:
    for unit, scale in (("EFLOP", 1e18), ("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)):
        if abs(flops) >= scale:
            return f"{flops / scale:.3f} {unit}"
    return f"{flops:.0f} FLOP"


def _check_args(args) -> None:
    """The numbers and the --json target, before the recipe is read."""
    from pathlib import Path

    from sslkit.commands.arg_checks import at_least
    from sslkit.config import ConfigError

    at_least(args, 1, "steps", "in_chans")
    if args.json_out:
        target = Path(args.json_out)
        if target.is_dir():
            raise ConfigError(f"--json {target} is a folder; give a file name such as {target / 'flops.json'}.")
        if target.exists() and not args.overwrite:
            raise FileExistsError(f"--json {target} already exists; choose another file or pass --overwrite to "
                                  "replace it.")


def run(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from sslkit.atomic_files import write_json_atomic
    from sslkit.config import load_config
    from sslkit.engine.flops import parse_stages, recipe_flops
    from sslkit.json_values import json_ready

    console = Console()
    _check_args(args)
    cfg = load_config(args.recipe, list(args.overrides))
    stages = parse_stages(args.stages) if args.stages else None
    in_chans = args.in_chans or (cfg.data.channels if isinstance(cfg.data.channels, int) else 3)
    result = recipe_flops(cfg, stages, in_chans=in_chans, total_steps=args.steps)

    table = Table(title=f"sslkit flops · {args.recipe} · {cfg.model.arch}/{cfg.model.patch_size} · "
                        f"batch {result['batch']} · {result['steps']} steps")
    for column in ("stage", "fraction", "crops g/l", "steps", "per step", "total", "share"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for i, row in enumerate(result["stages"], 1):
        share = row["flops"] / result["total"] if result["total"] else 0.0
        table.add_row(str(i), f"{row['fraction']:.3g}", f"{row['global_size']}/{row['local_size']}", str(row["steps"]),
                      _si(row["step_flops"]), _si(row["flops"]), f"{100 * share:.1f} %")
    table.add_row("total", "1", "", str(result["steps"]), "", _si(result["total"]), "100 %", style="bold")
    table.add_row("full resolution", "1", f"{cfg.crops.global_size}/{cfg.crops.local_size}", str(result["steps"]),
                  "", _si(result["full_resolution_total"]), "")
    console.print(table)
    console.print(f"ratio full resolution / this recipe: [bold]{result['ratio_to_full_resolution']:.3f}x[/bold] "
                  f"(backbones only: {result['backbone_ratio']:.3f}x)")
    if result["world_size_assumed"]:
        console.print(f"note: trainer.devices={cfg.trainer.devices!r} is resolved at run time; counted as 1 device "
                      "per node (set trainer.devices=N for the global batch).")
    if args.json_out:
        write_json_atomic(args.json_out, json_ready(result))
        console.print(f"numbers: {args.json_out}")
    return 0
