"""`sslkit taskprior`: expected score and variance of models over a distribution of tasks (arXiv 2507.09871)."""

from __future__ import annotations

import argparse
import html
import json
import time
from pathlib import Path
from sslkit.commands.feature_options import add_feature_arguments
from sslkit.atomic_files import write_json_atomic, write_text_atomic
from sslkit.commands.run_dir import check_output_free, output_dir, write_results
from sslkit.json_values import json_ready

NAME = "taskprior"

EPILOG = """models (one or more, side by side):
  RUN_DIR                    an sslkit run directory (backbone.safetensors + backbone.json)
  timm:NAME[@weights]        a timm architecture (random init, seed 0, unless local .safetensors weights)
  FILE.safetensors           a features file: 'features' (n, D) [+ 'labels' (n,)], or '<split>.features'
  FILE.npy                   a plain (n, D) float array (it has no labels: use --prior models or a FILE,
                             or a .safetensors features file with 'labels')

prior (--prior):
  labels     K_ij = 1[y_i = y_j] (default when every sample has a label)
  models     the average of all the given models' kernels (default otherwise)
  FILE       a user kernel, (n, n): .npy, or .safetensors holding one tensor (or one named 'kernel')

closed forms: E[S] = Σ M σ(K/T), Var[S] = Σ M² σ(K/T)(1 − σ(K/T)) with M the model kernel and K the prior,
  computed blockwise (never an n×n matrix). By default both kernels are centred and normalised to unit
  Frobenius norm (the reference evaluation); --no-center uses them raw. The reference evaluation also uses
  --T 1e-5.
tasks: --tasks N binary (--classes q) tasks drawn from the prior with the Potts prefix sampler; a linear
  probe per task, all trained at once; mean, variance, quantiles and worst tasks of held-out accuracy.

output (--out, default runs/taskprior-<data>-<time>):
  taskprior.json  taskprior_accuracy_hist.png  taskprior_expectation_vs_accuracy.png
  If --out holds an evaluation report (sslkit evaluate), a 'taskprior' section is added to it; any other
  existing --out is refused unless --overwrite (then it is replaced as a whole).

example:
  sslkit taskprior runs/tiny-digits timm:resnet18 feats.safetensors --data digits --prior models --tasks 256
"""


