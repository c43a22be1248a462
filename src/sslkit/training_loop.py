"""What every training loop outside the Lightning engine shares: seeding, a progress bar, the finite-loss check,
the elapsed time and an atomic save.

The loops it serves (grok, the Neighbor2Neighbor denoiser, the SAE trainers, the synthetic-mixing encoders,
text and vision LoRA, the segmentation probe, fine-tuning) differ in what a step is, so this is not a
trainer: it owns only the parts that were written nine times before, and the loop body stays with the method::

    with TrainingLoop("denoiser", steps=total, seed=cfg.seed, progress=True, hint="lower --lr") as loop:
        model = UNet(...)                        # drawn from torch's global RNG, seeded with cfg.seed
        for step in range(total):
            batch = sample(loop.generator)       # the loop's own generator, seeded with cfg.seed too
            loss = ...
            loop.check(loss)                     # NaN/inf: one sentence naming the loop, the step and the hint
            ...
            loop.advance(loss)                   # progress bar (with the loss) and the step count
        loop.save(path, model.state_dict())      # through a temporary file and a rename

Seeding forks torch's global CPU RNG for the duration of the ``with`` block: inside it the global RNG starts
from ``seed`` (so weight init, dropout and anything else drawn from it are reproducible), and the caller's
RNG is exactly as it was afterwards. ``seed=None`` leaves the global RNG alone.

The bar is rich's, transient (it disappears when the loop ends, also on an exception), and drawn only when
``progress=True``. The engine has its own progress bar and finite-loss check (``sslkit.engine``).
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any, Iterator

import torch

from sslkit.atomic_files import torch_save_atomic
from sslkit.finite_loss import require_finite


@contextlib.contextmanager
def seeded(seed: int, *, numpy_and_python: bool = False) -> Iterator[None]:
    """Inside the block torch's global CPU RNG starts from ``seed``; afterwards the caller's RNG is as it was
    (for seeded weight init that must not shift the caller's random stream).

    ``numpy_and_python=True`` does the same for numpy's and Python's global generators (for code that draws
    from them, such as timm's Mixup/CutMix)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if not numpy_and_python:
            yield
            return
        import random

        import numpy as np

        numpy_state, python_state = np.random.get_state(), random.getstate()
        np.random.seed(seed % 2**32)
        random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(numpy_state)
            random.setstate(python_state)


class ProgressBar:
    """A transient rich progress bar, or nothing when ``enabled`` is false (``advance`` is then free).

    Use it as a context manager: the bar is drawn inside the block and removed when it ends, also on an
    exception. ``total=None`` is an open-ended bar."""

    def __init__(self, description: str, total: int | None = None, enabled: bool = True, console: Any = None):
        self.description = description
        self.total = total
        self.enabled = enabled
        self._console = console
        self._bar = None
        self._task = None

    def __enter__(self) -> "ProgressBar":
        if self.enabled:
            from rich.progress import Progress

            self._bar = Progress(transient=True, console=self._console)
            self._task = self._bar.add_task(self.description, total=self.total)
            self._bar.start()
        return self

    def __exit__(self, *exc_info) -> None:
        if self._bar is not None:
            self._bar.stop()

    @property
    def live(self) -> bool:
        """Whether the bar is on screen now."""
        return self._bar is not None and self._bar.live.is_started

    @property
    def completed(self) -> float:
        return self._bar.tasks[0].completed if self._bar is not None else 0.0

    @property
    def label(self) -> str:
        return self._bar.tasks[0].description if self._bar is not None else self.description

    def advance(self, n: int = 1, description: str | None = None) -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=n, description=description or self.description)


class TrainingLoop:
    """A context manager for one training loop; see the module docstring.

    Args:
        name: what is trained, as the error and the bar name it ("denoiser", "vision LoRA", ...).
        steps: the number of :meth:`advance` calls expected (the bar's total); ``None`` when unknown.
        seed: seeds torch's global RNG inside the block (forked: the caller's RNG is restored on exit)
            and :attr:`generator`. ``None``: the global RNG is left alone.
        generator_seed: seeds :attr:`generator` instead of ``seed`` (for loops whose data order is seeded
            apart from their weights).
        progress: draw a transient rich progress bar.
        hint: what to do when the loss stops being finite ("lower --lr").
        error: the exception type of the finite-loss check (``FloatingPointError``, or ``ConfigError`` where
            the caller treats a diverging loss as a bad setting).
        console: the rich console the bar is drawn on (tests pass one that writes to a buffer).
    """

    def __init__(self, name: str, *, steps: int | None = None, seed: int | None = None,
                 generator_seed: int | None = None, progress: bool = False, hint: str = "lower the learning rate",
                 error: type[Exception] = FloatingPointError, console: Any = None):
        if steps is not None and steps < 0:
            raise ValueError(f"TrainingLoop {name!r}: steps must be ≥ 0, got {steps}.")
        self.name = name
        self.steps = steps
        self.seed = seed
        self.hint = hint
        self.error = error
        self.step = 0
        self.last_loss: float | None = None
        gen_seed = generator_seed if generator_seed is not None else seed
        self.generator = torch.Generator()
        if gen_seed is not None:
            self.generator.manual_seed(gen_seed)
        self.bar = ProgressBar(name, steps, enabled=progress, console=console)
        self._stack = contextlib.ExitStack()
        self._started = 0.0

    # ------------------------------------------------------------------ the block
    def __enter__(self) -> "TrainingLoop":
        self._started = time.perf_counter()
        try:
            if self.seed is not None:
                self._stack.enter_context(seeded(self.seed))
            self._stack.enter_context(self.bar)
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self._stack.close()  # stops the bar, then restores the caller's RNG

    # ------------------------------------------------------------------ during the loop
    def check(self, loss: torch.Tensor | float, where: str | None = None) -> float:
        """``loss`` as a float; stops the run with one sentence if it is NaN or ±inf.
        ``where`` defaults to the step about to be counted ("step 12")."""
        value = require_finite(loss, self.name, where or f"step {self.step + 1}", self.hint, error=self.error)
        self.last_loss = value
        return value

    def advance(self, loss: torch.Tensor | float | None = None, n: int = 1) -> None:
        """Count ``n`` steps and move the bar; a given ``loss`` is shown next to the name."""
        self.step += n
        if loss is not None:
            self.last_loss = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
        self.bar.advance(n, self.name if self.last_loss is None else f"{self.name} loss {self.last_loss:.4g}")

    @property
    def seconds(self) -> float:
        """Wall time since the block was entered."""
        return time.perf_counter() - self._started

    def save(self, path: str | os.PathLike, obj: Any, *, fsync: bool = False) -> None:
        """``torch.save(obj)`` to ``path`` through a temporary file and a rename (``sslkit.atomic_files``):
        a crash or a failed write leaves the previous file whole."""
        torch_save_atomic(path, obj, fsync=fsync)
