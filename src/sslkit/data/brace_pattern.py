"""Shell-style brace patterns for lists of shard files: ``shard-{000000..000099}.tar``, ``{a,b}.tar``.

The notation is the one WebDataset users write (bash brace expansion): ``{first..last}`` is an integer
range, zero-padded to the width of ``first`` when ``first`` starts with a zero, and ``{x,y,z}`` is a list;
several groups expand to every combination, left to right. Written here (a few lines) rather than adding a
dependency for it.
"""

from __future__ import annotations

import re

from sslkit.data.errors import DataError

_GROUP = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"^(-?\d+)\.\.(-?\d+)$")


def has_braces(pattern: str) -> bool:
    """Whether ``pattern`` holds a brace group to expand."""
    return _GROUP.search(pattern) is not None


def expand_braces(pattern: str) -> list[str]:
    """Every string ``pattern`` stands for, in order (a pattern without braces stands for itself)."""
    match = _GROUP.search(pattern)
    if match is None:
        if "{" in pattern or "}" in pattern:
            raise DataError(f"Data pattern '{pattern}' has an unmatched brace; write ranges as "
                            "{000000..000099} and lists as {a,b}.")
        return [pattern]
    head, tail = pattern[:match.start()], pattern[match.end():]
    return [head + choice + rest for choice in _group_choices(match.group(1), pattern)
            for rest in expand_braces(tail)]


def _group_choices(body: str, pattern: str) -> list[str]:
    """The strings one brace group ``{body}`` stands for."""
    numeric = _RANGE.match(body)
    if numeric:
        first, last = numeric.group(1), numeric.group(2)
        step = 1 if int(last) >= int(first) else -1
        width = len(first) if first.lstrip("-").startswith("0") and len(first.lstrip("-")) > 1 else 0
        return [str(value).zfill(width) for value in range(int(first), int(last) + step, step)]
    if "," in body:
        return body.split(",")
    raise DataError(f"Data pattern '{pattern}' has a brace group '{{{body}}}' that is neither a range "
                    "like {000000..000099} nor a list like {a,b}.")