def add_parser(verbs) -> None:
    p = verbs.add_parser("taskprior", help="score models over a prior of downstream tasks (closed form + probes)",
                         description="Expected score and variance of models over a distribution of downstream "
                                     "tasks (Task Priors, arXiv 2507.09871), with linear probes on sampled tasks.",
                         epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", metavar="MODEL", help="run directory, timm:NAME[@weights] or features file")
    p.add_argument("--data", help="'digits', 'shapes', an image folder or a .csv/.txt path list "
                                  "(not needed when every MODEL is a features file)")
    p.add_argument("--split", default="test", choices=["train", "test"], help="evaluation split (default test)")
    p.add_argument("--prior", help="'labels', 'models' or a kernel FILE (.npy / .safetensors); "
                                   "default: labels if every sample is labelled, else models")
    p.add_argument("--kernel", default="cosine", choices=["cosine", "linear", "rbf"],
                   help="model kernel (default cosine; rbf uses the median distance heuristic)")
    p.add_argument("--T", dest="temperatures", type=float, nargs="+", default=[1.0], metavar="T",
                   help="closed-form temperature(s) (default 1.0)")
    p.add_argument("--no-center", dest="center", action="store_false",
                   help="do not centre and Frobenius-normalise the kernels")
    p.add_argument("--tasks", type=int, default=256, help="sampled tasks to probe (default 256; 0: closed form only)")
    p.add_argument("--classes", type=int, default=2, help="classes per sampled task, q (default 2)")
    p.add_argument("--task-T", type=float, default=1.0, help="temperature of the task sampler (default 1.0)")
    p.add_argument("--epochs", type=int, default=30, help="probe epochs (default 30; at least 960 Adam steps)")
    p.add_argument("--median", default="exact", choices=["exact", "sampled"],
                   help="rbf bandwidth: exact median of all n² distances, or of 10⁶ sampled pairs")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled tasks and the probes")
    p.add_argument("--pooling", default="cls", choices=["cls", "mean", "cls+mean"], help="feature pooling (default cls)")
    p.add_argument("--image-size", type=int, help="input side (default: the model's training size)")
    add_feature_arguments(p)
    p.add_argument("--out", help="output directory (default runs/taskprior-<data>-<time>)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out folder (default: refuse, unless it holds an evaluation report)")
    p.set_defaults(run=run)


# --------------------------------------------------------------------------- inputs


def _model_name(spec: str, taken: set) -> str:
    if spec.startswith("timm:"):
        base = spec.split("@")[0]
    else:
        path = Path(spec)
        base = path.stem if path.suffix in (".npy", ".safetensors") else (path.name or str(path))
    name, i = base, 2
    while name in taken:
        name, i = f"{base} ({i})", i + 1
    taken.add(name)
    return name


def _load_npy_features(path: Path):
    import numpy as np
    import torch

    from sslkit.config import ConfigError

    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise ConfigError(f"Features file {path} is not a readable .npy array ({err}).") from None
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        raise ConfigError(f"Features file {path} holds a {array.dtype} array of shape {array.shape}; "
                          "expected a numeric (n, D) array.")
    features = torch.from_numpy(np.asarray(array, dtype=np.float32))
    return features, torch.full((features.shape[0],), -1, dtype=torch.long)


def _load_models(args, console):
    """{name: features (n, D)} and the labels (n,) (−1 where unknown) of every MODEL."""
    import torch

    from sslkit.config import ConfigError
    from sslkit.data.errors import DataError
    from sslkit.eval.feature_cache import compute_features
    from sslkit.eval.features_file import is_features_file

    features, labels_seen = {}, []
    taken: set = set()
    for spec in args.models:
        path = Path(spec)
        if not spec.startswith("timm:") and not path.exists():
            raise FileNotFoundError(f"Model {spec} does not exist; pass a run directory, timm:NAME or a features file.")
        if path.suffix == ".npy":
            x, y = _load_npy_features(path)
        else:
            if args.data is None and not is_features_file(spec):
                raise ConfigError(f"Model {spec} needs images: add --data (digits, shapes or an image folder).")
            x, y = compute_features(spec, args.data, split=args.split, pooling=args.pooling,
                                    image_size=args.image_size, batch_size=args.batch_size, device=args.device,
                                    cache_dir=False if args.no_cache else (args.cache_dir or True), progress=True)
        if x.ndim != 2:
            raise ConfigError(f"Model {spec} gives features of shape {tuple(x.shape)}; expected (n, D).")
        name = _model_name(spec, taken)
        features[name] = x.float()
        labels_seen.append((name, y.long()))
        console.print(f"  {name}: {x.shape[0]} samples × {x.shape[1]} dims")
    sizes = {name: int(x.shape[0]) for name, x in features.items()}
    if len(set(sizes.values())) > 1:
        raise DataError(f"The models cover different numbers of samples {sizes}; all must be evaluated on the "
                        "same samples (same --data and --split, or features files of the same rows).")
    labels = None
    for name, y in labels_seen:
        if (y >= 0).any():
            if labels is not None and not torch.equal(labels, y):
                raise DataError(f"Model {name} comes with labels that differ from the other models'; they were "
                                "not computed on the same samples in the same order.")
            labels = y
    n = next(iter(sizes.values()))
    return features, labels if labels is not None else torch.full((n,), -1, dtype=torch.long)


def _check_prior_file(path: Path) -> None:
    """Refuse a missing kernel file or one of another type before any model is loaded."""
    from sslkit.config import ConfigError

    if not path.is_file():
        raise FileNotFoundError(f"Prior kernel file {path} does not exist; use --prior labels, models or a kernel file.")
    if path.suffix not in (".npy", ".safetensors"):
        raise ConfigError(f"Prior kernel file {path} must be .npy or .safetensors (never unpickled), got '{path.suffix}'.")


def _load_prior_file(path: Path, n: int):
    import numpy as np

    from sslkit.config import ConfigError

    _check_prior_file(path)
    if path.suffix == ".npy":
        try:
            kernel = np.load(path, allow_pickle=False, mmap_mode="r")  # memory-mapped: read tile by tile
        except (ValueError, OSError) as err:
            raise ConfigError(f"Prior kernel file {path} is not a readable .npy array ({err}).") from None
    elif path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            tensors = load_file(str(path))
        except (SafetensorError, OSError) as err:
            raise ConfigError(f"Prior kernel file {path} is not a readable safetensors file ({err}).") from None
        if "kernel" in tensors:
            kernel = tensors["kernel"]
        elif len(tensors) == 1:
            kernel = next(iter(tensors.values()))
        else:
            raise ConfigError(f"Prior kernel file {path} holds {sorted(tensors)}; name the kernel tensor 'kernel'.")
        kernel = kernel.double()
    if tuple(kernel.shape) != (n, n):
        raise ConfigError(f"Prior kernel file {path} is {tuple(kernel.shape)} but the models have {n} samples; "
                          f"it must be ({n}, {n}).")
    if isinstance(kernel, np.ndarray) and not np.issubdtype(kernel.dtype, np.floating):
        kernel = np.asarray(kernel, dtype=np.float64)
    return kernel


# --------------------------------------------------------------------------- outputs


def _print_table(console, study) -> None:
    from rich.markup import escape
    from rich.table import Table

    temps = study.results[0].temperatures
    table = Table(title=escape(f"Task prior — {study.settings['prior']}; kernel {study.settings['kernel']}"
                               f"{', centred' if study.settings['center'] else ''}"))
    table.add_column("model")
    table.add_column("dim", justify="right")
    for t in temps:
        table.add_column(f"E[S] ± sd[S] (T={t:g})", justify="right")
    if study.tasks is not None:
        for col in ("probe acc (mean ± sd)", "q05", "worst task"):
            table.add_column(col, justify="right")
    for r in study.results:
        row = [escape(r.name), str(r.dim)] + [f"{e:.4g} ± {s:.3g}" for e, s in zip(r.expectation, r.std)]
        summary = r.probe_summary()
        if summary is not None:
            worst = summary["worst_tasks"][0]
            row += [f"{summary['mean']:.3f} ± {summary['std']:.3f}", f"{summary['quantiles']['0.05']:.3f}",
                    f"#{worst['task']}: {worst['accuracy']:.3f}"]
        table.add_row(*row)
    console.print(table)
    for t, entry in study.correlations.items():
        corr = entry.get("expectation_vs_mean_accuracy")
        if corr:
            console.print(f"  T={t}: E[S] vs mean probe accuracy across models: Pearson {corr['pearson']:.3f}, "
                          f"Spearman {corr['spearman']:.3f}")


def _html_section(study, plots: list[Path]) -> str:
    import base64

    esc = html.escape
    temps = study.results[0].temperatures
    head = "<th>model</th>" + "".join(f"<th>E[S] T={t:g}</th><th>sd[S] T={t:g}</th>" for t in temps)
    if study.tasks is not None:
        head += "<th>probe accuracy mean</th><th>sd</th><th>q05</th><th>worst task</th>"
    rows = []
    for r in study.results:
        cells = f"<td>{esc(r.name)}</td>" + "".join(f"<td>{e:.5g}</td><td>{s:.3g}</td>"
                                                    for e, s in zip(r.expectation, r.std))
        summary = r.probe_summary()
        if summary is not None:
            worst = summary["worst_tasks"][0]
            cells += (f"<td>{summary['mean']:.3f}</td><td>{summary['std']:.3f}</td>"
                      f"<td>{summary['quantiles']['0.05']:.3f}</td><td>#{worst['task']}: {worst['accuracy']:.3f}</td>")
        rows.append(f"<tr>{cells}</tr>")
    figures = "".join(f'<figure><img alt="{esc(p.stem)}" src="data:image/png;base64,'
                      f'{base64.b64encode(p.read_bytes()).decode()}"><figcaption>{esc(p.stem)}</figcaption></figure>'
                      for p in plots)
    return (f"<!-- sslkit:taskprior -->\n<h2 id=\"taskprior\">Task priors</h2>"
            f"<p class=\"meta\">{esc(study.settings['prior'])} · kernel {esc(study.settings['kernel'])}"
            f"{' · centred' if study.settings['center'] else ''} · {esc(study.settings['convention'])}</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>{figures}\n"
            f"<!-- /sslkit:taskprior -->\n")


def _evaluation_report(out: Path) -> dict | None:
    """The evaluation report (``sslkit evaluate``'s report.json) in ``out``, else None."""
    report_json = out / "report.json"
    if not report_json.is_file():
        return None
    try:
        report = json.loads(report_json.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(report, dict) or "models" not in report:
        return None  # not an evaluation report (e.g. a pretraining run's report.json)
    return report


def _merge_into_report(out: Path, payload: dict, study, plots: list[Path]) -> bool:
    """Add the task-prior results to an evaluation report in ``out`` (report.json, and report.html if present)."""
    report = _evaluation_report(out)
    if report is None:
        return False
    report_json = out / "report.json"
    report["taskprior"] = dict(payload, plots=[p.name for p in plots])
    write_json_atomic(report_json, json_ready(report))
    report_html = out / "report.html"
    if report_html.is_file():
        page = report_html.read_text(encoding="utf-8")
        start, end = page.find("<!-- sslkit:taskprior -->"), page.find("<!-- /sslkit:taskprior -->")
        if start >= 0 and end > start:  # replace the section of an earlier run
            page = page[:start] + page[end + len("<!-- /sslkit:taskprior -->\n"):]
        anchor = page.find("<h2>Settings")
        anchor = anchor if anchor >= 0 else page.find("</body>")
        if anchor >= 0:
            page = page[:anchor] + _html_section(study, plots) + page[anchor:]
            write_text_atomic(report_html, page)
    return True


# --------------------------------------------------------------------------- run


def _check_args(args) -> None:
    """Every option that needs no data, checked before any model or file is read."""
    from sslkit.commands.arg_checks import at_least, positive

    at_least(args, 0, "tasks")
    at_least(args, 2, "classes")
    positive(args, "task_T")
    at_least(args, 1, "epochs", "batch_size", "image_size")
    for t in args.temperatures:
        if not t > 0:
            from sslkit.config import ConfigError

            raise ConfigError(f"--T values must be > 0, got {t:g}.")
    if args.prior not in (None, "labels", "models"):
        _check_prior_file(Path(args.prior))


def run(args) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from sslkit.config import ConfigError
    from sslkit.eval.taskprior import task_prior_study

    console = Console()
    _check_args(args)
    data_name = (Path(args.data).name if args.data not in (None, "digits", "shapes") else args.data) or "features"
    out = output_dir(args.out, "taskprior", data_name)
    merge = _evaluation_report(out) is not None  # adding a section to an evaluation report is the documented use
    check_output_free(out, args.overwrite or merge)  # before the work, not after it
    console.print(f"[bold]sslkit taskprior[/bold] → {out}")
    started = time.perf_counter()
    features, labels = _load_models(args, console)
    n = labels.shape[0]

    prior = args.prior or ("labels" if bool((labels >= 0).all()) else "models")
    if prior == "labels" and not bool((labels >= 0).all()):
        raise ConfigError("--prior labels needs a label for every sample, but these samples are (partly) unlabelled; "
                          "use --prior models or a kernel file.")
    if prior not in ("labels", "models"):
        prior = _load_prior_file(Path(prior), n)
    if args.tasks > 0 and args.tasks * n > 50_000_000:
        console.print(f"[yellow]note[/yellow]: {args.tasks} tasks × {n} samples is a large probe batch.")

    bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True)
    stages: dict = {}

    def progress(stage: str, done: int, total: int) -> None:
        if stage not in stages:
            stages[stage] = bars.add_task(stage, total=total)
        bars.update(stages[stage], completed=done, total=total)

    try:
        with bars:
            study = task_prior_study(features, labels, prior=prior, kernel=args.kernel,
                                     temperatures=args.temperatures, center=args.center, num_tasks=args.tasks,
                                     num_classes=args.classes, task_temperature=args.task_T,
                                     probe_epochs=args.epochs, seed=args.seed, median=args.median,
                                     progress=progress)
    except ValueError as err:
        raise ConfigError(str(err)) from None

    payload = study.to_dict()
    payload["settings"]["models"] = dict(zip(features, args.models))
    payload["settings"]["data"] = args.data
    payload["settings"]["split"] = args.split
    payload["seconds"] = time.perf_counter() - started

    def write(folder: Path) -> dict:
        written = {p.stem: p for p in study.save_plots(folder)}
        write_json_atomic(folder / "taskprior.json", json_ready(payload))
        return written

    # Into an evaluation report's folder: next to its files; anywhere else: a new folder, swapped in whole.
    written = write(out) if merge else write_results(out, write, args.overwrite)
    plots = sorted(written.values())
    _print_table(console, study)
    merged = merge and _merge_into_report(out, payload, study, plots)
    console.print(f"done in {payload['seconds']:.1f} s: {out / 'taskprior.json'}"
                  + (f", {len(plots)} plots" if plots else "")
                  + ("; added to the evaluation report" if merged else ""))
    return 0
