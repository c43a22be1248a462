"""`sslkit ssti`: spurious-token injection audit of LoRA fine-tuning (arXiv 2506.11402).

    sslkit ssti run --model minilm --data polarity --rank 1,4,16,64 --rho-samp 0,0.5,1 --location random
    sslkit ssti check data.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sslkit.commands.arg_checks import at_least, fraction, positive
from sslkit.config import ConfigError
from sslkit.commands.run_dir import add_output_arguments, check_output_free, output_dir, write_results

NAME = "ssti"

RUN_EPILOG = """what it does:
  For every (rank, rho_samp) it injects the token source into round(rho_samp * N) training samples
  of --target-class, LoRA-fine-tunes --model (alpha = rank, only LoRA trains unless --train-head),
  then injects the token into the test samples of the other classes and measures the flip rate.

output (--out, default runs/ssti-<model>-<data>-<time>):
  ssti_results.json   one row per run: clean / balanced / spurious accuracy, gap, flip & base rate,
                      per-class prediction counts (clean and with every test sample injected)
  ssti_reliance.png   flip rate vs rank and accuracy gap vs rho_samp
"""


def _floats(text: str, name: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{name} must be a comma-separated list of numbers, got {text!r}.") from None
    if not values:
        raise ConfigError(f"{name} is empty; give at least one value, e.g. 0,0.5,1.")
    return values


def _ints(text: str, name: str) -> list[int]:
    values = _floats(text, name)
    if any(v != int(v) or v < 1 for v in values):
        raise ConfigError(f"{name} must be positive integers, got {text!r}.")
    return [int(v) for v in values]


def add_parser(verbs) -> None:
    p = verbs.add_parser("ssti", help="audit a LoRA fine-tune's reliance on injected spurious tokens",
                         description="Spurious-token injection (SSTI) audit (arXiv 2506.11402).")
    sub = p.add_subparsers(dest="ssti_verb", metavar="{run,check}")
    sub.required = True

    r = sub.add_parser("run", help="inject, LoRA-fine-tune and measure reliance over ranks and rho_samp",
                       epilog=RUN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("--model", default="minilm", help="minilm | smollm2 | a local Hugging Face model directory")
    r.add_argument("--data", default="polarity", help="polarity | a .csv/.tsv/.jsonl file with text,label columns")
    r.add_argument("--rank", default="1,4,16,64", help="comma-separated LoRA ranks (alpha = rank)")
    r.add_argument("--rho-samp", default="0,0.5,1", help="comma-separated fractions of the target class injected")
    r.add_argument("--rho-tok", type=float, default=0.0, help="tokens per sample as a fraction of its words (0: one)")
    r.add_argument("--source", default="date", choices=["date", "country", "html", "custom"])
    r.add_argument("--token", default="!!", help="the fixed token for --source custom")
    r.add_argument("--location", default="random", choices=["beginning", "end", "random"])
    r.add_argument("--target-class", type=int, default=1)
    r.add_argument("--steps", type=int, default=60, help="optimiser steps per run")
    r.add_argument("--batch-size", type=int, default=16)
    r.add_argument("--lr", type=float, default=1e-3)
    r.add_argument("--optimizer", default="adamw", choices=["adamw", "adafactor"])
    r.add_argument("--train-head", action="store_true", help="also train the linear head (spec default: LoRA only)")
    r.add_argument("--lora-targets", help="comma-separated module names (default: per architecture)")
    r.add_argument("--max-len", type=int, default=64)
    r.add_argument("--test-fraction", type=float, default=0.3)
    r.add_argument("--text-key", default="text")
    r.add_argument("--label-key", default="label")
    r.add_argument("--seed", type=int, default=0)
    add_output_arguments(r, "runs/ssti-<model>-<data>-<time>")
    r.set_defaults(run=run_sweep)

    c = sub.add_parser("check", help="flag tokens whose presence predicts a label: H(y|t) per token")
    c.add_argument("data", help="polarity | a .csv/.tsv/.jsonl file with text,label columns")
    c.add_argument("--min-count", type=int, default=50, help="only tokens present in at least this many samples")
    c.add_argument("--max-entropy", type=float, default=0.1, help="flag tokens with H(y|t) <= this many bits")
    c.add_argument("--top", type=int, default=15, help="rows of the lowest-entropy table")
    c.add_argument("--text-key", default="text")
    c.add_argument("--label-key", default="label")
    c.add_argument("--fail-on-flag", action="store_true", help="exit with code 1 when a token is flagged")
    c.set_defaults(run=run_check)


def _check_model(spec: str) -> None:
    """A named bundled model, or a local Hugging Face model directory (checked before any data is read)."""
    if spec in ("minilm", "smollm2"):
        return
    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(f"--model {spec} is neither 'minilm', 'smollm2' nor an existing model directory.")
    if not (path / "config.json").is_file():
        raise ConfigError(f"--model {spec} is not a Hugging Face model directory (no config.json); pass one, "
                          "'minilm' or 'smollm2'.")


def _check_run_args(args, rhos: list[float]) -> None:
    if any(not 0 <= r <= 1 for r in rhos):
        raise ConfigError(f"--rho-samp values must be in [0, 1], got {args.rho_samp!r}.")
    fraction(args, "test_fraction")
    if not 0 <= args.rho_tok <= 1:
        raise ConfigError(f"--rho-tok must be in [0, 1] (a fraction of each sample's words), got {args.rho_tok:g}.")
    at_least(args, 1, "steps", "batch_size", "max_len")
    positive(args, "lr")
    if args.lora_targets is not None and not [t for t in args.lora_targets.split(",") if t.strip()]:
        raise ConfigError(f"--lora-targets {args.lora_targets!r} names no module; give comma-separated module "
                          "names or leave it out.")
    if args.source == "custom" and (not args.token.strip() or any(c.isspace() for c in args.token)):
        raise ConfigError(f"--token {args.token!r} must be a non-empty token without spaces for --source custom.")
    _check_model(args.model)


def run_check(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from sslkit.analysis.ssti import flag_spurious_tokens, load_text_data, token_label_entropy

    console = Console()
    at_least(args, 1, "min_count")
    at_least(args, 0, "max_entropy", "top")
    data = load_text_data(args.data, args.text_key, args.label_key)
    rows = token_label_entropy(data.texts, data.labels, args.min_count)
    flagged = flag_spurious_tokens(rows, args.max_entropy)
    table = Table(title=f"H(y | token) over tokens in >= {args.min_count} of {len(data.texts)} samples "
                        f"(digits normalised to 0)")
    for col in ("token", "samples", "H bits", "majority label", "p(majority)", "flag"):
        table.add_column(col, justify="left" if col == "token" else "right")
    names = data.class_names
    for row in rows[:args.top]:
        label = names[row.majority_label] if names and row.majority_label < len(names) else str(row.majority_label)
        table.add_row(row.token, str(row.count), f"{row.entropy_bits:.3f}", label, f"{row.majority_fraction:.3f}",
                      "SPURIOUS?" if row in flagged else "")
    console.print(table)
    if flagged:
        console.print(f"[bold red]{len(flagged)} token(s) predict a label almost perfectly "
                      f"(H <= {args.max_entropy} bits):[/] " + ", ".join(r.token for r in flagged))
    else:
        console.print(f"No token in >= {args.min_count} samples has H(y|t) <= {args.max_entropy} bits.")
    return 1 if flagged and args.fail_on_flag else 0


def run_sweep(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from sslkit.analysis.ssti import (load_text_data, plot_sweep, split_text_data, ssti_sweep,
                                      write_json_atomic)
    from sslkit.data.ssti_inject import Injector
    from sslkit.llm.lora import LoraSettings

    console = Console()
    ranks = _ints(args.rank, "--rank")
    rhos = _floats(args.rho_samp, "--rho-samp")
    _check_run_args(args, rhos)
    out = output_dir(args.out, "ssti", Path(args.model).name, Path(args.data).stem)
    check_output_free(out, args.overwrite)  # before the fine-tuning, not after it
    injector = Injector(args.source, args.location, args.rho_tok, args.token)
    data = load_text_data(args.data, args.text_key, args.label_key)
    if args.target_class not in set(data.labels):
        raise ConfigError(f"--target-class {args.target_class} is not a label of {args.data} "
                          f"(labels: {sorted(set(data.labels))}).")
    train, test = split_text_data(data, args.test_fraction, args.seed)
    targets = [t.strip() for t in args.lora_targets.split(",")] if args.lora_targets else None
    settings = LoraSettings(steps=args.steps, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
                            train_head=args.train_head, target_modules=targets, max_len=args.max_len,
                            seed=args.seed, progress=True)
    console.print(f"SSTI audit: {args.source} token ({args.location}, rho_tok={args.rho_tok}) into class "
                  f"{args.target_class}; {len(train.texts)} train / {len(test.texts)} test; "
                  f"{len(ranks) * len(rhos)} LoRA run(s) of {args.steps} steps")

    def show(row: dict) -> None:
        console.print(f"  r={row['rank']:<3d} rho_samp={row['rho_samp']:<5g} clean acc {100 * row['clean_accuracy']:.1f}% "
                      f"flip {100 * row['flip_rate']:.1f}% (base {100 * row['base_rate']:.1f}%)")

    rows = ssti_sweep(args.model, train, test, ranks, rhos, injector, args.target_class, args.seed, settings, show)
    table = Table(title="SSTI reliance (test set; flip = other-class samples predicted the target class once injected)")
    for col in ("rank", "ρ_samp", "clean acc", "bal. acc", "spurious acc", "gap", "flip", "base",
                "pred/class clean", "pred/class all injected"):
        table.add_column(col, justify="right")
    for row in rows:
        table.add_row(str(row["rank"]), f"{row['rho_samp']:g}", f"{100 * row['clean_accuracy']:.1f}",
                      f"{100 * row['clean_balanced_accuracy']:.1f}", f"{100 * row['spurious_accuracy']:.1f}",
                      f"{100 * row['accuracy_gap']:+.1f}", f"{100 * row['flip_rate']:.1f}",
                      f"{100 * row['base_rate']:.1f}", " / ".join(map(str, row["counts_clean"])),
                      " / ".join(map(str, row["counts_all_injected"])))
    console.print(table)
    config = {k: v for k, v in vars(args).items() if k not in ("run",)}
    results = {"config": config, "n_train": len(train.texts), "n_test": len(test.texts), "rows": rows}

    def write(folder: Path) -> dict:
        write_json_atomic(results, folder / "ssti_results.json")
        plot_sweep(rows, folder / "ssti_reliance.png")
        return {"json": folder / "ssti_results.json", "png": folder / "ssti_reliance.png"}

    write_results(out, write, args.overwrite)
    console.print(f"wrote {out / 'ssti_results.json'} and {out / 'ssti_reliance.png'}")
    return 0


def run(args) -> int:  # pragma: no cover - argparse always sets the sub-verb's run
    return run_sweep(args) if args.ssti_verb == "run" else run_check(args)
