"""Progress as plain text lines, for output that is not a terminal (``make demo > log``, a cluster job).

Rich's bar draws nothing when stdout is a file, so a long run there printed nothing at all. This
callback prints one line every ``every_s`` seconds (and at the first steps and the last one):
step / total, loss, images per second and the estimated time left, measured on this run's own steps
since the run (or the resume) started.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

from lightning.pytorch.callbacks import Callback

__all__ = ["PlainProgress", "format_duration"]


def format_duration(seconds: float) -> str:
    """``75`` → ``1 min 15 s``; ``7300`` → ``2 h 2 min``."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, s = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {s} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


class PlainProgress(Callback):
    """Print ``step N/T · loss · images/s · ETA`` lines; the first after ``first_at`` steps gives the run's estimate."""

    def __init__(self, total_steps: int, images_per_step: int, every_s: float = 30.0, first_at: int = 3,
                 log: Callable[[str], None] = print, clock: Callable[[], float] = time.perf_counter):
        self.total, self.images_per_step = total_steps, images_per_step
        self.every_s, self.first_at, self._emit, self.clock = every_s, first_at, log, clock
        self._start: Optional[float] = None
        self._start_step = 0
        self._last_print = 0.0

    def on_train_start(self, trainer, pl_module) -> None:
        self._start = self.clock()
        self._start_step = trainer.global_step
        self._last_print = self._start

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not trainer.is_global_zero or self._start is None:
            return
        now, step = self.clock(), trainer.global_step
        done = step - self._start_step
        first = done == self.first_at
        if not (first or step >= self.total or now - self._last_print >= self.every_s):
            return
        self._last_print = now
        elapsed = now - self._start
        per_step = elapsed / max(1, done)
        loss = trainer.callback_metrics.get("train/loss")
        parts = [f"step {step}/{self.total}"]
        if loss is not None:
            parts.append(f"loss {float(loss):.4f}")
        parts.append(f"{self.images_per_step / per_step:.0f} images/s" if per_step > 0 else "")
        left = (self.total - step) * per_step
        parts.append("done" if step >= self.total else f"ETA {format_duration(left)}")
        self._emit(" · ".join(p for p in parts if p))
        if first and step < self.total:
            self._emit(f"estimated time for the {self.total - self._start_step} steps of this run: "
                     f"{format_duration(per_step * (self.total - self._start_step))} (from its first {done} steps)")
