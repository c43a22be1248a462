"""The loop helper the training loops outside the engine share: seeding, progress, the finite-loss check, atomic
saves — and that those loops use it instead of their own copies."""

import ast
import io
import math
from pathlib import Path

import pytest
import torch

from sslkit.config import ConfigError
from sslkit.training_loop import TrainingLoop

SRC = Path(__file__).resolve().parents[2] / "src" / "sslkit"

# The training loops outside the engine (issue 20): each must seed, check and show progress through TrainingLoop.
LOOP_MODULES = {
    "analysis/grok/training.py": "train_grok",
    "analysis/denoise.py": "train_denoiser",
    "analysis/sae.py": "train_pam_sgd",
    "analysis/synthetic_mixing.py": "train_encoder",
    "analysis/ssti_vision.py": "vision_ssti_audit",
    "llm/lora.py": "finetune_lora_classifier",
    "eval/segmentation.py": "segmentation_probe",
    "eval/finetune/training.py": "fit",
}


def test_the_global_rng_is_seeded_inside_and_restored_after():
    torch.manual_seed(123)
    expected_after = torch.rand(3)
    torch.manual_seed(123)
    with TrainingLoop("x", seed=7):
        inside = torch.rand(3)
    after = torch.rand(3)
    torch.manual_seed(7)
    assert torch.equal(inside, torch.rand(3))  # seeded with 7 inside
    assert torch.equal(after, expected_after)  # the caller's stream continues as if nothing happened


def test_the_rng_is_restored_when_the_loop_fails():
    torch.manual_seed(5)
    expected = torch.rand(2)
    torch.manual_seed(5)
    with pytest.raises(RuntimeError):
        with TrainingLoop("x", seed=1):
            torch.rand(10)
            raise RuntimeError("boom")
    assert torch.equal(torch.rand(2), expected)


def test_numpy_and_python_rngs_are_seeded_and_restored_on_request():
    import random

    import numpy as np

    from sslkit.training_loop import seeded

    np.random.seed(1)
    random.seed(1)
    expected = (np.random.rand(), random.random())
    np.random.seed(1)
    random.seed(1)
    with seeded(5, numpy_and_python=True):
        inside = (np.random.rand(), random.random())
    assert (np.random.rand(), random.random()) == expected
    np.random.seed(5)
    random.seed(5)
    assert inside == (np.random.rand(), random.random())


def test_seed_none_leaves_the_global_rng_alone():
    torch.manual_seed(9)
    expected = torch.rand(4)
    torch.manual_seed(9)
    with TrainingLoop("x", generator_seed=3) as loop:
        first = torch.rand(2)
        drawn = torch.rand(2, generator=loop.generator)
    rest = torch.rand(2)
    assert torch.equal(torch.cat([first, rest]), expected)
    assert torch.equal(drawn, torch.rand(2, generator=torch.Generator().manual_seed(3)))


def test_the_generator_follows_seed_unless_given_its_own():
    with TrainingLoop("x", seed=4) as a, TrainingLoop("y", seed=4, generator_seed=11) as b:
        assert torch.equal(torch.rand(3, generator=a.generator), torch.rand(3, generator=torch.Generator().manual_seed(4)))
        assert torch.equal(torch.rand(3, generator=b.generator), torch.rand(3, generator=torch.Generator().manual_seed(11)))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_loss_is_one_sentence_naming_the_loop_and_step(bad):
    with TrainingLoop("denoiser", hint="lower --lr") as loop:
        assert loop.check(torch.tensor(2.5)) == 2.5
        loop.advance()
        loop.advance()
        with pytest.raises(FloatingPointError, match=r"^The denoiser loss became (nan|inf|-inf) at step 3; lower --lr\.$"):
            loop.check(torch.tensor(bad))
        with pytest.raises(FloatingPointError, match=r"at epoch 4;"):
            loop.check(bad, "epoch 4")
    with TrainingLoop("LoRA", error=ConfigError) as loop, pytest.raises(ConfigError):
        loop.check(bad)


def test_progress_counts_steps_and_the_bar_goes_away():
    from rich.console import Console

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=80)
    with TrainingLoop("toy", steps=4, progress=True, console=console) as loop:
        for value in (4.0, 3.0, 2.0, 1.0):
            loop.advance(torch.tensor(value))
        assert loop.bar.live and loop.bar.completed == 4 and loop.bar.label == "toy loss 1"
    assert loop.step == 4 and loop.last_loss == 1.0
    assert not loop.bar.live  # stopped on exit (transient: nothing left on screen)
    with pytest.raises(KeyError):
        with TrainingLoop("toy", steps=2, progress=True, console=console) as failing:
            raise KeyError("x")
    assert not failing.bar.live  # also stopped when the loop fails
    with TrainingLoop("quiet", steps=2) as quiet:
        quiet.advance(1.0)
        assert not quiet.bar.live and quiet.bar.completed == 0  # progress=False draws nothing


def test_negative_steps_are_refused():
    with pytest.raises(ValueError, match="steps must be ≥ 0"):
        TrainingLoop("x", steps=-1)


def test_save_is_atomic(tmp_path):
    path = tmp_path / "model.pt"
    with TrainingLoop("x") as loop:
        loop.save(path, {"w": torch.ones(3)})
        with pytest.raises(Exception):
            loop.save(path, {"w": lambda: None})  # cannot be pickled: the write fails half-way
    assert torch.equal(torch.load(path)["w"], torch.ones(3))  # the previous file is whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]  # no temporary left behind


def test_seeded_loops_give_the_same_run_twice():
    from sslkit.analysis.synthetic_mixing import EncoderTrainingConfig, MixingConfig, SyntheticMixing, train_encoder

    world = SyntheticMixing(MixingConfig(seed=0))
    config = EncoderTrainingConfig(steps=5, batch_size=32, seed=3)
    first, second = train_encoder(world, config), train_encoder(world, config)
    assert first.losses == second.losses and len(first.losses) == 5


@pytest.mark.parametrize("relative, function", sorted(LOOP_MODULES.items()))
def test_each_out_of_engine_loop_goes_through_the_helper(relative, function):
    """No loop module keeps its own copy of the seeding, progress bar or finite-loss check."""
    source = (SRC / relative).read_text()
    tree = ast.parse(source)
    names = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    assert function in names, f"{relative} no longer defines {function}; update LOOP_MODULES"
    assert "TrainingLoop(" in source
    for own_copy in ("require_finite", "fork_rng", "torch.manual_seed(", "rich.progress"):
        assert own_copy not in source, f"{relative} still does its own {own_copy}; use sslkit.training_loop.TrainingLoop"
