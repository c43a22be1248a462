"""Where a verb writes when the user gives no ``--out``: ``runs/<verb>-<what>-<YYYYmmdd-HHMMSS>``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional


def output_dir(out: Optional[str], *name_parts: str) -> Path:
    """``out`` if given, else a new time-stamped directory under ``runs/`` named by ``name_parts``.

    Colons (``hf:model`` names) become dashes so the name is a valid directory on every platform.
    """
    if out:
        return Path(out)
    name = "-".join(part.replace(":", "-") for part in name_parts)
    return Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
