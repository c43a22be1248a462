"""Checkpoints that survive crashes: atomic writes, and a resume that skips a damaged newest file.

A checkpoint is written to a temporary name in the same directory, flushed to disk and renamed over
``NAME`` (``os.replace`` is atomic on POSIX), then the directory entry is flushed
(:mod:`sslkit.atomic_files` with ``fsync=True``). A ``kill -9`` or a power cut at any moment leaves
either the old file or the new one, never half of one. A full disk raises an error naming the
checkpoint and removes the partial temporary file.

On resume, ``last.ckpt`` is tried first, then the periodic ``step*.ckpt`` newest first; a file
that does not load (truncated, corrupt, written by something else) is reported and skipped.
Loading uses ``torch.load(weights_only=True)``: a checkpoint never runs code when read.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback

from sslkit.atomic_files import torch_save_atomic, write_file_atomic

LAST_CHECKPOINT = "last.ckpt"
_PERIODIC = re.compile(r"^step(\d+)\.ckpt$")


def save_atomically(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj)`` to ``path`` through a temporary file and a rename, flushed to disk. An ``OSError``
    names the checkpoint, not its temporary file; the CLI turns it into one sentence
    (commands/write_failure.py) that says the previous checkpoints are whole and how to resume."""
    torch_save_atomic(path, obj, fsync=True)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO with :func:`save_atomically` for local files, reading weights only."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)  # remote: Lightning's path
        save_atomically(checkpoint, path)

    def load_checkpoint(self, path, map_location: Optional[Any] = None, weights_only: Optional[bool] = None) -> dict:
        """Lightning's load with ``weights_only=True`` whatever the caller asks (sslkit never needs more).

        ``weights_only=None`` would defer to torch's default, which ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``
        turns back into a full unpickle; a checkpoint is a user file, so it never gets that chance.
        """
        placement = {} if map_location is None else {"map_location": map_location}  # else Lightning's default
        try:
            return super().load_checkpoint(path, weights_only=True, **placement)
        except FileNotFoundError:
            raise
        except Exception as err:  # noqa: BLE001 - any failure to read is "not a checkpoint sslkit can use"
            raise ValueError(f"Checkpoint '{path}' cannot be read ({why_unreadable(Path(path), err)}); resume "
                             f"from a checkpoint sslkit wrote.") from None


def candidate_checkpoints(directory: Path) -> list[Path]:
    """``last.ckpt`` first, then periodic checkpoints, newest step first."""
    periodic = []
    for p in directory.glob("step*.ckpt"):
        m = _PERIODIC.match(p.name)
        if m:
            periodic.append((int(m.group(1)), p))
    ordered = [p for _, p in sorted(periodic, reverse=True)]
    last = directory / LAST_CHECKPOINT
    return ([last] if last.is_file() else []) + ordered


def why_unreadable(path: Path, err: Exception) -> str:
    """A short, whole-word reason why ``torch.load`` of a checkpoint failed (never a cut-off traceback line)."""
    import pickle

    text = str(err).strip()
    if path.is_file() and path.stat().st_size == 0:
        return "empty file"
    if isinstance(err, KeyError):
        return f"no {err} entry: not a Lightning checkpoint"
    if "Unsupported global" in text or "GLOBAL" in text:
        return "holds Python objects other than tensors and numbers: not a checkpoint sslkit wrote"
    if isinstance(err, pickle.UnpicklingError) or "Weights only load failed" in text:
        return "not a torch checkpoint (unreadable bytes: truncated, corrupt or another format)"
    if "zip" in text.lower() or "PytorchStreamReader" in text or isinstance(err, (EOFError, RuntimeError)):
        return "truncated or corrupt: not a complete torch archive"
    first = text.splitlines()[0] if text else type(err).__name__
    return first if len(first) <= 160 else first[:160].rsplit(" ", 1)[0] + " …"


def readable_checkpoint(directory: Path, log: Callable[[str], None] = print) -> tuple[Path, int]:
    """The newest checkpoint in ``directory`` that loads, and its global step; damaged ones are named
    and skipped."""
    candidates = candidate_checkpoints(directory)
    if not candidates:
        raise FileNotFoundError(f"Cannot resume: '{directory}' holds no checkpoint; start the run without --resume.")
    problems = []
    for path in candidates:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            step = int(state["global_step"])
        except Exception as err:  # noqa: BLE001 - any failure to read means "not usable"
            reason = why_unreadable(path, err)
            problems.append(f"'{path.name}' ({reason})")
            log(f"checkpoint '{path}' cannot be read ({reason}); trying an older one")
            continue
        return path, step
    raise FileNotFoundError(f"Cannot resume: no checkpoint in '{directory}' can be read: {'; '.join(problems)}.")


class BetweenStepsCheckpoint(Callback):
    """A callback that saves checkpoints at a step's *start*, recorded as "step N done, N + 1 not begun".

    At batch start Lightning has already counted the new batch as "ready"; a resume from that state
    would treat it as a half-done batch and shift the logged step numbers by one.
    :meth:`save_between_steps` records the state the weights are in.
    """

    _between_steps = False

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        if not self._between_steps:
            return
        progress = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_loop.batch_progress")
        if progress is not None:
            for counters in (progress["total"], progress["current"]):
                counters["ready"] = counters["completed"]

    def save_between_steps(self, trainer, path: Path) -> None:
        self._between_steps = True
        try:
            trainer.save_checkpoint(path, weights_only=False)  # full state: optimiser, loops, callbacks
        finally:
            self._between_steps = False


class StepCheckpoint(BetweenStepsCheckpoint):
    """Save ``step{N:07d}.ckpt`` every ``every_n_steps`` optimiser steps and point ``last.ckpt`` at it.

    The checkpoint of step N is written when step N + 1 *starts*, not when step N ends: Lightning
    writes a step's metrics after the ``on_train_batch_end`` callbacks, so a checkpoint saved there
    and a crash right after it would leave a run whose checkpointed step is missing from
    ``metrics.jsonl``. The state is the same at both moments (nothing trains in between).
    ``last.ckpt`` is a hard link to the newest periodic file (a copy where links are not allowed),
    swapped in atomically. The final state is saved by the caller after ``fit``.
    """

    def __init__(self, dirpath: str | os.PathLike, every_n_steps: int):
        if every_n_steps < 1:
            raise ValueError(f"StepCheckpoint needs every_n_steps >= 1, got {every_n_steps}.")
        self.dirpath, self.every_n_steps = Path(dirpath), every_n_steps
        self._saved_step: Optional[int] = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        step = trainer.global_step
        if step == 0 or step % self.every_n_steps or step == self._saved_step:
            return
        path = self.dirpath / f"step{step:07d}.ckpt"
        self.save_between_steps(trainer, path)
        self._saved_step = step
        if trainer.is_global_zero:
            link_atomically(path, self.dirpath / LAST_CHECKPOINT)


def link_atomically(source: Path, target: Path) -> None:
    """Make ``target`` a hard link to (or a copy of) ``source``, replacing it atomically."""

    def link_or_copy(tmp: Path) -> None:
        try:
            os.link(source, tmp)
        except OSError:
            import shutil

            shutil.copyfile(source, tmp)

    write_file_atomic(target, link_or_copy, fsync=True)
