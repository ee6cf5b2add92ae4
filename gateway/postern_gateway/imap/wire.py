"""IMAP string and date encoding on the wire (RFC 3501 §4, §9).

In:   Python values (bytes / str / None / epoch floats).
Out:  wire bytes: ``NIL``, ``"quoted"`` strings, ``{n}\\r\\n...`` literals,
      parenthesised lists, ``date-time`` strings. (Dates are *parsed* by the one
      strict parser, :mod:`postern.mail.dates`.)
Fails: never.

Pure functions, no I/O; shared by imap-core (responses) and imap-content
(ENVELOPE, BODYSTRUCTURE, SEARCH).
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Iterable

NIL = b"NIL"

from postern.mail.dates import MONTHS

# Strings longer than this go out as literals even when every byte is safe:
# some clients choke on very long quoted strings.
MAX_QUOTED = 4096

# RFC 3501 §9: QUOTED-CHAR is any TEXT-CHAR (CHAR except CR / LF, CHAR = %x01-7F);
# so a quoted string cannot hold NUL, CR, LF or 8-bit bytes.
_UNSAFE_QUOTED = re.compile(rb"[^\x01-\x09\x0b\x0c\x0e-\x7f]")

# RFC 3501 §9 atom-specials: "(" / ")" / "{" / SP / CTL / list-wildcards ("%" "*")
# / quoted-specials ('"' "\") / resp-specials ("]"); ASTRING-CHAR = ATOM-CHAR / "]".
_ATOM_SPECIALS = b'(){ %*"\\]'
_ATOM_CHARS = bytes(c for c in range(0x21, 0x7F) if c not in _ATOM_SPECIALS)
_ATOM_OK = re.compile(b"[" + re.escape(_ATOM_CHARS) + b"]+")
_ASTRING_OK = re.compile(b"[" + re.escape(_ATOM_CHARS + b"]") + b"]+")


def _b(value: bytes | str) -> bytes:
    return value.encode("utf-8", "surrogateescape") if isinstance(value, str) else bytes(value)


def literal(value: bytes | str) -> bytes:
    """A synchronising literal ``{n}\\r\\n<bytes>`` (RFC 3501 §4.3)."""
    data = _b(value)
    return b"{%d}\r\n" % len(data) + data


def quote(value: bytes | str | None) -> bytes:
    """``NIL`` for None, a quoted string when every byte allows it, else a literal.

    RFC 3501 §4.3 / §9: inside quotes only ``\\`` and ``"`` are escaped; CR, LF,
    NUL and 8-bit bytes force a literal.
    """
    if value is None:
        return NIL
    data = _b(value)
    if len(data) > MAX_QUOTED or _UNSAFE_QUOTED.search(data):
        return literal(data)
    return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


nstring = quote  # RFC 3501 §9 nstring = string / nil


def string(value: bytes | str) -> bytes:
    """An IMAP ``string`` (never NIL): ``""`` for empty input."""
    return quote(b"" if value is None else value)


def astring(value: bytes | str) -> bytes:
    """An ``astring``: a bare atom when the bytes are ASTRING-CHARs, else a string.

    The word NIL is always quoted so it is not read as nil.
    """
    data = _b(value)
    if data and _ASTRING_OK.fullmatch(data) and data.upper() != b"NIL":
        return data
    return quote(data)


def is_atom(value: bytes | str) -> bool:
    """True when the text is a non-empty run of ATOM-CHARs (RFC 3501 §9)."""
    data = _b(value)
    return bool(data) and _ATOM_OK.fullmatch(data) is not None


def format_list(items: Iterable[bytes]) -> bytes:
    """A parenthesised list of already-encoded items: ``(a b c)``; ``()`` when empty."""
    return b"(" + b" ".join(items) + b")"


def nlist(items: Iterable[bytes] | None) -> bytes:
    """A parenthesised list, or ``NIL`` when there are no items."""
    if items is None:
        return NIL
    items = list(items)
    return format_list(items) if items else NIL


# --- dates -------------------------------------------------------------------


def format_internaldate(when: float | _dt.datetime, tz: _dt.tzinfo | None = _dt.timezone.utc) -> bytes:
    """RFC 3501 §9 ``date-time``, quoted: ``"01-Jan-2026 10:00:00 +0000"``.

    ``date-day-fixed`` is ``(SP DIGIT) / 2DIGIT``: we send the zero-padded
    form as Dovecot and Cyrus do (``"01-Jan-2026 ..."``). ``when`` is epoch seconds (UTC) or an aware datetime (kept in its
    zone unless ``tz`` is given).
    """
    if isinstance(when, _dt.datetime):
        dt = when if when.tzinfo is not None else when.replace(tzinfo=_dt.timezone.utc)
        if tz is not None:
            dt = dt.astimezone(tz)
    else:
        dt = _dt.datetime.fromtimestamp(float(when), tz or _dt.timezone.utc)
    off = dt.utcoffset() or _dt.timedelta(0)
    minutes = int(off.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    text = "%02d-%s-%04d %02d:%02d:%02d %s%02d%02d" % (
        dt.day,
        MONTHS[dt.month - 1],
        dt.year,
        dt.hour,
        dt.minute,
        dt.second,
        sign,
        minutes // 60,
        minutes % 60,
    )
    return b'"' + text.encode("ascii") + b'"'
