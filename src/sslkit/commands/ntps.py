"""`sslkit ntps`: Next Token Perception Score per layer of a causal LM, next to linear-probe accuracy."""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from sslkit.atomic_files import write_json_atomic, write_text_atomic
from sslkit.commands.run_dir import add_output_arguments, check_output_free, output_dir, write_results
from sslkit.json_values import json_ready

NAME = "ntps"

NTPS_EPILOG = """data (--data, one or more):
  polarity | newsgroups      built-in offline sets (gensim test corpora; 200 texts, 2 classes each)
  FILE.csv | FILE.jsonl      'text' and 'label' columns (labels: names or integers)

k (--k):
  default                    spec rule: k_U = #{eigenvalues > 1% of the largest} <= classes, k_V = k_U
  INT                        k_U = k_V = INT (must not exceed a layer's retained rank)
  FRACTION in (0, 1)         k_U = floor(f * r_U), k_V = floor(f * r_V)

output (--out, default runs/ntps-<model>-<time>):
  ntps.csv  report.json  ntps.png  (NTPS and held-out probe accuracy per layer)
"""


def add_parser(verbs) -> None:
    p = verbs.add_parser("ntps", help="Next Token Perception Score per layer of a causal LM",
                         description="NTPS (arXiv 2505.17169) per layer: how much of the label-predictive subspace "
                                     "of mean-pooled hidden states lies in the next-state-predictive subspace, with a "
                                     "held-out linear probe per layer and their Spearman correlation.",
                         epilog=NTPS_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2", help="'smollm2' (bundled, offline) or a local causal-LM directory")
    p.add_argument("--data", nargs="+", default=["polarity"], help="'polarity', 'newsgroups' or CSV/JSONL files")
    p.add_argument("--layers", default="all", help="'all' (default), '0,10,-1' or '5-12' (0 = embeddings)")
    p.add_argument("--k", default=None, help="directions: integer, or a fraction of the retained rank")
    p.add_argument("--order", choices=["descending", "ascending"], default="descending",
                   help="descending = top-k (spec); ascending reproduces the released reference code")
    p.add_argument("--max-tokens", type=int, default=256, help="truncate longer texts (default 256)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32", help="model weights")
    p.add_argument("--test-fraction", type=float, default=0.3, help="held-out share for the probes (default 0.3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lora", action="store_true", help="also LoRA-fine-tune a classifier and report its accuracy gain")
    p.add_argument("--lora-steps", type=int, default=100, help="LoRA optimiser steps (default 100)")
    p.add_argument("--allow-network", action="store_true", help="allow --model to be a hub name (downloads)")
    add_output_arguments(p, "runs/ntps-<model>-<time>")
    p.set_defaults(run=run)


def _parse_k(text: str | None):
    from sslkit.config import ConfigError

    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"--k {text!r} is not a number; give an integer (e.g. 8) or a fraction such as 0.1.") from None
    if value.is_integer() and value >= 1:
        return int(value)
    if 0 < value < 1:
        return value
    raise ConfigError(f"--k {text!r} must be an integer >= 1 or a fraction in (0, 1).")


def _check_args(args) -> None:
    """Numbers, the model path and the layer list, before any text is read or a model loads."""
    from sslkit.commands.arg_checks import at_least, fraction
    from sslkit.config import ConfigError

    if args.max_tokens < 2:
        raise ConfigError(f"--max-tokens {args.max_tokens} is too small; NTPS needs at least 2 tokens per text.")
    fraction(args, "test_fraction")
    at_least(args, 1, "batch_size", "lora_steps")
    _check_layers(args.layers, _hidden_states(args))


