"""`sslkit theory linear`: closed-form linear reconstruction vs joint embedding (arXiv 2505.12477)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from sslkit.commands.run_dir import add_output_arguments, check_output_free, output_dir, write_results

NAME = "theory"

LINEAR_EPILOG = """what it computes:
  A signal coordinate (variance γ_s, augmentation variance c_s) competes with an irrelevant one (γ_n, c_n)
  for the k output dimensions of linear reconstruction (RC, E*/D* of Theorem 1) and of linear joint
  embedding (JE, W* of Theorem 2). On a log grid of γ_n × c_n both closed forms are solved on synthetic
  data (random rotated basis) and the subspace they select is compared with the inequalities
    JE keeps the signal  ⟺  c_n > γ_n c_s/γ_s                  (linear in γ_n)
    RC keeps the signal  ⟺  c_n > γ_n²(γ_s + c_s)/γ_s² − γ_n   (quadratic in γ_n)
  JE needs less alignment exactly when γ_n > γ_s.

output (--out, default runs/theory-linear-<time>):
  phase_diagram.png   who recovers the signal per cell, both thresholds, the crossover γ_n = γ_s
  phase_diagram.json  grids, per-cell theory and closed-form outcomes, agreement, crossover,
                      worked example and the finite-n probe experiment (unless --no-probe)

example:
  sslkit theory linear --gamma-s 1 --c-s 0.1 --grid 41 --k 1 --out runs/theory
