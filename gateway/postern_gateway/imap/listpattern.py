"""LIST / LSUB mailbox patterns (RFC 3501 §6.3.8), matched in time linear in the name.

In:   a pattern (reference already joined), text with the wildcards ``*`` (any run of
      characters) and ``%`` (any run without the hierarchy delimiter); then mailbox names.
Out:  :func:`compile_pattern` -> a :class:`ListPattern`; ``.matches(name)`` -> bool.
Fails: :class:`~.errors.BadCommand` for a pattern longer than :data:`MAX_PATTERN`.

Why not a regex: ``*`` as ``.*`` backtracks, and ``LIST "" "****...x"`` (40 stars) held the
event loop, and every protocol with it, for seconds. Here runs of wildcards collapse first
(``**`` and ``*%`` are ``*``, ``%%`` is ``%``), then the name is read once, left to right,
with the set of pattern positions it can be at kept as the bits of one integer (a Shift-And
automaton): a step is a few integer operations whatever the pattern, so the work is
O(len(name)) big-integer steps, never exponential. ``INBOX`` at the start of a pattern
matches case-insensitively (RFC 3501 §5.1), as mailbox names do.
"""

from __future__ import annotations

from .errors import BadCommand

MAX_PATTERN = 1024  # characters; a mailbox name is at most 512 bytes (postern.store.base)
DELIMITER = "/"


class ListPattern:
    __slots__ = ("_lit", "_star", "_pct", "_wild", "_accept")

    def __init__(self, tokens: list[str]):
        self._lit: dict[str, int] = {}  # char -> positions holding that literal character
        self._star = self._pct = 0
        for i, t in enumerate(tokens):
            bit = 1 << i
            if t == "*":
                self._star |= bit
            elif t == "%":
                self._pct |= bit
            else:
                self._lit[t] = self._lit.get(t, 0) | bit
        self._wild = self._star | self._pct
        self._accept = 1 << len(tokens)

    def _closure(self, d: int) -> int:
        # a wildcard may match nothing: being at it is also being past it (wildcards never
        # follow each other after collapsing, so one step is the whole closure)
        return d | ((d & self._wild) << 1)

    def matches(self, name: str) -> bool:
        d = self._closure(1)
        star, loop_pct = self._star, self._star | self._pct
        lit = self._lit
        for c in name:
            d = ((d & lit.get(c, 0)) << 1) | (d & (star if c == DELIMITER else loop_pct))
            if not d:
                return False
            d = self._closure(d)
        return bool(d & self._accept)


def compile_pattern(pattern: str) -> ListPattern:
    if len(pattern) > MAX_PATTERN:
        raise BadCommand("LIST pattern too long")
    if pattern[:5].upper() == "INBOX" and (len(pattern) == 5 or pattern[5] in "/*%"):
        pattern = "INBOX" + pattern[5:]
    tokens: list[str] = []
    for c in pattern:
        if c in "*%" and tokens and tokens[-1] in "*%":
            if c == "*":
                tokens[-1] = "*"  # "%*" and "*%" are "*"
            continue
        tokens.append(c)
    return ListPattern(tokens)
