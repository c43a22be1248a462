"""A DINOv2 loss weight of 0 switches its term off without computing it (issue 20, item 1): DINO-only
(``ibot_weight: 0``), iBOT-only (``dino_weight: 0``) and no KoLeo, as config values and as recipes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import sslkit.methods.dinov2 as dinov2_module
from sslkit.config import ConfigError, load_config
from sslkit.data.collate import MultiCropCollate
from sslkit.engine.builders import build_method, build_views
from sslkit.methods.dinov2 import DINOv2, DINOv2LossConfig
from sslkit.nn.heads import DINOHead
from sslkit.nn.vit import build_vit

ROOT = Path(__file__).resolve().parents[2]


def make(dino=1.0, ibot=1.0, koleo=0.1) -> DINOv2:
    torch.manual_seed(0)
    backbone = build_vit("vit_tiny", depth=1, embed_dim=32, num_heads=2, img_size=16, patch_size=4)
    cfg = DINOv2LossConfig(n_global=2, n_local=2, dino_weight=dino, ibot_weight=ibot, koleo_weight=koleo)
    return DINOv2(backbone, DINOHead(32, 64, hidden_dim=48, bottleneck_dim=16), cfg)


def batch(mask_probability=0.5, seed=0) -> dict:
    g = torch.Generator().manual_seed(seed)
    items = [{"image": {"global": [torch.randn(3, 16, 16, generator=g) for _ in range(2)],
                        "local": [torch.randn(3, 8, 8, generator=g) for _ in range(2)]},
              "label": 0, "position": i} for i in range(6)]
    return MultiCropCollate(4, mask_probability=mask_probability, seed=seed)(items)


def _forbid(monkeypatch, name):
    def refuse(*args, **kwargs):
        raise AssertionError(f"{name} was computed although its weight is 0")

    monkeypatch.setattr(dinov2_module, name, refuse)


def test_zero_weights_do_not_compute_their_terms(monkeypatch):
    b = batch(mask_probability=1.0)
    full = make()(b, teacher_temp=0.04)
    assert full["ibot_loss"] > 0 and full["dino_loss"] > 0 and full["koleo_loss"] != 0

    _forbid(monkeypatch, "ibot_patch_loss")
    out = make(ibot=0.0)(b, teacher_temp=0.04)
    assert out["ibot_loss"] == 0 and out["loss"].item() == pytest.approx(
        (out["dino_loss"] + 0.1 * out["koleo_loss"]).item(), rel=1e-6)
    monkeypatch.undo()

    _forbid(monkeypatch, "dino_loss")
    _forbid(monkeypatch, "koleo_loss")
    calls = []
    method = make(dino=0.0, koleo=0.0)
    original = method.student["backbone"].forward_features
    monkeypatch.setattr(method.student["backbone"], "forward_features",
                        lambda x, **kw: calls.append(x.shape[-1]) or original(x, **kw))
    out = method(b, teacher_temp=0.04)
    assert out["loss"].item() == pytest.approx(out["ibot_loss"].item(), rel=1e-6) and out["ibot_loss"] > 0
    assert calls == [16]  # the global crops only: no local crop goes through the student for iBOT-only
    out["loss"].backward()
    assert method.student["backbone"].mask_token.grad.abs().sum() > 0  # iBOT trains the mask token


def test_config_rules_follow_the_weights():
    dino_only = load_config(ROOT / "recipes/dino-only-tiny.yaml")
    ibot_only = load_config(ROOT / "recipes/ibot-only-tiny.yaml")
    assert dino_only.dinov2.ibot_weight == 0 and ibot_only.dinov2.dino_weight == 0 and ibot_only.crops.n_local == 0
    # DINO-only: no masks from the collate, and the mask token is frozen (DDP would stop on an unused one).
    _, collate = build_views(load_config(ROOT / "recipes/dino-only-tiny.yaml", ["dinov2.mask_probability=0.5"]),
                             3, (0.5,) * 3, (0.5,) * 3)
    assert collate.mask_probability == 0.0
    assert not build_method(dino_only, 3).student["backbone"].mask_token.requires_grad
    assert build_method(ibot_only, 3).student["backbone"].mask_token.requires_grad
    # iBOT-only needs no DINO pair (one global crop is fine) but does need masks.
    load_config(ROOT / "recipes/ibot-only-tiny.yaml", ["crops.n_global=1"])
    with pytest.raises(ConfigError, match="iBOT-only"):
        load_config(ROOT / "recipes/ibot-only-tiny.yaml", ["dinov2.mask_probability=0"])
    with pytest.raises(ConfigError, match="leave no DINO pair"):
        load_config(ROOT / "recipes/dino-only-tiny.yaml", ["crops.n_global=1", "crops.n_local=0"])
    with pytest.raises(ConfigError, match="all 0"):
        load_config(ROOT / "recipes/dino-only-tiny.yaml", ["dinov2.dino_weight=0", "dinov2.koleo_weight=0"])


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["dino-only-tiny", "ibot-only-tiny"])
def test_recipes_train_from_the_cli(tmp_path, recipe):
    from sslkit.cli import main

    out = tmp_path / recipe
    assert main(["pretrain", "--recipe", str(ROOT / f"recipes/{recipe}.yaml"), "--out", str(out),
                 "data.source=digits", "data.image_size=16", "crops.global_size=16", "crops.local_size=8",
                 "model.embed_dim=32", "model.depth=1", "model.num_heads=2", "dinov2.head_out_dim=64",
                 "dinov2.head_hidden_dim=48", "dinov2.head_bottleneck_dim=16", "optim.epochs=0.2",
                 "optim.warmup_epochs=0.05", "dinov2.warmup_teacher_temp_epochs=0.05",
                 "optim.freeze_last_layer_epochs=0", "monitor.knn_every_n_steps=0", "trainer.progress_bar=false",
                 "trainer.checkpoint_every_n_steps=0", "trainer.log_every_n_steps=1"]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    logged = [row for row in rows if "train/loss" in row]
    zero = "train/ibot_loss" if recipe == "dino-only-tiny" else "train/dino_loss"
    assert logged and all(row[zero] == 0 for row in logged)
