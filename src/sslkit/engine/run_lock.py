"""One process per run directory: a lock file that a crashed owner does not leave blocking forever.

Two ``sslkit pretrain`` processes writing one run directory (a resume started while the first run
still trains, two jobs given the same ``--out``) would interleave checkpoints and metrics. The
first process creates ``RUN_DIR/.lock`` with ``O_CREAT | O_EXCL`` (atomic: exactly one creator wins)
and writes who it is: host, pid, the process's start time and the SLURM job id. A second process
finds the file and refuses, naming the owner.

The owner may be gone without removing the file (``kill -9``, a node failure). The lock is then
*stale* and is taken over when that is provable:

* same host and the pid no longer runs, or runs a different process (its start time differs: pids
  are reused);
* the same SLURM job id: a requeued job restarts under its old id, and its previous incarnation has
  been stopped by SLURM before the new one starts.

A lock from another host with no common SLURM job cannot be checked from here; the message names
the file to delete if that run is known to be gone.

Only the launching process (global rank 0) holds the lock: the other ranks of a distributed run are
its children, or the same job on other nodes.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Optional

from sslkit.config import ConfigError

__all__ = ["LOCK_NAME", "RunLock", "is_stale", "process_start_time"]

LOCK_NAME = ".lock"


def process_start_time(pid: int) -> Optional[str]:
    """The kernel's start time of ``pid`` (field 22 of ``/proc/PID/stat``), or None where it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses; fields after its last ')' are plain.
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def is_stale(owner: dict, host: str, slurm_job: Optional[str]) -> bool:
    """Whether the process named in a lock file provably no longer holds it."""
    if slurm_job is not None and owner.get("slurm_job") == slurm_job:
        return True
    if owner.get("host") != host:
        return False
    pid = owner.get("pid")
    if not isinstance(pid, int) or not _alive(pid):
        return True
    started = process_start_time(pid)
    return started is not None and owner.get("started") is not None and started != owner["started"]


def _launcher_rank() -> int:
    """Global rank of this process as set by a launcher (0 for a plain single process)."""
    for name in ("RANK", "SLURM_PROCID"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return int(os.environ.get("NODE_RANK", "0") or 0) + int(os.environ.get("LOCAL_RANK", "0") or 0)


class RunLock:
    """``with RunLock(run_dir):`` — hold ``run_dir/.lock`` for the duration; refuse if another process holds it."""

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / LOCK_NAME
        self.held = False

    def _owner_record(self) -> dict:
        pid = os.getpid()
        return {"host": socket.gethostname(), "pid": pid, "started": process_start_time(pid),
                "slurm_job": os.environ.get("SLURM_JOB_ID"), "since": time.strftime("%Y-%m-%d %H:%M:%S")}

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            json.dump(self._owner_record(), f)
        return True

    def _read_owner(self) -> dict:
        try:
            owner = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}  # half-written by an owner killed while creating it: nobody can hold it
        return owner if isinstance(owner, dict) else {}

    def acquire(self) -> None:
        if _launcher_rank() != 0:
            return
        if self._create():
            self.held = True
            return
        owner = self._read_owner()
        if owner and not is_stale(owner, socket.gethostname(), os.environ.get("SLURM_JOB_ID")):
            where = f"process {owner.get('pid')} on {owner.get('host')}" + (
                f" (SLURM job {owner['slurm_job']})" if owner.get("slurm_job") else "")
            raise ConfigError(f"Run directory '{self.path.parent}' is in use by {where} since {owner.get('since')}; "
                              f"wait for it to end or choose another --out (if that process is gone, delete "
                              f"{self.path}).")
        # Stale: replace it. Remove-then-create keeps O_EXCL's guarantee if two processes race for it.
        self.path.unlink(missing_ok=True)
        if not self._create():
            raise ConfigError(f"Run directory '{self.path.parent}' was just taken by another process; "
                              "choose another --out.")
        self.held = True

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
