"""Every shipped recipe runs one step on its own default data (issue 23, item 5).

The recipe's data, schedules and curriculum are kept (a warm-up longer than a stage is a schedule
error that only the real data size shows); the step count and monitoring are cut so that CI can
afford them. The ViT-S/B recipes (fixed iters_per_epoch) get their schedules built instead of a step. A recipe whose default data is a path the user makes
first (the noisy-DINOv2 recipes) must say so in one sentence.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sslkit.cli import main
from sslkit.config import load_config

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
BUILT_IN = ("shapes", "glyphs", "digits")
ONE_STEP = ["trainer.max_steps=1", "trainer.progress_bar=false", "trainer.checkpoint_every_n_steps=0",
            "monitor.knn_every_n_steps=0", "monitor.baselines=false", "monitor.count_flops=false",
            "monitor.max_bank_size=64"]
LARGE = ("dinov2-vits16.yaml", "fast-dinov2-vitb16.yaml", "dinov2-continue-vits14.yaml")


def recipes(built_in: bool) -> list[str]:
    return sorted(p.name for p in RECIPES.glob("*.yaml")
                  if (load_config(p).data.source in BUILT_IN) == built_in)


@pytest.mark.parametrize("name", [n for n in recipes(built_in=True) if n not in LARGE])
def test_recipe_runs_one_step_on_its_default_data(tmp_path, name):
    assert main(["pretrain", "--recipe", str(RECIPES / name), "--out", str(tmp_path / "run"), *ONE_STEP]) == 0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["steps"] == 1 and report["final_loss"] is not None


@pytest.mark.parametrize("name", recipes(built_in=False))
def test_recipe_on_data_to_be_made_says_so(tmp_path, capsys, name):
    source = load_config(RECIPES / name).data.source
    assert main(["pretrain", "--recipe", str(RECIPES / name), "--out", str(tmp_path / "run"), *ONE_STEP]) == 2
    err = capsys.readouterr().err
    assert source in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", LARGE)
def test_large_recipe_schedules_fit_its_default_data(name):
    """A ViT-S/B step at 224 px with 10 crops costs minutes on a CPU: build what can fail without one."""
    from sslkit.engine.builders import build_schedules

    cfg = load_config(RECIPES / name)
    schedules = build_schedules(cfg, cfg.optim.iters_per_epoch, cfg.optim.batch_size)
    assert schedules.total_iters == cfg.optim.epochs * cfg.optim.iters_per_epoch
