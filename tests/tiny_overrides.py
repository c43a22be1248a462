"""Recipe overrides that shrink dinov2-tiny.yaml to CI size: a 2-block width-64 ViT on 16-px images.

Shared by the tests that really pretrain (``pythonpath = ["tests"]`` in pyproject.toml makes it importable).
"""

from __future__ import annotations

_TINY_DINOV2 = {
    "data.image_size": 16, "crops.global_size": 16, "crops.local_size": 8, "crops.n_local": 2,
    "model.embed_dim": 64, "model.depth": 2, "model.num_heads": 2,
    "dinov2.head_out_dim": 256, "dinov2.head_hidden_dim": 128, "dinov2.head_bottleneck_dim": 64,
    "optim.batch_size": 16, "optim.iters_per_epoch": 4, "optim.epochs": 2, "optim.warmup_epochs": 0.5,
    "optim.freeze_last_layer_epochs": 0.25, "dinov2.warmup_teacher_temp_epochs": 1,
    "trainer.progress_bar": "false", "trainer.log_every_n_steps": 1, "trainer.checkpoint_every_n_steps": 4,
    "monitor.max_bank_size": 300, "monitor.baselines": "false",
}


def tiny_dinov2(changes: dict | None = None) -> list[str]:
    """``key=value`` overrides for ``sslkit pretrain --recipe recipes/dinov2-tiny.yaml`` (8 steps of batch 16).

    ``changes`` replaces or adds keys; a value of ``None`` drops the key (the recipe's value applies).
    """
    merged = {**_TINY_DINOV2, **(changes or {})}
    return [f"{key}={value}" for key, value in merged.items() if value is not None]
