"""Every numeric recipe key has a range, and a value outside it is one sentence naming the key (issue 23, item 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sslkit.config import ConfigError, RunConfig, load_config
from sslkit.config_ranges import RANGES, UNRANGED, interval, numeric_fields

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))
TUPLE_LENGTH = {"crops.global_scale": 2, "crops.local_scale": 2, "crops.blur_sigma": 2, "crops.jitter_strength": 4,
                "crops.global_blur_p": 2, "dinov2.mask_ratio": 2, "optim.betas": 2}


def test_every_numeric_key_has_a_range_and_every_range_a_key():
    keys = set(numeric_fields(RunConfig))
    assert keys - UNRANGED - set(RANGES) == set(), "numeric config keys without a row in config_ranges.RANGES"
    assert set(RANGES) - keys == set(), "rows of config_ranges.RANGES that name no config key"


def _outside(spec: str) -> list[float]:
    low, high, low_in, _ = interval(spec)
    return [low - 1 if low_in else low, high + 1 if high < 1e6 else high * 2, float("nan")]


def _override(key: str, value: float) -> list[str]:
    # Integers stay integers so that the type check lets them through to the range check.
    shown = repr(int(value)) if value == value and value == int(value) else repr(value)
    if key in TUPLE_LENGTH:
        shown = "[" + ",".join([shown] * TUPLE_LENGTH[key]) + "]"
    if key.startswith("curriculum."):
        field = key.split(".", 1)[1]
        stage = "{fraction: 1.0, %s: %s}" % (field, shown) if field != "fraction" else "{fraction: %s}" % shown
        return [f"curriculum=[{stage}]"]
    return [f"{key}={shown}"]


ROWS = [(key, value) for key, spec in sorted(RANGES.items()) for value in _outside(spec)]


@pytest.mark.parametrize("key,value", ROWS, ids=[f"{k}={v}" for k, v in ROWS])
def test_a_value_outside_its_range_is_refused_naming_the_key(key, value):
    with pytest.raises(ConfigError) as err:
        load_config(str(ROOT / "recipes" / "dinov2-tiny.yaml"), _override(key, value))
    shown = key.replace("curriculum.", "curriculum[0].")
    assert shown in str(err.value) or key.split(".")[-1] in str(err.value), str(err.value)


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.name for r in RECIPES])
def test_every_shipped_recipe_is_inside_the_ranges(recipe):
    load_config(str(recipe), [])


@pytest.mark.parametrize("override", ["dinov2.teacher_temp=-1", "dinov2.student_temp=0", "simclr.temperature=0",
                                      "optim.base_lr=-1", "optim.weight_decay=-0.1", "optim.betas=[0.9,1.5]",
                                      "mae.mask_ratio=1.5"])
def test_the_values_found_accepted_before(override):
    with pytest.raises(ConfigError, match=override.split("=")[0].replace(".", r"\.")):
        load_config(str(ROOT / "recipes" / "dinov2-tiny.yaml"), [override])