def _hidden_states(args) -> int | None:
    """Hidden states of a local --model (layers + 1, from its config.json), else None; the path is checked."""
    from sslkit.config import ConfigError
    from sslkit.llm.models import check_causal_lm_spec

    if args.model == "smollm2":
        return None
    try:
        local = check_causal_lm_spec(args.model, allow_network=args.allow_network)
    except ValueError as err:
        raise ConfigError(f"--model: {err}") from None
    if not local:
        return None
    try:
        config = json.loads((Path(args.model) / "config.json").read_text(encoding="utf-8"))
        return int(config["num_hidden_layers"]) + 1
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None  # left to the model loader, which names the problem


def _check_layers(layers: str, states: int | None) -> None:
    """--layers is a list or range of integers, and within the model's hidden states when they are known."""
    from sslkit.analysis.ntps import parse_layers
    from sslkit.config import ConfigError

    if layers in (None, "all"):
        return
    try:
        parse_layers(layers, states if states is not None else 1 << 30)  # unknown depth: the format only
    except ValueError as err:
        raise ConfigError(f"--layers {layers}: {err}") from None


def _csv(sweeps) -> str:
    lines = ["dataset,layer,ntps,ntps_whitened,k_u,k_v,rank_u,rank_v,probe_accuracy,probe_train_accuracy"]
    for sweep in sweeps:
        for r in sweep.rows:
            lines.append(f"{sweep.dataset},{r.layer},{r.ntps:.6f},{r.ntps_whitened:.6f},{r.k_u},{r.k_v},{r.rank_u},"
                         f"{r.rank_v},{r.probe_accuracy:.6f},{r.probe_train_accuracy:.6f}")
    return "\n".join(lines) + "\n"


def _fmt(value: float) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:+.3f}"


