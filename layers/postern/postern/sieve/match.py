"""Comparators and match types: how a list of values is compared with a list of keys.

In:   the values a test extracted (header values, addresses, the envelope, a
      date part...), the keys of the script (already expanded), a
      :class:`Matcher` (comparator, match type, relational operator) and the
      run's budget.
Out:  :func:`test` -> (matched, match variables): True when any value matches
      any key (RFC 5228 §2.7.1); for ``:count`` the number of values against
      each key (RFC 5231 §4.2). The match variables (``${0}``..``${9}``, RFC
      5229 §3.2) are the whole value and what each wildcard matched, for the
      first successful ``:matches``.
Fails: :class:`~postern.sieve.errors.SieveRuntimeError` when the budget runs out.

Comparators (RFC 4790 §9): ``i;octet`` (code points, which order as UTF-8
octets do), ``i;ascii-casemap`` (the default: A-Z folded to a-z, nothing
else), ``i;ascii-numeric`` (the leading digits as a number; a string without
one is positive infinity, equal only to another such string; it supports
:is, :value and :count only - the compiler refuses the others).

``:matches`` is linear in practice: the pattern is split at its ``*``
wildcards and each piece is found leftmost after the previous one (the last
piece anchored at the end), with ``str.find`` for plain pieces and a compiled
expression of literals and ``.`` (no quantifiers, so no backtracking beyond
the piece's length) for pieces holding ``?``. Each ``*`` thus matches as
little as it can, the last one what is left.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from . import limits
from .errors import SieveRuntimeError

COMPARATORS = ("i;octet", "i;ascii-casemap", "i;ascii-numeric")
IMPLICIT_COMPARATORS = frozenset({"i;octet", "i;ascii-casemap"})  # usable without require (RFC 5228 §2.7.3)
RELOPS = frozenset({"gt", "ge", "lt", "le", "eq", "ne"})
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_LEADING_DIGITS = re.compile(r"[0-9]+")


@dataclass(frozen=True, slots=True)
class Matcher:
    kind: str = "is"  # is | contains | matches | value | count
    comparator: str = "i;ascii-casemap"
    relop: str = ""  # gt | ge | lt | le | eq | ne, for value and count


def fold(comparator: str, s: str) -> str:
    return s.translate(_ASCII_LOWER) if comparator == "i;ascii-casemap" else s


def _numeric(s: str) -> int | None:
    m = _LEADING_DIGITS.match(s)
    return int(m.group()) if m else None  # None = positive infinity (RFC 4790 §9.1.1)


def order(comparator: str, a: str, b: str) -> int:
    """-1, 0, 1 as a sorts before, with, after b."""
    if comparator == "i;ascii-numeric":
        x, y = _numeric(a), _numeric(b)
        if x is None or y is None:
            return 0 if x is None and y is None else (1 if x is None else -1)
        return (x > y) - (x < y)
    a, b = fold(comparator, a), fold(comparator, b)
    return (a > b) - (a < b)


def _relop(relop: str, c: int) -> bool:
    return {"gt": c > 0, "ge": c >= 0, "lt": c < 0, "le": c <= 0, "eq": c == 0, "ne": c != 0}[relop]


# --- :matches ------------------------------------------------------------------------------------
_ANY = object()  # "?"


def _pieces(pattern: str) -> list[tuple]:
    """The pattern split at unescaped ``*``: each piece a tuple of characters and _ANY."""
    pieces: list[tuple] = []
    cur: list = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:  # RFC 5228 §2.7.1: "\\" escapes the next character
            cur.append(pattern[i + 1])
            i += 2
            continue
        if c == "*":
            pieces.append(tuple(cur))
            cur = []
        elif c == "?":
            cur.append(_ANY)
        else:
            cur.append(c)
        i += 1
    pieces.append(tuple(cur))
    return pieces


@functools.lru_cache(maxsize=512)
def _compiled(piece: tuple) -> re.Pattern:
    return re.compile("".join("." if x is _ANY else re.escape(x) for x in piece), re.S)


def _literal(piece: tuple) -> str | None:
    return None if any(x is _ANY for x in piece) else "".join(piece)


def _find(piece: tuple, value: str, pos: int) -> int:
    lit = _literal(piece)
    if lit is not None:
        return value.find(lit, pos)
    m = _compiled(piece).search(value, pos)
    return -1 if m is None else m.start()


def _at(piece: tuple, value: str, pos: int) -> bool:
    if pos < 0 or pos + len(piece) > len(value):
        return False
    lit = _literal(piece)
    if lit is not None:
        return value.startswith(lit, pos)
    return _compiled(piece).match(value, pos) is not None


def _anys(piece: tuple, pos: int) -> list[tuple[int, int]]:
    return [(pos + k, pos + k + 1) for k, x in enumerate(piece) if x is _ANY]


def glob(pattern: str, value: str) -> list[tuple[int, int]] | None:
    """Match ``value`` against a Sieve ``:matches`` pattern. None when it does not match, else
    where each wildcard matched, in order (``?`` one character, ``*`` any run), as (start, end)."""
    pieces = _pieces(pattern)
    first, last = pieces[0], pieces[-1]
    if len(pieces) == 1:
        return _anys(first, 0) if len(first) == len(value) and _at(first, value, 0) else None
    if not _at(first, value, 0):
        return None
    caps = _anys(first, 0)
    pos = len(first)
    tail_start = len(value) - len(last)
    if tail_start < pos:
        return None
    for piece in pieces[1:-1]:
        at = _find(piece, value, pos)
        if at < 0 or at + len(piece) > tail_start:
            return None
        caps.append((pos, at))
        caps.extend(_anys(piece, at))
        pos = at + len(piece)
    if not _at(last, value, tail_start):
        return None
    caps.append((pos, tail_start))
    caps.extend(_anys(last, tail_start))
    return caps


# --- the test ------------------------------------------------------------------------------------
class Budget:
    """Steps spent by one run; over ``limit`` the run stops (the message is kept)."""

    __slots__ = ("spent", "limit")

    def __init__(self, limit: int):
        self.spent = 0
        self.limit = limit

    def charge(self, n: int = 1) -> None:
        self.spent += n
        if self.spent > self.limit:
            raise SieveRuntimeError(f"work budget exhausted ({self.limit} steps)")


def _one(m: Matcher, value: str, key: str, budget: Budget) -> list[str] | None:
    """None: no match; else the match variables (empty unless :matches)."""
    budget.charge(1 + (len(value) + len(key)) // 256)
    c = m.comparator
    if m.kind == "is":
        if c == "i;ascii-numeric":
            return [] if order(c, value, key) == 0 else None
        return [] if fold(c, value) == fold(c, key) else None
    if m.kind == "contains":
        return [] if fold(c, key) in fold(c, value) else None
    if m.kind == "matches":
        if len(key) > limits.MAX_PATTERN:
            raise SieveRuntimeError(f":matches pattern longer than {limits.MAX_PATTERN} characters")
        pieces = key.count("*") + 1
        budget.charge(pieces * (1 + len(value) // 256) + (len(value) * key.count("?")) // 4096)
        spans = glob(fold(c, key), fold(c, value))
        if spans is None:
            return None
        return [value] + [value[s:e] for s, e in spans]  # as written: folding keeps positions
    if m.kind == "value":
        return [] if _relop(m.relop, order(c, value, key)) else None
    raise ValueError(m.kind)  # pragma: no cover


def test(m: Matcher, values: list[str], keys: list[str], budget: Budget) -> tuple[bool, list[str] | None]:
    """(matched, match variables or None). Any value against any key; :count counts the values."""
    if m.kind == "count":
        n = str(len(values))
        for key in keys:
            budget.charge()
            if _relop(m.relop, order(m.comparator, n, key)):
                return True, None
        return False, None
    for value in values:
        for key in keys:
            got = _one(m, value, key, budget)
            if got is not None:
                return True, got if m.kind == "matches" else None
    return False, None
