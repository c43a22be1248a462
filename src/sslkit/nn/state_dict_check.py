"""Whether a state dict fits a model, said in one clause (exported backbones and public weights share it)."""

from __future__ import annotations


def mismatch(found: dict[str, tuple], expected: dict[str, tuple], optional: frozenset = frozenset()) -> str | None:
    """None when ``found`` (key → shape) fills every key of ``expected`` (but ``optional``) with its shape
    and has no other key; else e.g. ``"missing ['a']; unexpected ['b']; wrong shape ['c (2,) != (3,)']"``
    (at most five keys of each kind)."""
    missing = sorted(set(expected) - set(found) - set(optional))
    unexpected = sorted(set(found) - set(expected))
    wrong = [f"{k} {tuple(found[k])} != {tuple(expected[k])}" for k in sorted(expected)
             if k in found and tuple(found[k]) != tuple(expected[k])]
    parts = [f"{name} {keys[:5]}{' …' if len(keys) > 5 else ''}"
             for name, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys]
    return "; ".join(parts) or None
