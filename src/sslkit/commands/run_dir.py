"""Where a verb writes when the user gives no ``--out``: ``runs/<verb>-<what>-<YYYYmmdd-HHMMSS>``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Optional


def output_dir(out: Optional[str], *name_parts: str) -> Path:
    """``out`` if given, else a new time-stamped directory under ``runs/`` named by ``name_parts``.

    Colons (``hf:model`` names) become dashes so the name is a valid directory on every platform.
    """
    if out:
        return Path(out)
    name = "-".join(part.replace(":", "-") for part in name_parts)
    return Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def data_name(data: str) -> str:
    """A short name of a ``--data`` source for a default run directory: the folder of a shard pattern
    (``DIR/shard-{000000..000099}.tar`` → ``DIR``'s name), else the last path part."""
    path = Path(data)
    return path.parent.name if "{" in path.name and path.parent.name else path.name


def check_output_free(out: Path, overwrite: bool) -> None:
    """Refuse an existing, non-empty ``--out`` before any work is done, unless ``--overwrite``.

    The one overwrite policy of the verbs that write a results folder: refuse by default, replace
    the folder as a whole with ``--overwrite`` (see :func:`write_results`).
    """
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise FileExistsError(f"Output folder '{out}' already holds results; choose another --out or pass "
                              "--overwrite to replace it.")


def write_results(out: Path, write: Callable[[Path], dict], overwrite: bool) -> dict:
    """``write(folder)`` into a temporary sibling of ``out``, then swap it in (no stale or half-written file).

    Returns ``write``'s ``{name: path}`` with the paths moved to ``out``.
    """
    from sslkit.atomic_files import write_folder_atomic

    written: dict = {}
    write_folder_atomic(out, lambda tmp: written.update(write(tmp)), overwrite=overwrite or out.exists())
    return {name: out / Path(path).name for name, path in written.items()}


def report_on_models(args, verb: str, detail: str, compute: Callable[[Callable], dict],
                     write: Callable[[dict, Path], dict]):
    """The flow of the verbs that compare ``args.models`` on ``args.data`` into one report folder (evaluate,
    align): choose and check ``--out`` before the work, say what runs, ``compute(log)``, write atomically.

    Returns ``(console, report, paths)`` for the verb's own tables.
    """
    from rich.console import Console

    console = Console()
    out = output_dir(args.out, verb, data_name(args.data) if args.data else "features")
    check_output_free(out, args.overwrite)  # before the work, not after it
    console.print(f"[bold]sslkit {verb}[/bold] {len(args.models)} model(s) on {args.data or 'features files'}"
                  f"{detail} → {out}")
    report = compute(console.print)
    paths = write_results(out, lambda folder: write(report, folder), args.overwrite)
    return console, report, paths


def add_output_arguments(parser, default: str) -> None:
    """``--out`` and ``--overwrite`` of a verb that writes one results folder (``default``: where it goes
    without ``--out``, e.g. ``runs/align-<data>-<time>``); the policy is :func:`check_output_free`'s."""
    parser.add_argument("--out", help=f"output directory (default {default})")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out folder (default: refuse)")
