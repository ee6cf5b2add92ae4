"""JMAP keywords <-> IMAP flags, the one mapping (RFC 8621 §4.1.1).

In:   a message's IMAP flags (the store's), or the keywords a client set.
Out:  :func:`keywords` (the Email's ``keywords`` object), :func:`to_flags`
      (the store flags for a keyword set, keeping the flags JMAP does not show),
      :func:`flag` (one keyword as the store holds it), :func:`valid`.
Fails: never.

``$seen $flagged $answered $draft`` are IMAP's ``\\Seen \\Flagged \\Answered
\\Draft``; other keywords are IMAP keywords, compared without case (JMAP
keywords are lower case). ``\\Deleted`` has no keyword: JMAP never shows it
and a keyword change never clears it; ``\\Recent`` is never stored.
"""

from __future__ import annotations

import re

SYSTEM = {"$seen": "\\Seen", "$flagged": "\\Flagged", "$answered": "\\Answered", "$draft": "\\Draft"}
_FROM_FLAG = {v.lower(): k for k, v in SYSTEM.items()}
# RFC 8621 §4.1.1: a keyword is 1-255 of %x21-%x7e except ( ) { ] % * " \
_KEYWORD = re.compile(r'[\x21-\x7e]{1,255}')
_FORBIDDEN = set('(){]%*"\\')


def valid(keyword) -> bool:
    return isinstance(keyword, str) and _KEYWORD.fullmatch(keyword) is not None and not (_FORBIDDEN & set(keyword))


def keyword(flag: str) -> str | None:
    if flag.startswith("\\"):
        return _FROM_FLAG.get(flag.lower())
    return flag.lower()


def keywords(flags) -> dict[str, bool]:
    return {k: True for f in flags if (k := keyword(f)) is not None}


def flag(kw: str) -> str:
    return SYSTEM.get(kw.lower(), kw.lower())


def to_flags(current, wanted) -> frozenset[str]:
    """The flags that make ``wanted`` the keyword set, keeping what JMAP does not show (\\Deleted)
    and the case an IMAP client gave an existing keyword."""
    want = {k.lower() for k in wanted}
    kept = {f for f in current if keyword(f) is None or keyword(f) in want}
    have = {keyword(f) for f in kept}
    return frozenset(kept | {flag(k) for k in want if k not in have})


def matching(current, kw: str) -> set[str]:
    """The stored flags that are this keyword (any case), or the flag to add when none is."""
    k = kw.lower()
    got = {f for f in current if keyword(f) == k}
    return got or {flag(k)}
