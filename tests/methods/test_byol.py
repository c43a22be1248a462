"""BYOL (arXiv 2006.07733): the loss against hand-computed values, the target network's EMA, the method's
outputs, and that a CLI run trains and exports. Nothing here edits any other method's file."""

from __future__ import annotations

import json
import math

import pytest
import torch

from sslkit.config import load_config
from sslkit.engine.builders import build_method
from sslkit.functional.byol import byol_regression_loss, symmetric_byol_loss
from sslkit.methods.byol import BYOL, BYOLMLP

SMALL = {"method": "byol",
         "model": {"arch": "vit_tiny", "patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 2,
                   "layerscale_init": None, "drop_path_rate": 0.0},
         "crops": {"global_size": 16, "n_global": 2, "n_local": 0},
         "byol": {"projector_hidden_dim": 64, "projector_out_dim": 16, "predictor_hidden_dim": 48}}


def test_regression_loss_by_hand():
    # Row 1: the same direction at different lengths -> 0. Row 2: orthogonal -> 2. Row 3: opposite -> 4.
    # Row 4: 60 degrees apart -> 2 - 2 cos 60 = 1. The mean is (0 + 2 + 4 + 1) / 4 = 1.75.
    c, s = math.cos(math.pi / 3), math.sin(math.pi / 3)
    p = torch.tensor([[3.0, 0.0], [1.0, 0.0], [0.0, 2.0], [1.0, 0.0]])
    z = torch.tensor([[0.5, 0.0], [0.0, 5.0], [0.0, -1.0], [c, s]])
    assert byol_regression_loss(p, z).item() == pytest.approx(1.75, abs=1e-6)
    # Symmetric: L(q1, z2') + L(q2, z1'), each direction its own pairing.
    assert symmetric_byol_loss(p, z, z, p).item() == pytest.approx(
        byol_regression_loss(p, p).item() + byol_regression_loss(z, z).item(), abs=1e-6)
    assert symmetric_byol_loss(p, z, p, z).item() == pytest.approx(2 * 1.75, abs=1e-6)


def test_target_gets_no_gradient_and_shapes_are_checked():
    p = torch.randn(5, 8, requires_grad=True)
    z = torch.randn(5, 8, requires_grad=True)
    byol_regression_loss(p, z).backward()
    assert p.grad.abs().sum() > 0 and z.grad is None
    with pytest.raises(ValueError, match="one shape"):
        byol_regression_loss(torch.randn(4, 8), torch.randn(4, 7))


def _method() -> BYOL:
    torch.manual_seed(0)
    return build_method(load_config(SMALL), in_chans=3).train()


def test_target_mirrors_backbone_and_projector_but_not_the_predictor():
    m = _method()
    assert set(m.teacher) == {"backbone", "projector"} and "predictor" in m.student
    assert not any(p.requires_grad for p in m.teacher.parameters())
    torch.testing.assert_close(m.teacher["projector"].net[0].weight, m.student["projector"].net[0].weight)
    assert isinstance(m.student["predictor"], BYOLMLP) and m.student["predictor"].net[-1].bias is not None
    # The target's BatchNorms use batch statistics (the reference runs it in training mode); its ViT does not
    # drop paths.
    assert all(bn.training for bn in m.teacher.modules() if isinstance(bn, torch.nn.BatchNorm1d))
    assert not m.teacher["backbone"].training


def test_one_step_then_ema_moves_the_target_toward_the_online_network():
    m = _method()
    batch = {"global_crops": torch.randn(16, 3, 16, 16, generator=torch.Generator().manual_seed(1))}
    out = m(batch)
    assert set(out) == {"loss", "byol_loss", "embedding"} and out["embedding"].shape == (8, 32)
    assert 0 <= out["loss"].item() <= 8  # two terms, each in [0, 4]
    out["loss"].backward()
    assert m.student["predictor"].net[0].weight.grad.abs().sum() > 0
    assert m.student["backbone"].patch_embed.proj.weight.grad.abs().sum() > 0
    before = m.teacher["projector"].net[0].weight.clone()
    with torch.no_grad():
        m.student["projector"].net[0].weight.add_(1.0)
    m.update_teacher(0.9)  # θ' ← 0.9 θ' + 0.1 θ
    torch.testing.assert_close(m.teacher["projector"].net[0].weight,
                               0.9 * before + 0.1 * m.student["projector"].net[0].weight)
    m.update_teacher(1.0)  # τ = 1 leaves the target unchanged
    assert m.eval_backbone is m.student["backbone"]  # BYOL keeps the online encoder


def test_byol_section_is_validated_like_every_other():
    from sslkit.config import ConfigError

    with pytest.raises(ConfigError, match="byol.projector_out_dim"):
        load_config({**SMALL, "byol": {"projector_out_dim": 0}})
    with pytest.raises(ConfigError, match="compares two views"):
        load_config({**SMALL, "crops": {**SMALL["crops"], "n_local": 2}})


@pytest.mark.slow
def test_cli_run_trains_and_exports(tmp_path):
    from pathlib import Path

    from sslkit.cli import main

    recipe = Path(__file__).resolve().parents[2] / "recipes" / "byol-tiny.yaml"
    out = tmp_path / "run"
    args = ["pretrain", "--recipe", str(recipe), "--out", str(out), "data.source=digits", "data.image_size=16",
            "crops.global_size=16", "model.embed_dim=32", "model.depth=1", "model.num_heads=2",
            "byol.projector_hidden_dim=64", "byol.predictor_hidden_dim=64", "optim.epochs=0.2",
            "optim.warmup_epochs=0.05",
            "monitor.knn_every_n_steps=0", "trainer.progress_bar=false", "trainer.checkpoint_every_n_steps=0",
            "trainer.log_every_n_steps=1"]
    assert main(args) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["steps"] >= 4 and math.isfinite(report["final_loss"])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("schedule/momentum" in row for row in rows)  # the EMA schedule is logged for a teacher
    assert (out / "backbone.safetensors").is_file()
