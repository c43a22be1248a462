"""Plain-text progress lines when output is not a terminal (issue 23, item 5)."""

from types import SimpleNamespace

import torch

from sslkit.engine.plain_progress import PlainProgress, format_duration


def test_format_duration():
    assert [format_duration(s) for s in (0, 59.4, 75, 3600, 7300)] == ["0 s", "59 s", "1 min 15 s", "1 h 0 min",
                                                                      "2 h 1 min"]


def test_lines_give_step_loss_rate_and_eta_from_the_runs_own_steps():
    now = [100.0]
    lines = []
    progress = PlainProgress(total_steps=100, images_per_step=64, every_s=30, first_at=3, log=lines.append,
                             clock=lambda: now[0])
    trainer = SimpleNamespace(global_step=20, is_global_zero=True, callback_metrics={"train/loss": torch.tensor(5.25)})
    progress.on_train_start(trainer, None)  # a resume at step 20
    for step in range(21, 101):
        now[0] += 2.0  # 2 s per step of 64 images
        trainer.global_step = step
        progress.on_train_batch_end(trainer, None, None, None, None)
    assert lines[0] == "step 23/100 · loss 5.2500 · 32 images/s · ETA 2 min 34 s"
    assert lines[1] == "estimated time for the 80 steps of this run: 2 min 40 s (from its first 3 steps)"
    assert lines[-1] == "step 100/100 · loss 5.2500 · 32 images/s · done"
    # Then one line per 30 s: steps 38, 53, 68, 83, 98, and the last one.
    assert [line.split(" ·")[0] for line in lines[2:]] == [f"step {s}/100" for s in (38, 53, 68, 83, 98, 100)]


def test_the_rich_bar_counts_the_runs_steps_also_after_a_resume():
    """A resumed run showed '12/5' (this process's batches against the steps left); now step / total."""
    from types import SimpleNamespace

    from sslkit.engine.run import StepProgressBar

    bar = StepProgressBar()
    seen = []
    bar._update = lambda task, value: seen.append(value)
    bar._update_metrics = lambda *a: None
    bar.refresh = lambda: None
    bar.train_progress_bar_id = 0
    trainer = SimpleNamespace(max_steps=20, global_step=13)
    bar._trainer = trainer
    assert bar.total_train_batches == 20
    bar.on_train_batch_end(trainer, None, None, None, batch_idx=0)  # first batch of the resumed process
    assert seen == [13]
