"""The exception of a run stopped by a signal after its checkpoint was saved (see engine/interrupt.py).

Its own module, importing nothing heavy, so that the command line can catch it without loading
torch and Lightning for every verb.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Optional

__all__ = ["RunInterrupted"]


class RunInterrupted(Exception):
    """A run stopped by a signal after saving a checkpoint it can be resumed from."""

    def __init__(self, signum: int, step: int, run_dir: Path, checkpoint: Optional[Path],
                 requeued_job: Optional[str] = None):
        self.signum, self.step, self.run_dir, self.checkpoint = signum, step, run_dir, checkpoint
        self.requeued_job = requeued_job
        name = signal.Signals(signum).name
        saved = (f"checkpoint of step {step} saved to {checkpoint}" if checkpoint is not None
                 else "no new checkpoint (the newest periodic one is kept)")
        then = (f"SLURM job {requeued_job} requeued: it resumes from that checkpoint when it restarts"
                if requeued_job else f"Continue with: sslkit pretrain --out {run_dir} --resume")
        super().__init__(f"stopped by {name} at step {step}; {saved}. {then}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
