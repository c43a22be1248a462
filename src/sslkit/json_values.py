"""Values as JSON can hold them: the one cleaner every report, log and results file goes through.

JSON (RFC 8259, section 6) has no NaN or infinity, and ``json.dumps`` knows neither tensors, numpy arrays,
numpy scalars nor dataclasses. :func:`json_ready` returns a copy made of dicts (string keys), lists, strings,
Python numbers, booleans and None that ``json.dumps(..., allow_nan=False)`` accepts.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

__all__ = ["json_ready"]


def json_ready(value: Any, *, non_finite: Literal["null", "text"] = "null") -> Any:
    """A JSON-safe copy of ``value``.

    dict -> dict with ``str`` keys; list/tuple -> list; dataclass instance -> dict of its fields; torch tensor,
    numpy array or numpy scalar -> its ``tolist()`` (nested lists or a Python number); NaN / ±inf -> None, or
    with ``non_finite="text"`` their text ``"nan"`` / ``"inf"`` / ``"-inf"`` (a training log keeps a
    diverged value visible). Everything else is returned as it is.
    """
    if isinstance(value, dict):
        return {str(k): json_ready(v, non_finite=non_finite) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v, non_finite=non_finite) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return json_ready(dataclasses.asdict(value), non_finite=non_finite)
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # tensors, arrays, numpy scalars
        return json_ready(value.tolist(), non_finite=non_finite)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value) if non_finite == "text" else None
    return value
