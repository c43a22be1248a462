"""Brace patterns for shard lists: ranges keep the zero padding, lists and several groups expand in order."""

import pytest

from sslkit.data.brace_pattern import expand_braces, has_braces
from sslkit.data.errors import DataError


def test_ranges_lists_and_groups_expand_like_bash():
    assert expand_braces("d/shard-{000000..000002}.tar") == [f"d/shard-00000{i}.tar" for i in range(3)]
    assert expand_braces("s{8..11}.tar") == ["s8.tar", "s9.tar", "s10.tar", "s11.tar"]
    assert expand_braces("s{3..1}") == ["s3", "s2", "s1"]
    assert expand_braces("{a,b}/x-{01..02}.tar") == ["a/x-01.tar", "a/x-02.tar", "b/x-01.tar", "b/x-02.tar"]
    assert expand_braces("plain.tar") == ["plain.tar"] and not has_braces("plain.tar")
    assert len(expand_braces("s-{000000..000099}.tar")) == 100 and has_braces("s-{0..1}")


@pytest.mark.parametrize("pattern,message", [("s-{000..", "unmatched brace"), ("s-{abc}.tar", "neither a range")])
def test_malformed_patterns_are_one_sentence(pattern, message):
    with pytest.raises(DataError, match=message):
        expand_braces(pattern)
