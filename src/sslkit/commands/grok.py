"""`sslkit grok`: race weight decay against GrokAlign on a grokking setup (arXiv 2506.12284)."""

from __future__ import annotations

import argparse
import dataclasses

from sslkit.commands.run_dir import add_output_arguments, check_output_free, output_dir, write_results

NAME = "grok"

GROK_EPILOG = """setups:
  digits   sklearn digits upsampled to 28x28, 1024 train / 773 test, bias-free ReLU MLP
           784-196-196-10 with x8 init, AdamW + MSE on one-hot (the MNIST-1k recipe, offline)
  modadd   a + b mod p (default p = 31), 30 % of pairs train, one-layer transformer, full batch

regimes (--reg, one or more):
  none       no weight decay, no penalty
  wd         weight decay alone
  grokalign  the same weight decay + lam * Jacobian-norm penalty

examples:
  sslkit grok --setup digits --reg wd grokalign --seeds 3 --out runs/grok-digits
  sslkit grok --setup modadd --reg grokalign --lam 1e-3 --max-steps 5000

output (--out, default runs/grok-<setup>-<time>; an existing folder is refused unless --overwrite):
  grok.json (configs, curves, steps to the threshold, wall times) and grok.png
"""


def add_parser(verbs) -> None:
    p = verbs.add_parser("grok", help="grokking race: weight decay vs GrokAlign",
                         description="Train a grokking setup under one or more regularisers and report the "
                                     "steps each needs to reach a test-accuracy threshold.",
                         epilog=GROK_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--setup", choices=["digits", "modadd"], default="digits")
    p.add_argument("--reg", nargs="+", choices=["none", "wd", "grokalign"], default=["grokalign"],
                   help="regime(s) to train, each from every seed (default grokalign)")
    p.add_argument("--lam", type=float, help="GrokAlign penalty weight (default: the setup's)")
    p.add_argument("--wd", type=float, dest="weight_decay", help="AdamW weight decay (default: the setup's)")
    p.add_argument("--lr", type=float, help="AdamW learning rate (default: the setup's)")
    p.add_argument("--seeds", type=int, default=3, help="number of seeds, 0..N-1 (default 3)")
    p.add_argument("--max-steps", type=int, help="step cap per run (default: the setup's)")
    p.add_argument("--eval-every", type=int, help="steps between evaluations (default: the setup's)")
    p.add_argument("--threshold", type=float, help="test accuracy that counts as generalised (default: the setup's)")
    p.add_argument("--no-stop", action="store_true", help="keep training after the threshold until --max-steps")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--prime", type=int, default=31, help="modadd: the modulus p (default 31)")
    p.add_argument("--depth", type=int, default=2,
                   help="digits: hidden layers of the MLP (default 2; the spec's MNIST-1k net has 3)")
    add_output_arguments(p, "runs/grok-<setup>-<time>")
    p.set_defaults(run=run)


def _check_args(args) -> None:
    """The options as typed, named as typed, before any configuration is resolved or anything trains."""
    from sslkit.commands.arg_checks import at_least, positive
    from sslkit.config import ConfigError

    at_least(args, 1, "seeds", "max_steps", "eval_every", "depth")
    at_least(args, 0, "lam", ("weight_decay", "--wd"))
    at_least(args, 3, "prime")
    positive(args, "lr")
    if args.threshold is not None and not 0 < args.threshold <= 1:
        raise ConfigError(f"--threshold is a test accuracy in (0, 1], got {args.threshold:g}.")
    if args.lam is not None and "grokalign" not in args.reg:
        raise ConfigError(f"--lam {args.lam:g} weights the GrokAlign penalty, but --reg {' '.join(args.reg)} does "
                          "not include grokalign; add it or drop --lam.")


def run(args) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from sslkit.analysis.grok import GrokConfig, run_grok, write_grok_outputs

    _check_args(args)
    console = Console()
    cfg = GrokConfig(setup=args.setup, reg=args.reg[0], lam=args.lam, weight_decay=args.weight_decay, lr=args.lr,
                     max_steps=args.max_steps, eval_every=args.eval_every, threshold=args.threshold,
                     stop_at_threshold=not args.no_stop, dtype=args.dtype, prime=args.prime,
                     depth=args.depth)
    regimes = list(dict.fromkeys(args.reg))
    for reg in regimes:  # fail on a bad value before anything trains
        dataclasses.replace(cfg, reg=reg).resolved()
    out = output_dir(args.out, "grok", args.setup)
    check_output_free(out, args.overwrite)  # before the training, not after it
    max_steps = cfg.resolved().max_steps
    console.print(f"[bold]sslkit grok[/bold] {args.setup}: {', '.join(regimes)} x {args.seeds} seeds → {out}")

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[status]}"),
                  TimeElapsedColumn(), console=console, transient=False) as progress:
        bars: dict[tuple[str, int], int] = {}

        def on_eval(reg: str, seed: int, step: int, row: dict) -> None:
            key = (reg, seed)
            if key not in bars:
                bars[key] = progress.add_task(f"{reg:>9} seed {seed}", total=max_steps, status="")
            progress.update(bars[key], completed=step,
                            status=f"train {row['train_acc']:.3f} test {row['test_acc']:.3f} "
                                   f"align {row['train_alignment']:.3f}")

        report = run_grok(cfg, seeds=list(range(args.seeds)), regimes=regimes, on_eval=on_eval)
    paths = write_results(out, lambda folder: write_grok_outputs(report, folder), args.overwrite)

    table = Table(title=f"steps to test accuracy ≥ {report.threshold:g} ({report.setup})")
    for col in ("regime", "seed", "steps", "train fit (≥0.99)", "final test acc", "wall s"):
        table.add_column(col, justify="right" if col != "regime" else "left")
    for reg, runs in report.arms.items():
        for r in runs:
            table.add_row(reg, str(r.seed), str(r.steps_to_threshold) if r.steps_to_threshold is not None
                          else f">{r.steps_run}", str(r.steps_to_train_fit), f"{r.curves['test_acc'][-1]:.3f}",
                          f"{r.wall_time_s:.1f}")
    console.print(table)
    race = report.to_dict()["race"]
    if race:
        console.print(f"GrokAlign reached the threshold in ≤ {race['target_ratio']}x the weight-decay steps in "
                      f"{race['seeds_meeting_target']}/{race['seeds']} seeds.")
    console.print(f"wrote {paths['json']} and {paths['png']}")
    return 0
