"""The check both bad-input tables share (tests/cli/test_bad_inputs*.py): a verb given bad input exits 2 with
one sentence naming what is wrong, prints no traceback and leaves every file of ``world`` as it was."""

from __future__ import annotations

import os

from run_files import snapshot
from sslkit.cli import main


def assert_refused_cleanly(world, capsys, row: str, argv: list[str], needle: str, prefixes: tuple[str, ...]) -> None:
    """Run ``sslkit argv`` inside ``world`` and check the refusal (see the module docstring)."""
    before = snapshot(world)
    capsys.readouterr()
    cwd = os.getcwd()
    try:
        os.chdir(world)  # a verb that fell back to runs/... would show up in the snapshot
        try:
            code = main(argv)
        except SystemExit as stop:  # argparse's own errors
            code = stop.code
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2, (row, err)
    assert lines and lines[-1].startswith(prefixes) and needle in err, (row, err)
    assert "Traceback" not in err
    assert snapshot(world) == before, f"{row} changed files"
