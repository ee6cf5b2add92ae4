"""IMAP sequence sets (RFC 3501 §9 ``sequence-set``), pure.

In:   the text of a sequence set such as ``1:5,7,10:*`` or ``*:4``.
Out:  :class:`SeqSet` with ``contains(n, max_n)`` and ``iter(max_n)``; ``*``
      stands for the largest number in use (``max_n``), ranges may be reversed
      (``4:2`` == ``2:4``, RFC 3501 §9 "seq-range").
Fails: :class:`SeqSetError` (a ValueError) on bad syntax, zero, numbers beyond
      2^32-1, or more than ``MAX_ITEMS`` comma-separated items (bounded input).
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_ITEMS = 10_000
MAX_NUMBER = 2**32 - 1
STAR = -1


class SeqSetError(ValueError):
    pass


def _num(text: str) -> int:
    if text == "*":
        return STAR
    if not text.isdigit() or text.startswith("0") or len(text) > 10:
        raise SeqSetError(f"invalid sequence number {text[:20]!r}")
    n = int(text)
    if n > MAX_NUMBER:
        raise SeqSetError("sequence number too large")
    return n


@dataclass(frozen=True)
class SeqSet:
    ranges: tuple[tuple[int, int], ...]  # (lo, hi) with STAR for "*"

    @classmethod
    def parse(cls, text: str) -> SeqSet:
        if not text:
            raise SeqSetError("empty sequence set")
        items = text.split(",")
        if len(items) > MAX_ITEMS:
            raise SeqSetError("sequence set too long")
        ranges = []
        for item in items:
            a, sep, b = item.partition(":")
            lo = _num(a)
            hi = _num(b) if sep else lo
            ranges.append((lo, hi))
        return cls(tuple(ranges))

    @classmethod
    def of(cls, numbers) -> SeqSet:
        return cls(tuple((n, n) for n in numbers))

    @staticmethod
    def _resolve(lo: int, hi: int, max_n: int) -> tuple[int, int]:
        lo = max_n if lo == STAR else lo
        hi = max_n if hi == STAR else hi
        return (lo, hi) if lo <= hi else (hi, lo)

    def contains(self, n: int, max_n: int) -> bool:
        for lo, hi in self.ranges:
            a, b = self._resolve(lo, hi, max_n)
            if a <= n <= b:
                return True
        return False

    def iter(self, max_n: int):
        """Numbers in the set that are <= max_n, ascending, without duplicates.

        ``*`` with max_n == 0 selects nothing. Cost is bounded by max_n and the item count.
        """
        spans = []
        for lo, hi in self.ranges:
            a, b = self._resolve(lo, hi, max_n)
            b = min(b, max_n)
            if a <= b and b >= 1:
                spans.append((max(a, 1), b))
        spans.sort()
        last = 0
        for a, b in spans:
            for n in range(max(a, last + 1), b + 1):
                yield n
            last = max(last, b)

    def iter_members(self, members, max_n: int):
        """Members of a sorted collection (e.g. UIDs in use) that are in the set, ascending.

        For UID sets: ``*`` is the largest UID in use; a range beyond it still matches it
        (RFC 3501 §6.4.8: ``UID n:*`` always includes the highest UID).
        """
        for m in members:
            if self.contains(m, max_n):
                yield m

    def __str__(self) -> str:
        def f(n):
            return "*" if n == STAR else str(n)

        return ",".join(f(a) if a == b else f"{f(a)}:{f(b)}" for a, b in self.ranges)


def compress(numbers) -> str:
    """Sorted numbers -> compact sequence set text (``1:3,7``) for COPYUID/APPENDUID."""
    out = []
    start = prev = None
    for n in numbers:
        if start is None:
            start = prev = n
        elif n == prev + 1:
            prev = n
        else:
            out.append(str(start) if start == prev else f"{start}:{prev}")
            start = prev = n
    if start is not None:
        out.append(str(start) if start == prev else f"{start}:{prev}")
    return ",".join(out)
