"""The short pretraining runs of the learning-outcome tests (issue 18, item 3), in one place.

Shared by ``tests/learning/test_learning_outcomes.py`` (one seed, in CI) and
``benchmarks/learning_outcomes.py`` (the ≥ 5-seed measurement of the margins and the breakage matrix
that shows each test fails when learning is broken). Each run: the method's own tiny recipe, shrunk
to a 2-block width-64 ViT (patch 4) on the built-in ``digits`` at 16 px, 150 steps of batch 64, kNN
(k = 20, T = 0.07) on the 360 held-out digits at the end, against the same ViT at random init.

Why ``digits``: it is the one built-in set on which every method's ViT learns within a minute on 2
cores (on ``glyphs`` a ViT needs thousands of steps; README "Which built-in set shows what"). What the
tests compare is the random-init ViT, which scores 40–50 % here: raw pixels (97 %) are not the bar.
"""

from __future__ import annotations

from pathlib import Path

RECIPES = Path(__file__).resolve().parents[1] / "recipes"

STEPS = 150
# Methods whose run needs more steps than STEPS to learn on every seed (BYOL's target network trails the
# online one by ~1/(1 - tau) steps).
METHOD_STEPS = {"byol": 300}

_COMMON = {
    "data.source": "digits", "data.image_size": 16, "crops.global_size": 16,
    "model.embed_dim": 64, "model.depth": 2, "model.num_heads": 2, "model.patch_size": 4,
    "optim.batch_size": 64, "optim.iters_per_epoch": 50, "optim.warmup_epochs": 0.3,
    "monitor.knn_every_n_steps": 0, "monitor.baselines": "true",
    "trainer.progress_bar": "false", "trainer.log_every_n_steps": 25, "trainer.checkpoint_every_n_steps": 0,
}

# Per method: the recipe's own head, loss and augmentations, narrowed to the 64-wide ViT. The learning
# rates of SimCLR, VICReg and MAE are raised from the recipes' (peak 5e-4 at batch 64) so that 150 steps
# show learning; DINOv2 keeps its recipe's schedule.
METHOD_OVERRIDES = {
    "simclr": {"simclr.projector_hidden_dim": 256, "optim.base_lr": 0.008},
    "vicreg": {"vicreg.projector_hidden_dim": 256, "vicreg.projector_out_dim": 256, "optim.base_lr": 0.008},
    # MAE's loss trains the patch tokens, not the class token: its kNN scores their mean (and so does the
    # random-init baseline). With the class token a 150-step MAE stays below random init (36.7 vs 44.4 %).
    "mae": {"mae.decoder_dim": 64, "mae.decoder_num_heads": 2, "mae.decoder_depth": 1, "optim.base_lr": 0.006,
            "monitor.knn_pooling": "mean"},
    "dinov2": {"crops.local_size": 8, "crops.n_local": 2, "dinov2.head_out_dim": 1024,
               "dinov2.head_hidden_dim": 256, "dinov2.head_bottleneck_dim": 64},
    "byol": {"byol.projector_hidden_dim": 256, "byol.projector_out_dim": 64, "byol.predictor_hidden_dim": 256,
             "optim.base_lr": 0.008},
}

METHODS = tuple(METHOD_OVERRIDES)


def steps(method: str) -> int:
    """Optimiser steps of ``method``'s learning run."""
    return METHOD_STEPS.get(method, STEPS)


def learning_run_args(method: str, out: Path | str, seed: int = 0, changes: dict | None = None) -> list[str]:
    """``sslkit`` CLI arguments for the learning-outcome run of ``method`` into ``out``."""
    merged = {**_COMMON, "optim.epochs": steps(method) // 50, **METHOD_OVERRIDES[method], "trainer.seed": seed,
              **(changes or {})}
    return ["pretrain", "--recipe", str(RECIPES / f"{method}-tiny.yaml"), "--out", str(out),
            *[f"{key}={value}" for key, value in merged.items() if value is not None]]
