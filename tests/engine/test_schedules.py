import math

import numpy as np
import pytest

from sslkit.engine.schedules import (
    DINOv2Schedules,
    cosine_schedule,
    linear_warmup_constant,
    lr_peak_from_batch,
)

EPOCH = 1250


def reference_cosine(base, final, total, warmup=0, warmup_start=0.0):
    """The reference schedule as an array: np.linspace warm-up then cosine (dinov2 utils.py)."""
    iters = np.arange(total - warmup)
    cosine = final + 0.5 * (base - final) * (1 + np.cos(np.pi * iters / len(iters)))
    return np.concatenate((np.linspace(warmup_start, base, warmup), cosine))


def test_cosine_schedule_matches_reference_array():
    total, warmup = 50, 10
    expected = reference_cosine(0.5, 0.01, total, warmup, 0.1)
    values = [
        cosine_schedule(i, start=0.5, end=0.01, total_iters=total, warmup_iters=warmup, warmup_start=0.1)
        for i in range(total)
    ]
    np.testing.assert_allclose(values, expected, rtol=1e-12, atol=1e-15)
    assert cosine_schedule(total, start=0.5, end=0.01, total_iters=total) == 0.01
    assert cosine_schedule(10 * total, start=0.5, end=0.01, total_iters=total) == 0.01


def test_cosine_midpoint_and_ends():
    assert cosine_schedule(0, start=1.0, end=3.0, total_iters=100) == 1.0
    assert cosine_schedule(50, start=1.0, end=3.0, total_iters=100) == pytest.approx(2.0)
    assert cosine_schedule(99, start=1.0, end=3.0, total_iters=100) == pytest.approx(3.0, abs=1e-3)


def test_linear_warmup_constant():
    values = [linear_warmup_constant(i, start=0.04, end=0.07, warmup_iters=31) for i in range(40)]
    np.testing.assert_allclose(values[:31], np.linspace(0.04, 0.07, 31), rtol=1e-12)
    assert values[30:] == [0.07] * 10


def test_lr_peak_sqrt_scaling():
    assert lr_peak_from_batch(0.004, 1024) == pytest.approx(0.004)
    assert lr_peak_from_batch(0.004, 256) == pytest.approx(0.002)
    assert lr_peak_from_batch(0.004, 4096) == pytest.approx(0.008)


def test_dinov2_defaults_hit_the_spec_values():
    """Spec item 5: lr peak at end of warm-up, wd 0.4 and m 1 at the end, tau_t 0.07 from
    epoch 30, last-layer lr 0 in epoch 1."""
    peak = lr_peak_from_batch(0.004, 256)
    s = DINOv2Schedules(total_iters=100 * EPOCH, lr_peak=peak)
    assert s.at(0)["lr"] == 0.0
    assert s.at(10 * EPOCH - 1)["lr"] == pytest.approx(peak, rel=1e-12)
    assert s.at(10 * EPOCH)["lr"] == pytest.approx(peak, rel=1e-12)
    assert s.at(5 * EPOCH)["lr"] == pytest.approx(peak * (5 * EPOCH) / (10 * EPOCH - 1))
    assert s.at(10 * EPOCH + 1)["lr"] < peak
    end = s.at(100 * EPOCH)
    assert end["wd"] == 0.4 and end["momentum"] == 1.0 and end["lr"] == 1e-6
    assert s.at(100 * EPOCH - 1)["wd"] == pytest.approx(0.4, abs=1e-9)
    assert s.at(100 * EPOCH - 1)["momentum"] == pytest.approx(1.0, abs=1e-9)
    assert s.at(0)["wd"] == pytest.approx(0.04) and s.at(0)["momentum"] == pytest.approx(0.992)
    assert s.at(50 * EPOCH)["wd"] == pytest.approx(0.22)
    assert s.at(0)["teacher_temp"] == 0.04
    assert 0.04 < s.at(15 * EPOCH)["teacher_temp"] < 0.07
    for it in (30 * EPOCH, 30 * EPOCH + 1, 60 * EPOCH, 200 * EPOCH):
        assert s.at(it)["teacher_temp"] == 0.07
    assert s.at(0)["last_layer_lr_multiplier"] == 0.0
    assert s.at(EPOCH - 1)["last_layer_lr_multiplier"] == 0.0
    assert s.at(EPOCH)["last_layer_lr_multiplier"] == 1.0


def test_schedules_are_pure_and_frozen():
    s = DINOv2Schedules(total_iters=1000, iters_per_epoch=10)
    assert s.at(123) == s.at(123)
    with pytest.raises(Exception):
        s.lr_peak = 1.0  # type: ignore[misc]


def test_invalid_configuration_raises():
    with pytest.raises(ValueError, match="warm-up"):
        DINOv2Schedules(total_iters=100, iters_per_epoch=50, lr_warmup_epochs=10)
    with pytest.raises(ValueError, match="non-negative"):
        cosine_schedule(-1, start=1.0, end=0.0, total_iters=10)
    with pytest.raises(ValueError, match="warmup_iters"):
        cosine_schedule(0, start=1.0, end=0.0, total_iters=10, warmup_iters=20)
    assert math.isfinite(cosine_schedule(0, start=1.0, end=0.0, total_iters=5, warmup_iters=5))


def test_frozen_backbone_gets_lr_zero_then_the_schedule():
    from sslkit.engine.schedules import DINOv2Schedules

    s = DINOv2Schedules(total_iters=100, iters_per_epoch=10, lr_warmup_epochs=1, freeze_backbone_epochs=2,
                        freeze_last_layer_epochs=0, teacher_temp_warmup_epochs=0)
    assert [s.at(i)["backbone_lr_multiplier"] for i in (0, 19, 20, 99)] == [0.0, 0.0, 1.0, 1.0]
    assert DINOv2Schedules(total_iters=10, iters_per_epoch=10, lr_warmup_epochs=0, freeze_last_layer_epochs=0,
                           teacher_temp_warmup_epochs=0).at(0)["backbone_lr_multiplier"] == 1.0
