"""sslkit.json_values.json_ready: one cleaner for every JSON file sslkit writes."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import torch

from sslkit.json_values import json_ready


@dataclass
class Row:
    name: str
    score: float


def test_containers_arrays_scalars_and_dataclasses_become_plain_json():
    value = {1: (np.float32(0.5), np.int64(3), np.bool_(True)), "t": torch.tensor([[1.0, 2.0]]),
             "a": np.arange(3), "row": Row("x", np.float64(0.25)), "s": "text", "n": None}
    ready = json_ready(value)
    assert ready == {"1": [0.5, 3, True], "t": [[1.0, 2.0]], "a": [0, 1, 2], "row": {"name": "x", "score": 0.25},
                     "s": "text", "n": None}
    assert json.loads(json.dumps(ready, allow_nan=False)) == ready
    assert type(ready["1"][1]) is int and type(ready["row"]["score"]) is float


def test_non_finite_numbers_are_null_or_text():
    value = [math.nan, math.inf, -math.inf, np.float32("nan"), torch.tensor(float("inf")), 1.5]
    assert json_ready(value) == [None, None, None, None, None, 1.5]
    assert json_ready(value, non_finite="text") == ["nan", "inf", "-inf", "nan", "inf", 1.5]
    json.dumps(json_ready({"x": value}), allow_nan=False)  # accepted by strict JSON
