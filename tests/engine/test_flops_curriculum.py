from __future__ import annotations

import pytest
import torch

from sslkit.engine.flops import cumulative_flops, parse_stages, recipe_flops, step_flops
from sslkit.config import ConfigError, load_config

VITS = {"vit_tiny": (192, 12), "vit_small": (384, 12), "vit_base": (768, 12)}


def _cfg(arch: str = "vit_small", *extra: str):
    return load_config("recipes/dinov2-vits16.yaml", [f"model.arch={arch}", "trainer.devices=1", *extra])


def _vit_forward_closed_form(size: int, dim: int, depth: int, patch: int = 16, chans: int = 3) -> int:
    """2 FLOPs per multiply-add: qkv + proj (4 n D²), MLP (8 n D²), QKᵀ and AV (2 n² D) per block; patch embed."""
    patches = (size // patch) ** 2
    n = patches + 1
    block = 2 * (4 * n * dim * dim + 8 * n * dim * dim + 2 * n * n * dim)
    return depth * block + 2 * patches * chans * patch * patch * dim


ARCH_PARAMS = [pytest.param("vit_tiny"), pytest.param("vit_small", marks=pytest.mark.slow),
               pytest.param("vit_base", marks=pytest.mark.slow)]
ANALYTIC = {"vit_tiny": 2.33, "vit_small": 2.29, "vit_base": 2.27}  # spec check 1


@pytest.fixture(scope="module", params=ARCH_PARAMS)
def arch_flops(request):
    """(arch, {crops: step FLOPs}) at 224/96 and 112/48 on the meta device (about 1.5 s per arch)."""
    from sslkit.engine.flops import build_on_meta

    cfg = _cfg(request.param)
    method = build_on_meta(cfg, 3)
    return request.param, {crops: step_flops(cfg, crops, method=method) for crops in ((224, 96), (112, 48))}


def test_backbone_forward_matches_closed_form(arch_flops):
    arch, flops = arch_flops
    dim, depth = VITS[arch]
    for (g, l), s in flops.items():
        assert s["backbone_forward"]["global"] == _vit_forward_closed_form(g, dim, depth)
        assert s["backbone_forward"]["local"] == _vit_forward_closed_form(l, dim, depth)
    assert flops[(112, 48)]["tokens"] == {"global": 50, "local": 10}
    assert flops[(224, 96)]["tokens"] == {"global": 197, "local": 37}


def test_spec_check1_backbone_ratio(arch_flops):
    """Spec check 1: F(224/96) / (0.75 F(112/48) + 0.25 F(224/96)), heads excluded, within 2.2-2.35."""
    arch, flops = arch_flops
    high, low = flops[(224, 96)]["backbone"], flops[(112, 48)]["backbone"]
    ratio = high / (0.75 * low + 0.25 * high)
    assert 2.2 <= ratio <= 2.35
    assert ratio == pytest.approx(ANALYTIC[arch], abs=0.006)


def test_issue_full_recipe_ratio(arch_flops):
    """The issue: 2x224 + 8x96 crops, first 75 % at 112/48, heads included: 2.1-2.4x (paper: ViT-B/16)."""
    _, flops = arch_flops
    high, low = flops[(224, 96)], flops[(112, 48)]
    ratio = high["total"] / (0.75 * low["total"] + 0.25 * high["total"])
    assert 2.1 <= ratio <= 2.4
    # the 65 536-way heads barely shrink with the crops, so they make the saving slightly smaller
    assert ratio < high["backbone"] / (0.75 * low["backbone"] + 0.25 * high["backbone"])
    assert high["per_image"]["heads"] > 0.02 * high["per_image"]["total"]


def test_recipe_flops_sums_the_stages():
    cfg = _cfg("vit_tiny", "model.depth=2")
    r = recipe_flops(cfg, [(0.75, 112, 48), (0.25, 224, 96)], total_steps=400)
    high, low = step_flops(cfg, (224, 96)), step_flops(cfg, (112, 48))
    assert [s["steps"] for s in r["stages"]] == [300, 100]
    assert r["total"] == pytest.approx(300 * low["total"] + 100 * high["total"])
    assert r["ratio_to_full_resolution"] == pytest.approx(400 * high["total"] / r["total"])
    assert r["backbone_ratio"] == pytest.approx(400 * high["backbone"] / (300 * low["backbone"] + 100 * high["backbone"]))


def test_head_flops_closed_form_and_linear_in_batch():
    cfg = _cfg("vit_tiny", "model.depth=1", "dinov2.head_out_dim=1000", "dinov2.head_hidden_dim=64", "dinov2.head_bottleneck_dim=32",
                "optim.batch_size=4")
    s = step_flops(cfg, (64, 32))
    d, h, b, k = 192, 64, 32, 1000
    per_token = 2 * (d * h + h * h + h * b + b * k)
    masked = 2 * 16 * 0.5 * 0.3  # n_g x patches x p x mean ratio
    expected_student = 3 * ((2 + 8) * per_token + masked * per_token)
    assert s["per_image"]["student_heads"] == pytest.approx(expected_student, rel=1e-6)
    assert s["per_image"]["teacher_heads"] == pytest.approx((2 + masked) * per_token, rel=1e-6)
    assert s["total"] == pytest.approx(4 * s["per_image"]["total"])
    doubled = step_flops(load_config(None, [f"{o}" for o in ["model.arch=vit_tiny", "model.depth=1", "dinov2.head_out_dim=1000",
                                                              "dinov2.head_hidden_dim=64",
                                                              "dinov2.head_bottleneck_dim=32",
                                                              "optim.batch_size=4", "trainer.devices=2"]]), (64, 32))
    assert doubled["total"] == pytest.approx(2 * s["total"])


def test_meta_count_equals_a_real_forward_count():
    from torch.utils.flop_counter import FlopCounterMode

    from sslkit.engine.builders import build_backbone

    cfg = load_config(None, ["model.arch=vit_tiny", "model.depth=2", "model.patch_size=8", "crops.global_size=32",
                             "crops.local_size=16", "dinov2.head_out_dim=64", "dinov2.head_hidden_dim=32",
                             "dinov2.head_bottleneck_dim=16"])
    torch.manual_seed(0)
    backbone = build_backbone(cfg, 1)
    for block in backbone.blocks:  # the fused CPU attention kernel is invisible to FlopCounterMode
        block.attn.fused_attn = False
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        backbone.forward_features(torch.rand(3, 1, 32, 32))
    s = step_flops(cfg, (32, 16), in_chans=1)
    assert 3 * s["backbone_forward"]["global"] == counter.get_total_flops()


def test_stage_steps_and_max_steps():
    cfg = _cfg("vit_tiny", "model.depth=1", "optim.epochs=1", "optim.iters_per_epoch=10")
    r = recipe_flops(cfg, [(0.75, 112, 48), (0.25, 224, 96)])
    assert [s["steps"] for s in r["stages"]] == [8, 2]  # round(7.5) -> 8 boundary, remainder to the last stage
    cut = recipe_flops(_cfg("vit_tiny", "model.depth=1", "optim.epochs=1", "optim.iters_per_epoch=10", "trainer.max_steps=5"),
                       [(0.75, 112, 48), (0.25, 224, 96)])
    assert [s["steps"] for s in cut["stages"]] == [5, 0] and cut["steps"] == 5
    single = recipe_flops(cfg)
    assert single["ratio_to_full_resolution"] == pytest.approx(1.0)
    low, high = (row["step_flops"] for row in r["stages"])
    assert low < high
    assert [cumulative_flops(r, n) for n in (0, 3, 8, 9, 10)] == pytest.approx(
        [0, 3 * low, 8 * low, 8 * low + high, r["total"]])
    assert cumulative_flops(r, 12) == pytest.approx(r["total"] + 2 * high)


def test_parse_stages_and_errors():
    assert parse_stages("0.75:112:48, 0.25:224:96") == [(0.75, 112, 48), (0.25, 224, 96)]
    for bad in ("0.75:112:48", "0.5:112", "a:b:c", "0:112:48,1:224:96"):
        with pytest.raises(ConfigError):
            parse_stages(bad)
    with pytest.raises(ConfigError):
        step_flops(_cfg("vit_tiny"), (100, 48))
    with pytest.raises(ConfigError):
        recipe_flops(_cfg("vit_tiny", "optim.iters_per_epoch=null"))
    with pytest.raises(ConfigError):
        step_flops(load_config(None, ["method=simclr", "crops.n_local=0"]), (224, 96))


def test_stages_default_to_the_recipes_curriculum():
    from sslkit.engine.flops import stages_from_config
    from sslkit.config import RunConfig

    if not hasattr(RunConfig(), "curriculum"):
        pytest.skip("this RunConfig has no curriculum key")
    recipe = {"model": {"arch": "vit_tiny", "depth": 1}, "crops": {"global_size": 224, "local_size": 96},
              "optim": {"epochs": 1, "iters_per_epoch": 8},
              "curriculum": [{"fraction": 0.75, "global_size": 112, "local_size": 48}, {"fraction": 0.25}]}
    cfg = load_config(recipe)
    assert stages_from_config(cfg) == [(0.75, 112, 48), (0.25, 224, 96)]
    implicit = recipe_flops(cfg)
    explicit = recipe_flops(cfg, [(0.75, 112, 48), (0.25, 224, 96)])
    assert implicit["total"] == explicit["total"] and [s["steps"] for s in implicit["stages"]] == [6, 2]
    assert stages_from_config(load_config(None)) == [(1.0, 224, 96)]