def run(args) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from sslkit.analysis.ntps import ntps_sweep, plot_sweeps, pooled_spearman
    from sslkit.config import ConfigError
    from sslkit.data.text import load_text_dataset
    from sslkit.llm.models import load_causal_lm

    console = Console()
    k = _parse_k(args.k)
    _check_args(args)
    model_name = Path(args.model).name if args.model != "smollm2" else "smollm2"
    out = output_dir(args.out, "ntps", model_name)
    check_output_free(out, args.overwrite)  # before the model loads, not after the sweep
    datasets = [load_text_dataset(source).require_classes(2) for source in args.data]
    started = time.perf_counter()
    try:
        model, tokenizer = load_causal_lm(args.model, dtype=args.dtype, allow_network=args.allow_network)
    except ValueError as err:
        raise ConfigError(f"--model: {err}") from None
    console.print(f"[bold]NTPS[/] {args.model} ({model.config.num_hidden_layers} layers, d={model.config.hidden_size}, "
                  f"{args.dtype}) loaded in {time.perf_counter() - started:.1f} s")

    sweeps = []
    for dataset in datasets:
        with Progress(TextColumn(f"{dataset.name}: hidden states"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console, transient=True) as progress:
            task = progress.add_task("texts", total=len(dataset))
            try:
                sweep = ntps_sweep((model, tokenizer), dataset, layers=args.layers, k_u=k,
                                   k_v=k if isinstance(k, float) else None, order=args.order,
                                   batch_size=args.batch_size, max_tokens=args.max_tokens,
                                   test_fraction=args.test_fraction, seed=args.seed, model_name=model_name,
                                   on_batch=lambda n: progress.advance(task, n))
            except ValueError as err:
                if type(err).__name__ in ("DataError", "ConfigError"):
                    raise
                raise ConfigError(f"{dataset.name}: {err}") from None
        if sweep.truncated:
            console.print(f"[yellow]{sweep.truncated} of {sweep.num_texts} texts in {dataset.name} are longer than "
                          f"{sweep.max_tokens} tokens and were truncated (--max-tokens).[/]")
        if args.lora:
            sweep.lora = _lora_gain(model_name if args.model == "smollm2" else args.model, dataset, sweep, args, console)
        sweeps.append(sweep)

        table = Table(title=f"NTPS per layer — {model_name} on {dataset.name} ({sweep.num_texts} texts, "
                            f"{sweep.num_classes} classes, order={args.order})")
        for column in ("layer", "NTPS", "NTPS_w", "k_U", "k_V", "r_U", "r_V", "probe acc (held-out)", "probe acc (train)"):
            table.add_column(column, justify="right")
        for r in sweep.rows:
            table.add_row(str(r.layer), f"{r.ntps:.3f}", f"{r.ntps_whitened:.3f}", str(r.k_u), str(r.k_v),
                          str(r.rank_u), str(r.rank_v), f"{r.probe_accuracy:.3f}", f"{r.probe_train_accuracy:.3f}")
        console.print(table)
        console.print(f"Spearman(NTPS, held-out probe accuracy) across layers: {_fmt(sweep.spearman)}")
        if sweep.lora:
            console.print(f"LoRA: accuracy {sweep.lora['accuracy']:.3f} vs last-layer probe "
                          f"{sweep.lora['probe_accuracy']:.3f}: gain {sweep.lora['gain']:+.3f} "
                          f"(last-layer NTPS {sweep.rows[-1].ntps:.3f})")
    pooled = pooled_spearman(sweeps) if len(sweeps) > 1 else sweeps[0].spearman
    if len(sweeps) > 1:
        console.print(f"Spearman(NTPS, held-out probe accuracy) across datasets and layers: {_fmt(pooled)}")
    report = {"model": args.model, "order": args.order, "k": args.k, "dtype": args.dtype,
              "max_tokens": args.max_tokens, "spearman_pooled": pooled, "sweeps": [s.to_dict() for s in sweeps],
              "seconds": time.perf_counter() - started}

    def write(folder: Path) -> dict:
        write_json_atomic(folder / "report.json", json_ready(report))
        write_text_atomic(folder / "ntps.csv", _csv(sweeps))
        plot_sweeps(sweeps, folder / "ntps.png")
        return {"json": folder / "report.json", "csv": folder / "ntps.csv", "png": folder / "ntps.png"}

    write_results(out, write, args.overwrite)
    console.print(f"wrote {out / 'ntps.csv'}, {out / 'report.json'}, {out / 'ntps.png'}")
    return 0


def _lora_gain(model_spec: str, dataset, sweep, args, console) -> dict:
    """LoRA classifier accuracy on the same held-out split minus the last-layer probe accuracy (the paper's
    "LoRA gain"). Uses the SSTI engineer's ``sslkit.llm.lora.finetune_lora_classifier``."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    from sslkit.llm.lora import LoraSettings, finetune_lora_classifier

    indices = np.arange(len(dataset))
    train, test = train_test_split(indices, test_size=args.test_fraction, random_state=args.seed,
                                   stratify=np.asarray(dataset.labels))
    # Spec anchor: r = α = 32, dropout 0.05, lr 1e-4, mean pooling. The head is trained too: with frozen random
    # head weights a short CPU run measures the adapter's luck, not the gain over a probe.
    settings = LoraSettings(rank=32, alpha=32, dropout=0.05, lr=1e-4, steps=args.lora_steps, batch_size=8,
                            max_len=min(args.max_tokens, 128), train_head=True, optimizer="adamw", seed=args.seed)
    started = time.perf_counter()
    with console.status(f"LoRA fine-tuning on {dataset.name} ({args.lora_steps} steps)"):
        clf = finetune_lora_classifier(model_spec, [dataset.texts[i] for i in train],
                                       [dataset.labels[i] for i in train], settings, num_classes=dataset.num_classes)
        predictions = clf.predict([dataset.texts[i] for i in test])
    accuracy = float((predictions == np.asarray([dataset.labels[i] for i in test])).mean())
    probe = sweep.rows[-1].probe_accuracy
    return {"accuracy": accuracy, "probe_accuracy": probe, "gain": accuracy - probe, "steps": args.lora_steps,
            "rank": 32, "seconds": time.perf_counter() - started}
