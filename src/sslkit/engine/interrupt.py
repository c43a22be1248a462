"""Stop a run cleanly on SIGTERM or Ctrl-C: checkpoint at the next step boundary, say how to resume.

A cluster scheduler sends SIGTERM some seconds before it kills a job (preemption, time limit); a
user presses Ctrl-C. Either way the run should lose at most one step and tell the user what to do.
:class:`GracefulStop` watches for both. SIGTERM is received by Lightning's own handler
(``trainer.received_sigterm``), which on its own would stop only at the end of an epoch — never, for
sslkit's one endless stream — or, if it arrives during a step, right after that step with
``SIGTERMException`` and exit status 0, without a checkpoint. Ctrl-C is taken over while the run trains:
the first press asks for a stop at the next step, a second one interrupts at once (no checkpoint).

At the start of the next step the callback writes ``checkpoints/last.ckpt`` (the state "step N done",
exactly what a periodic checkpoint holds, so ``--resume`` continues bit for bit) and raises
:class:`RunInterrupted`, which the CLI turns into one message and the exit status 128 + signal number
(143 for SIGTERM, 130 for SIGINT), the shell's convention for "ended by this signal".

Under SLURM, SIGUSR1 (``#SBATCH --signal=USR1@120``) is handled the same way and the job is then
requeued (``scontrol requeue``, exit status 138); engine/slurm.py has the rest of that story.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Optional

from sslkit.engine.checkpoints import LAST_CHECKPOINT, BetweenStepsCheckpoint
from sslkit.engine.run_interrupted import RunInterrupted
from sslkit.engine.slurm import REQUEUE_SIGNAL, requeue, slurm_job_id, under_slurm

__all__ = ["GracefulStop", "RunInterrupted"]


class GracefulStop(BetweenStepsCheckpoint):
    """On SIGTERM or a first Ctrl-C, save ``last.ckpt`` at the next step start and raise :class:`RunInterrupted`."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.requested: Optional[int] = None
        self._previous_sigint = None
        self._previous_sigusr = None

    def _on_sigint(self, signum, frame) -> None:
        self.requested = signal.SIGINT
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C interrupts at once
        sys.stderr.write("\nCtrl-C: stopping after this step with a checkpoint (press again to stop now, "
                         "without one)\n")

    def _on_requeue_signal(self, signum, frame) -> None:
        self.requested = REQUEUE_SIGNAL  # SLURM's warning before the time limit (engine/slurm.py)

    def on_train_start(self, trainer, pl_module) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous_sigint = signal.signal(signal.SIGINT, self._on_sigint)
            if under_slurm():
                self._previous_sigusr = signal.signal(REQUEUE_SIGNAL, self._on_requeue_signal)

    def _restore(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        if self._previous_sigint is not None:
            signal.signal(signal.SIGINT, self._previous_sigint)
            self._previous_sigint = None
        if self._previous_sigusr is not None:
            signal.signal(REQUEUE_SIGNAL, self._previous_sigusr)
            self._previous_sigusr = None

    def on_train_end(self, trainer, pl_module) -> None:
        self._restore()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._restore()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # Lightning would end the run right after this step with SIGTERMException (exit status 0, no
        # checkpoint): take the request over and stop at the next step's start instead, where the
        # checkpoint records "this step done" with its metrics logged.
        if getattr(trainer, "received_sigterm", False):
            self.requested = signal.SIGTERM
            trainer._signal_connector.received_sigterm = False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        signum = signal.SIGTERM if getattr(trainer, "received_sigterm", False) else self.requested
        if signum is None:
            return
        path = self.run_dir / "checkpoints" / LAST_CHECKPOINT
        path.parent.mkdir(parents=True, exist_ok=True)
        self.save_between_steps(trainer, path)  # every rank joins; rank 0 writes
        self._restore()
        requeued = None
        if signum == REQUEUE_SIGNAL and trainer.is_global_zero:
            job = slurm_job_id()
            requeued = job if job is not None and requeue(job) else None
        raise RunInterrupted(int(signum), trainer.global_step, self.run_dir,
                             path if trainer.is_global_zero else None, requeued_job=requeued)
