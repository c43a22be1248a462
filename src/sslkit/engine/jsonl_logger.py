"""A metrics logger that appends one JSON line per logging step to ``metrics.jsonl``.

``write_csv`` turns it into ``metrics.csv`` for spreadsheet users at the end of a run.

Append-only, so a resumed run keeps the history of the interrupted one (Lightning's CSV logger
deletes an existing file). ``truncate_after(step)`` drops lines logged after the checkpoint that a
resume restarts from, so the file never holds two futures of one run.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities import rank_zero_only

from sslkit.atomic_files import write_text_atomic
from sslkit.json_values import json_ready


class JSONLLogger(Logger):
    def __init__(self, path: str | Path):
        super().__init__()
        self.path = Path(path)

    @property
    def name(self) -> str:
        return "jsonl"

    @property
    def version(self) -> str:
        return ""

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass  # the resolved config is written to config.yaml by the run

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: Optional[int] = None) -> None:
        record = {"step": step}
        # A diverged value stays visible in the log as the text "nan" / "inf".
        record.update({k: json_ready(v, non_finite="text") for k, v in metrics.items() if k != "epoch"})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One write() of the whole line on an O_APPEND file: a process killed at any moment leaves
        # whole lines (read_metrics still drops a cut last line, should a file system split it).
        with open(self.path, "ab", buffering=0) as fh:
            fh.write((json.dumps(record) + "\n").encode("utf-8"))


def read_metrics(path: str | Path) -> list[dict]:
    """All records of a ``metrics.jsonl`` file, in order.

    A last line cut short by a crash (a killed process mid-write) is dropped; a damaged line
    anywhere else is an error, because it means the file is not ours or was edited.
    """
    path = Path(path)
    if not path.is_file():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    records = []
    for i, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise ValueError(f"'{path}' line {i + 1} is not JSON; the metrics log is damaged.") from None
    return records


def write_csv(jsonl_path: str | Path, csv_path: str | Path) -> None:
    """Write the records of ``metrics.jsonl`` as a CSV table (one column per metric), atomically."""
    import csv

    records = read_metrics(jsonl_path)
    columns = ["step"] + sorted({k for r in records for k in r} - {"step"})
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(records)
    write_text_atomic(csv_path, text.getvalue())


def truncate_after(path: str | Path, step: int, keep_at_step: Optional[Callable[[dict], bool]] = None) -> None:
    """Keep only records with ``step <= step`` (at ``step`` itself only those ``keep_at_step``
    accepts, if given); written to a temporary file and renamed."""
    path = Path(path)
    if not path.is_file():
        return
    kept = [r for r in read_metrics(path)
            if r.get("step") is None or r["step"] < step
            or (r["step"] == step and (keep_at_step is None or keep_at_step(r)))]
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in kept))