"""


def add_parser(verbs) -> None:
    p = verbs.add_parser("theory", help="closed-form SSL theory (linear RC vs JE phase diagram)",
                         description="Closed-form theory of self-supervised learning.")
    topics = p.add_subparsers(dest="theory_topic", metavar="TOPIC")
    p.set_defaults(run=lambda args: _print_help(p))
    lin = topics.add_parser("linear", help="linear reconstruction vs joint embedding: thresholds and phase diagram",
                            description="Linear reconstruction vs joint embedding under augmentations "
                                        "(arXiv 2505.12477): closed forms, thresholds, phase diagram.",
                            epilog=LINEAR_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    lin.add_argument("--gamma-s", type=float, default=1.0, help="signal variance γ_s (default 1)")
    lin.add_argument("--c-s", type=float, default=0.1, help="augmentation variance on the signal c_s (default 0.1)")
    lin.add_argument("--grid", type=int, default=41, help="grid points per axis (default 41)")
    lin.add_argument("--k", type=int, default=1, help="signal dimensions = output dimensions (default 1)")
    lin.add_argument("--n-nuisance", type=int, help="irrelevant dimensions (default k)")
    lin.add_argument("--gamma-n-range", type=float, nargs=2, metavar=("LOW", "HIGH"),
                     help="γ_n range of the grid (default γ_s/10 .. 10 γ_s)")
    lin.add_argument("--c-n-range", type=float, nargs=2, metavar=("LOW", "HIGH"),
                     help="c_n range of the grid (default: around both thresholds)")
    lin.add_argument("--moments", choices=["exact", "monte-carlo"], default="exact",
                     help="augmentation moments: exact additive closed form (default), or sampled views")
    lin.add_argument("--samples", type=int, help="synthetic samples n (default 8·d exact, 512 monte-carlo)")
    lin.add_argument("--views", type=int, default=256, help="views per sample with --moments monte-carlo (256)")
    lin.add_argument("--worked-gamma-n", type=float, nargs="+", default=[0.3, 10.0], metavar="GAMMA_N",
                     help="γ_n values of the printed worked example (default 0.3 10)")
    lin.add_argument("--no-probe", dest="probe", action="store_false",
                     help="skip the finite-n linear-probe experiment")
    lin.add_argument("--seed", type=int, default=0, help="seed of the synthetic data (default 0)")
    add_output_arguments(lin, "runs/theory-linear-<time>")
    lin.set_defaults(run=run)


def _print_help(parser) -> int:
    parser.print_help()
    return 0


def _validate(args) -> None:
    from sslkit.config import ConfigError

    if not args.gamma_s > 0:
        raise ConfigError(f"--gamma-s must be > 0, got {args.gamma_s}.")
    if not args.c_s >= 0:
        raise ConfigError(f"--c-s must be ≥ 0, got {args.c_s}.")
    if not 2 <= args.grid <= 1001:
        raise ConfigError(f"--grid must be between 2 and 1001, got {args.grid}.")
    if args.k < 1 or (args.n_nuisance is not None and args.n_nuisance < 1):
        raise ConfigError(f"--k and --n-nuisance must be ≥ 1, got {args.k} and {args.n_nuisance}.")
    for flag, pair in (("--gamma-n-range", args.gamma_n_range), ("--c-n-range", args.c_n_range)):
        if pair is not None and not 0 < pair[0] < pair[1]:
            raise ConfigError(f"{flag} must be LOW HIGH with 0 < LOW < HIGH, got {pair[0]} {pair[1]}.")
    d = args.k + (args.n_nuisance or args.k)
    if args.samples is not None and args.samples < d:
        raise ConfigError(f"--samples must be ≥ k + n_nuisance = {d}, got {args.samples}.")
    if args.views < 1:
        raise ConfigError(f"--views must be ≥ 1, got {args.views}.")
    if any(not g > 0 for g in args.worked_gamma_n):
        raise ConfigError(f"--worked-gamma-n values must be > 0, got {args.worked_gamma_n}.")


def _probe_levels(gamma_s: float, c_s: float, gamma_n: float) -> list[tuple[float, str]]:
    """Alignments below both thresholds, between them, above both (at a γ_n > γ_s, JE's is the lower)."""
    from sslkit.theory.linear import je_threshold, rc_threshold

    je = float(je_threshold(gamma_n, gamma_s, c_s))
    rc = float(rc_threshold(gamma_n, gamma_s, c_s))
    levels = []
    if je > 0:
        levels.append((je / 10, "below both thresholds"))
        levels.append((float((je * rc) ** 0.5), "between: above JE's, below RC's"))
    else:
        levels.append((rc / 10, "above JE's (0), below RC's"))
    levels.append((rc * 10, "above both thresholds"))
    return levels


def _worked_table(rows, gamma_s: float, c_s: float):
    from rich.table import Table

    table = Table(title=f"Worked example: signal γ_s = {gamma_s:g}, c_s = {c_s:g} — the c_n each paradigm needs")
    table.add_column("γ_n", justify="right")
    table.add_column("JE keeps the signal if", justify="right")
    table.add_column("RC keeps the signal if", justify="right")
    table.add_column("needs less alignment")
    table.add_column("closed forms agree", justify="center")
    names = {"joint_embedding": "joint embedding", "reconstruction": "reconstruction", "equal": "equal"}
    for row in rows:
        rc = (f"c_n > {row['rc_threshold']:.4g}" if row["rc_threshold"] > 0
              else f"always (threshold {row['rc_threshold']:.4g} < 0)")
        table.add_row(f"{row['gamma_n']:g}", f"c_n > {row['je_threshold']:.4g}", rc, names[row["lower_threshold"]],
                      "✓" if row["closed_forms_confirm"] else "✗")
    return table


def _probe_table(probe, labels):
    from rich.table import Table

    n_lo, n_hi = int(probe.n_values[0]), int(probe.n_values[-1])
    table = Table(title=f"Linear probe on the learned features, γ_n = {probe.gamma_n:g}, {probe.n_nuisance} "
                        f"irrelevant dims (held-out accuracy, n = {n_lo} → {n_hi}; optimum 1.0)")
    table.add_column("c_n", justify="right")
    table.add_column("regime")
    for name in ("supervised", "joint embedding", "reconstruction"):
        table.add_column(name, justify="right")
    for a, (c_n, label) in enumerate(zip(probe.c_n, labels)):
        cells = [f"{probe.accuracy[key][a, 0]:.3f} → {probe.accuracy[key][a, -1]:.3f}"
                 for key in ("supervised", "joint_embedding", "reconstruction")]
        table.add_row(f"{c_n:.4g}", label, *cells)
    return table


def run(args) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from sslkit.theory.linear import default_grids, phase_diagram, plot_phase_diagram, probe_experiment, worked_example

    _validate(args)
    console = Console()
    started = time.perf_counter()
    out = output_dir(args.out, "theory", "linear")
    check_output_free(out, args.overwrite)  # before the work, not after it
    console.print(f"[bold]sslkit theory linear[/bold] → {out}")
    gamma_grid, c_grid = default_grids(args.gamma_s, args.c_s, args.grid, args.gamma_n_range, args.c_n_range)
    moments = args.moments.replace("-", "_")

    bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True)
    with bars:
        task = bars.add_task(f"phase diagram ({args.grid}×{args.grid} cells, {moments} moments)", total=args.grid)
        diagram = phase_diagram(args.gamma_s, args.c_s, gamma_grid, c_grid, k=args.k, n_nuisance=args.n_nuisance,
                                moments=moments, n=args.samples, num_views=args.views, seed=args.seed,
                                progress=lambda done, total: bars.update(task, completed=done, total=total))
    rows = worked_example(args.gamma_s, args.c_s, args.worked_gamma_n, k=args.k, seed=args.seed)
    probe = labels = None
    if args.probe:
        gamma_n = 10.0 * args.gamma_s
        levels = _probe_levels(args.gamma_s, args.c_s, gamma_n)
        labels = [label for _, label in levels]
        probe = probe_experiment(args.gamma_s, args.c_s, gamma_n, [c for c, _ in levels], k=args.k,
                                 seed=args.seed)

    fig = plot_phase_diagram(diagram)
    payload = {
        "command": "sslkit theory linear",
        "settings": {"gamma_s": args.gamma_s, "c_s": args.c_s, "grid": args.grid, "k": args.k,
                     "n_nuisance": diagram.n_nuisance, "moments": moments, "seed": args.seed},
        "phase_diagram": diagram.to_dict(),
        "worked_example": rows,
        "probe": None if probe is None else dict(probe.to_dict(), regimes=labels),
        "seconds": time.perf_counter() - started,
    }
    text = json.dumps(payload, indent=2, allow_nan=False) + "\n"

    def write(folder: Path) -> dict:
        fig.savefig(folder / "phase_diagram.png", format="png")
        (folder / "phase_diagram.json").write_text(text, encoding="utf-8")
        return {"png": folder / "phase_diagram.png", "json": folder / "phase_diagram.json"}

    write_results(out, write, args.overwrite)

    console.print(_worked_table(rows, args.gamma_s, args.c_s))
    if probe is not None:
        console.print(_probe_table(probe, labels))
    agreement = diagram.agreement(diagram.settings["agreement_margin"])
    low, high = diagram.crossover_bracket()
    for name, counts in agreement.items():
        console.print(f"  {name.replace('_', ' ')}: closed forms agree with the inequality on "
                      f"{counts['agree']}/{counts['cells']} cells" +
                      (f" ({counts['on_threshold']} on the threshold, not counted)" if counts["on_threshold"] else ""))
    bracket = (f"between γ_n = {low:.4g} and {high:.4g}" if low is not None and high is not None
               else "not resolved by this grid")
    console.print(f"  crossover (closed forms): {bracket}; theory: γ_n = γ_s = {args.gamma_s:g}")
    console.print(f"done in {time.perf_counter() - started:.1f} s: {out / 'phase_diagram.png'}, "
                  f"{out / 'phase_diagram.json'}")
    return 0
