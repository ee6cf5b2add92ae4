"""LIST pattern matching (RFC 3501 §6.3.8): the linear matcher agrees with the old regex reading,
and a pattern of many wildcards costs time linear in the name, not exponential."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from postern_gateway.imap.errors import BadCommand
from postern_gateway.imap.listpattern import MAX_PATTERN, compile_pattern


def old_regex(pattern: str) -> re.Pattern:
    """The previous implementation (a backtracking regex), kept as the oracle of the semantics."""
    if pattern[:5].upper() == "INBOX" and (len(pattern) == 5 or pattern[5] in "/*%"):
        pattern = "INBOX" + pattern[5:]
    out = [".*" if ch == "*" else "[^/]*" if ch == "%" else re.escape(ch) for ch in pattern]
    return re.compile("".join(out) + r"\Z", re.S)


CASES = [
    ("*", "a/b/c", True), ("%", "a", True), ("%", "a/b", False), ("a/%", "a/b", True), ("a/%", "a/b/c", False),
    ("a/*", "a/b/c", True), ("a*", "a", True), ("a%c", "abc", True), ("a%c", "a/c", False), ("a*c", "a/b/c", True),
    ("", "", True), ("", "a", False), ("inbox", "INBOX", True), ("Inbox/%", "INBOX/x", True),
    ("inboxes", "INBOXES", False),
    ("*%*%", "x/y", True), ("%*", "x/y", True), ("%%", "x/y", False), ("x[y}z", "x[y}z", True), ("a.b", "axb", False),
]


@pytest.mark.parametrize("pattern,name,expect", CASES)
def test_cases(pattern, name, expect):
    assert compile_pattern(pattern).matches(name) is expect
    assert bool(old_regex(pattern).match(name)) is expect


ALPHABET = st.sampled_from(list("ab/*%.I") + ["N", "B", "O", "X", "é"])


@settings(max_examples=400, deadline=None)
@given(st.text(ALPHABET, max_size=10), st.text(st.sampled_from(list("ab/.INBOXé")), max_size=10))
def test_agrees_with_the_old_regex(pattern, name):
    assert compile_pattern(pattern).matches(name) == bool(old_regex(pattern).match(name))


def test_many_wildcards_are_linear():
    """40 stars then a literal that never comes: the regex took seconds (30 stars against a 25-character
    name never finished); here it is one pass over the name. A wide ceiling: liveness, not speed."""
    names = ["a" * 25, "x" * 500, "a/" * 250]
    for pattern in ("*" * 40 + "x", "%*" * 500 + "q", "*a" * 500 + "q", "%" * MAX_PATTERN):
        glob = compile_pattern(pattern)
        start = time.monotonic()
        for _ in range(20):
            for n in names:
                glob.matches(n)
        assert time.monotonic() - start < 2.0


def test_pattern_length_is_capped():
    with pytest.raises(BadCommand):
        compile_pattern("a" * (MAX_PATTERN + 1))
