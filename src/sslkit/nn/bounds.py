"""Upper bounds on network shapes, shared by recipe validation and the loaders of saved models.

A recipe (:mod:`sslkit.config`) and a ``backbone.json`` / ``sae.json`` / ``denoiser.json`` are untrusted
input: an absurd value (width 10⁹, negative depth) must fail with one sentence naming the key before a
module is built. The numbers live here once, in a module without torch or timm, so that config
validation and every loader hold the same values to the same bounds.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["MAX_DEPTH", "MAX_EMBED_DIM", "MAX_HEAD_WIDTH", "MAX_IMAGE_SIZE", "MAX_IN_CHANS", "MAX_MLP_RATIO", "MAX_PATCH", "MAX_REGISTERS",
           "is_finite", "is_int", "is_real", "vit_shape_problem"]

# Upper bounds that no real network reaches (a ViT-g is 1536 wide and 40 deep).
MAX_EMBED_DIM, MAX_DEPTH, MAX_PATCH, MAX_REGISTERS = 16384, 256, 1024, 256
MAX_IMAGE_SIZE, MAX_IN_CHANS, MAX_MLP_RATIO = 8192, 64, 64.0
MAX_HEAD_WIDTH = 2 ** 20  # head/projector widths: far above any real one (DINOv2's K is 65 536 = 2**16)


def is_int(value: Any) -> bool:
    """An ``int`` that is not a ``bool`` (JSON ``true`` must not pass for 1)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """An ``int`` or ``float`` that is not a ``bool``."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_finite(value: Any) -> bool:
    """A real number (not a bool) that is neither NaN nor infinite, and fits a float (10**400 does not)."""
    try:
        return is_real(value) and math.isfinite(value)
    except OverflowError:
        return False


def vit_shape_problem(embed_dim: Any, depth: Any, num_heads: Any, patch_size: Any,
                      num_registers: Any = 0) -> tuple[str, str] | None:
    """The first out-of-bounds ViT shape value as ``(field, "must ..., got ...")``, or None if all fit.

    Shared by recipe validation (``model.<field>``) and :class:`ViTConfig` (``backbone.json``), so both
    refuse the same values with the same bounds. ``None`` for a value means "not set" (a preset fills it).
    """
    for name, value, low, top in (("patch_size", patch_size, 1, MAX_PATCH), ("embed_dim", embed_dim, 1, MAX_EMBED_DIM),
                                  ("depth", depth, 1, MAX_DEPTH), ("num_heads", num_heads, 1, MAX_EMBED_DIM),
                                  ("num_registers", num_registers, 0, MAX_REGISTERS)):
        if value is None:
            continue
        if not is_int(value):
            return name, f"must be an integer in [{low}, {top}], got {value!r}"
        if not low <= value <= top:
            return name, f"must lie in [{low}, {top}], got {value}"
    if embed_dim and num_heads and embed_dim % num_heads:
        choices = ", ".join(str(h) for h in range(1, 17) if embed_dim % h == 0)
        return "num_heads", f"= {num_heads} must divide the width {embed_dim} (embed_dim); e.g. {choices}"
    return None
