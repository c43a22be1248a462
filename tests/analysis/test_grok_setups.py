"""The grokking setups, regimes and training loop of ``sslkit.analysis.grok``."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sslkit.analysis.grok import (BiasFreeMLP, GrokConfig, GrokReport, OneLayerTransformer, digits_task,
                                  modadd_task, race_summary, run_grok, steps_to_threshold, train_grok)
from sslkit.config import ConfigError
from sslkit.functional.jacobian import centroid_stats

SMALL_DIGITS = dict(setup="digits", width=32, n_train=256, image_size=12, batch_size=128, eval_every=10,
                    max_steps=30, probe_size=64)


def test_digits_split_and_standardisation():
    cfg = GrokConfig(setup="digits").resolved()
    task = digits_task(cfg)
    assert task.train_x.shape == (1024, 784) and task.test_x.shape == (773, 784)
    assert task.train_x.dtype == torch.float32
    # Fixed split: the same images whatever else changes, train and test disjoint, all 1797 used.
    again = digits_task(dataclasses.replace(cfg, width=8))
    assert torch.equal(task.train_x, again.train_x) and torch.equal(task.test_y, again.test_y)
    rows = {tuple(r) for r in torch.cat([task.train_x, task.test_x]).round(decimals=4).tolist()}
    assert len(rows) > 1700  # (a handful of the 1797 digits are pixel-identical)
    # Per-pixel standardisation with train statistics: zero mean per pixel on train, not on test.
    assert task.train_x.mean(0).abs().max() < 1e-4
    std = task.train_x.std(0)
    assert std.max() < 1 + 1e-4 and ((std - 1).abs() < 1e-4).sum() > 600  # < 1 only under the 1e-2 floor
    assert sorted(task.train_y.unique().tolist()) == list(range(10))


def test_mlp_is_the_default_init_times_the_scale_and_homogeneous():
    torch.manual_seed(0)
    mlp = BiasFreeMLP(20, 16, 2, 10, init_scale=8.0).double()
    torch.manual_seed(0)
    ref = [nn.Linear(20, 16, bias=False), nn.Linear(16, 16, bias=False), nn.Linear(16, 10, bias=False)]
    for mine, theirs in zip(list(mlp.hidden) + [mlp.out], ref):
        torch.testing.assert_close(mine.weight, 8.0 * theirs.weight.double())
    x = torch.randn(32, 20, dtype=torch.float64)
    stats = centroid_stats(mlp, x)
    assert (stats.inner_product - mlp(x).sum(1)).abs().max() < 1e-10 * mlp(x).abs().max()


def full_causal_block(model: OneLayerTransformer, tokens: torch.Tensor) -> torch.Tensor:
    """A direct transcription of the one-layer transformer over every position (the reference)."""
    x = model.W_E[tokens] + model.W_pos
    B, T, _ = x.shape
    heads = []
    for h in range(model.n_heads):
        q, k, v = x @ model.W_Q[h], x @ model.W_K[h], x @ model.W_V[h]
        scores = (q @ k.transpose(1, 2)) / math.sqrt(model.d_head)
        scores = scores.masked_fill(~torch.tril(torch.ones(T, T, dtype=torch.bool)), float("-inf"))
        heads.append(scores.softmax(-1) @ v)
    x = x + torch.cat(heads, dim=-1) @ model.W_O
    x = x + F.relu(x @ model.W_in + model.b_in) @ model.W_out + model.b_out
    return (x @ model.W_U)[:, -1]


def test_transformer_last_position_shortcut_equals_the_full_block():
    cfg = GrokConfig(setup="modadd", prime=7, d_model=16, n_heads=2, d_head=8, d_mlp=32, dtype="float64").resolved()
    task = modadd_task(cfg)
    torch.manual_seed(0)
    model = task.build_model()
    with torch.no_grad():
        model.b_in.normal_()
        model.b_out.normal_()
    torch.testing.assert_close(model(task.train_x), full_causal_block(model, task.train_x), rtol=1e-12, atol=1e-12)


def test_modadd_data():
    cfg = GrokConfig(setup="modadd", prime=11).resolved()
    task = modadd_task(cfg)
    assert task.train_x.shape == (36, 3) and task.test_x.shape == (121 - 36, 3)
    x = torch.cat([task.train_x, task.test_x])
    y = torch.cat([task.train_y, task.test_y])
    assert len({tuple(r) for r in x.tolist()}) == 121 and (x[:, 2] == 11).all()
    assert torch.equal(y, (x[:, 0] + x[:, 1]) % 11)


def test_steps_to_threshold():
    assert steps_to_threshold([0, 10, 20, 30], [0.1, 0.5, 0.9, 0.2], 0.85) == 20
    assert steps_to_threshold([0, 10], [0.1, 0.5], 0.85) is None
    assert steps_to_threshold([0, 10], [0.85, 0.5], 0.85) == 0


def test_regimes_resolve_weight_decay_and_lambda():
    none = GrokConfig(reg="none").resolved()
    wd = GrokConfig(reg="wd").resolved()
    ga = GrokConfig(reg="grokalign", lam=0.3).resolved()
    assert (none.weight_decay, none.lam) == (0.0, 0.0)
    assert wd.lam == 0.0 and wd.weight_decay > 0
    assert ga.lam == 0.3 and ga.weight_decay == wd.weight_decay
    for bad, match in [(dict(setup="mnist"), "setup"), (dict(reg="l2"), "regulariser"),
                       (dict(lam=-1.0), "lam"), (dict(threshold=1.5), "threshold"),
                       (dict(reg="grokalign", lam=0.0), "--lam > 0"), (dict(max_steps=0), "max_steps")]:
        with pytest.raises(ConfigError, match=match):
            GrokConfig(**bad).resolved()


def test_training_is_deterministic_and_grokalign_lowers_the_jacobian_norm():
    # Default-scale init: the task loss is small, so 30 steps show the penalty's pull clearly.
    wd_cfg = GrokConfig(reg="wd", init_scale=1.0, stop_at_threshold=False, **SMALL_DIGITS).resolved()
    ga_cfg = GrokConfig(reg="grokalign", lam=0.1, init_scale=1.0, stop_at_threshold=False, **SMALL_DIGITS).resolved()
    task = digits_task(wd_cfg)  # the task builds its models with the config it was made from
    a, b = train_grok(task, wd_cfg, seed=3), train_grok(task, wd_cfg, seed=3)
    assert a.curves == b.curves and a.curves["step"] == [0, 10, 20, 30] and a.steps_run == 30
    ga = train_grok(task, ga_cfg, seed=3)
    assert ga.curves["jacobian_norm"][0] == pytest.approx(a.curves["jacobian_norm"][0])  # same init, same probe
    assert ga.curves["jacobian_norm"][-1] < 0.8 * a.curves["jacobian_norm"][-1]
    assert ga.curves["test_acc"][-1] > 0.5  # lowered without wrecking the fit
    other_seed = train_grok(task, wd_cfg, seed=4)
    assert other_seed.curves["jacobian_norm"][0] != a.curves["jacobian_norm"][0]


def test_stop_at_threshold_and_race_summary():
    cfg = GrokConfig(reg="wd", threshold=0.01, **SMALL_DIGITS).resolved()
    task = digits_task(cfg)
    run = train_grok(task, cfg, seed=0)
    # Step 0 is evaluated but the threshold counts training steps, so the first chance is step 10.
    assert run.steps_to_threshold == 10 and run.steps_run == 10
    slow = dataclasses.replace(run, steps_to_threshold=40, steps_run=40, wall_time_s=4.0)
    fast = dataclasses.replace(run, steps_to_threshold=10, steps_run=10, wall_time_s=3.0)
    never = dataclasses.replace(run, steps_to_threshold=None, steps_run=50, wall_time_s=5.0)
    report = GrokReport("digits", "", 0.5, {}, {"wd": [slow, slow, never], "grokalign": [fast, never, fast]})
    race = race_summary(report)
    assert [r["step_ratio"] for r in race["per_seed"]] == [0.25, None, 0.2]
    assert [r["ratio_is_upper_bound"] for r in race["per_seed"]] == [False, False, True]
    assert race["seeds_meeting_target"] == 2
    assert race["per_seed"][0]["wall_ratio"] == 0.75


def test_run_grok_on_modadd_keeps_the_penalty_on_the_embeddings():
    cfg = GrokConfig(setup="modadd", prime=5, d_model=16, n_heads=2, d_head=8, d_mlp=32, max_steps=4, eval_every=2,
                     lam=1.0)
    report = run_grok(cfg, seeds=[0], regimes=["wd", "grokalign"])
    assert set(report.arms) == {"wd", "grokalign"} and report.configs["wd"]["lam"] == 0.0
    curves = report.arms["grokalign"][0].curves
    assert curves["step"] == [0, 2, 4] and all(math.isfinite(v) for v in curves["train_alignment"])
    d = report.to_dict()
    assert d["race"]["seeds"] == 1 and d["arms"]["wd"]["summary"]["reached"] in ("0/1", "1/1")
