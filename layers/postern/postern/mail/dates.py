"""Dates as IMAP and RFC 5322 write them, parsed strictly: one parser per syntax, used everywhere.

In:   text or bytes: an IMAP ``date`` (SEARCH BEFORE/ON/SINCE/SENT*), an IMAP
      ``date-time`` (APPEND), or the value of a Date: field.
Out:  :func:`parse_imap_date` -> :class:`datetime.date`;
      :func:`parse_imap_date_time` -> an aware :class:`datetime.datetime`;
      :func:`parse_rfc5322_date` -> an aware datetime, or None.
Fails: the IMAP parsers raise ValueError for anything that is not the
      grammar or not a real moment: ``31-Feb-2026`` is refused, never rolled
      over into March (a calendar normalisation would store the wrong day);
      :func:`parse_rfc5322_date` answers None instead (a message's Date: is
      data, not a command: the caller falls back to its own rule).

RFC 5322 §3.3 with the obsolete forms of §4.3: optional day of week,
comments anywhere (removed), two-digit years (00-49 are 20xx, 50-99 19xx),
three-digit years (+1900), optional seconds, a second of 60 (a leap second,
read as 59), named zones (UT, GMT, the US zones), and military or unknown
zone names and a missing zone read as ``-0000`` (UTC, no zone information).
The day of week is not checked against the date (RFC 5322 §3.3 says it
must match, but mail that gets it wrong is still dated by its date).
"""

from __future__ import annotations

import datetime as _dt
import re

from .encoded import as_text
from .limits import structured

__all__ = ["MONTHS", "parse_imap_date", "parse_imap_date_time", "parse_rfc5322_date"]

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH = {m.upper(): i for i, m in enumerate(MONTHS, 1)}
_DAYS = {"MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"}

# RFC 3501 §9: date = date-text / DQUOTE date-text DQUOTE; date-text = date-day "-" date-month "-" date-year
_IMAP_DATE = re.compile(r"(\d{1,2})-([A-Za-z]{3})-(\d{4})")
# date-time = DQUOTE date-day-fixed "-" date-month "-" date-year SP time SP zone DQUOTE
# (date-day-fixed = (SP DIGIT) / 2DIGIT; a one-digit day is read too)
_IMAP_DATE_TIME = re.compile(r"([ \d]?\d)-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)")

_RFC5322 = re.compile(
    r"(?:([A-Za-z]{3})\s*,\s*)?"  # day-of-week ","
    r"(\d{1,2})\s*([A-Za-z]{3})\s*(\d{2,4})\s+"  # day month year (obs: CFWS may be absent around month)
    r"(\d{1,2})\s*:\s*(\d{2})(?:\s*:\s*(\d{2}))?"  # hour ":" minute [":" second]
    r"(?:\s*([+-])(\d{2})(\d{2})|\s*([A-Za-z]{1,5}))?"  # zone / obs-zone
)
_NAMED_ZONES = {"UT": 0, "GMT": 0, "UTC": 0, "Z": 0, "EST": -5, "EDT": -4, "CST": -6, "CDT": -5,
                "MST": -7, "MDT": -6, "PST": -8, "PDT": -7}


def _unquote(value: bytes | str) -> str:
    text = as_text(bytes(value) if isinstance(value, bytearray) else value)
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
    return text


def _imap_match(pattern: re.Pattern, value: bytes | str, what: str) -> tuple[re.Match, int]:
    """The grammar's match and the month number, or ValueError."""
    text = _unquote(value)
    m = pattern.fullmatch(text)
    month = _MONTH.get(m.group(2).upper()) if m else None
    if m is None or month is None:
        raise ValueError(f"bad {what}: {text[:40]!r}")
    return m, month


def parse_imap_date(value: bytes | str) -> _dt.date:
    """RFC 3501 §9 ``date`` (``1-Feb-1994``, optionally in DQUOTEs). Raises ValueError."""
    m, month = _imap_match(_IMAP_DATE, value, "date")
    return _dt.date(int(m.group(3)), month, int(m.group(1)))  # ValueError for 31-Feb


def _zone(sign: str, hh: str, mm: str) -> _dt.timezone:
    hours, minutes = int(hh), int(mm)
    if hours > 23 or minutes > 59:
        raise ValueError("zone out of range")
    offset = _dt.timedelta(hours=hours, minutes=minutes)
    return _dt.timezone(-offset if sign == "-" else offset)


def _moment(year: int, month: int, day: int, hh: int, mm: int, ss: int, tz: _dt.tzinfo) -> _dt.datetime:
    if hh > 23 or mm > 59 or ss > 60:
        raise ValueError("time out of range")
    return _dt.datetime(year, month, day, hh, mm, min(ss, 59), tzinfo=tz)  # ValueError for 31 Feb


def parse_imap_date_time(value: bytes | str) -> _dt.datetime:
    """RFC 3501 §9 ``date-time`` (``"dd-Mon-yyyy hh:mm:ss +zzzz"``) -> aware datetime. Raises ValueError."""
    m, month = _imap_match(_IMAP_DATE_TIME, value, "date-time")
    day, _, year, hh, mm, ss, sign, zh, zm = m.groups()
    return _moment(int(year), month, int(day.strip()), int(hh), int(mm), int(ss), _zone(sign, zh, zm))


def _uncomment(text: str) -> str:
    """``text`` with its comments (nested, RFC 5322 §3.2.2) replaced by a space; one linear pass."""
    if "(" not in text:
        return text
    out = []
    depth = 0
    escaped = False
    for c in text:
        if depth:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
                if not depth:
                    out.append(" ")
        elif c == "(":
            depth = 1
        else:
            out.append(c)
    return "".join(out)


def parse_rfc5322_date(value: bytes | str) -> _dt.datetime | None:
    """A Date: field value (RFC 5322 §3.3, §4.3) -> aware datetime; None when it is not a real date."""
    if isinstance(value, (bytes, bytearray)):
        value = structured(bytes(value))
    text = " ".join(_uncomment(as_text(value)[: 8 * 1024]).split())
    m = _RFC5322.fullmatch(text)
    if m is None:
        return None
    dow, day, mon, year, hh, mm, ss, sign, zh, zm, zname = m.groups()
    month = _MONTH.get(mon.upper())
    if month is None or (dow is not None and dow.upper() not in _DAYS):
        return None
    y = int(year)
    if len(year) == 2:
        y += 2000 if y < 50 else 1900  # RFC 5322 §4.3
    elif len(year) == 3:
        y += 1900
    try:
        if sign is not None:
            tz: _dt.tzinfo = _zone(sign, zh, zm)
        else:
            # named US zones; military letters, other names and no zone: -0000 (RFC 5322 §4.3)
            tz = _dt.timezone(_dt.timedelta(hours=_NAMED_ZONES.get((zname or "").upper(), 0)))
        return _moment(y, month, int(day), int(hh), int(mm), int(ss or 0), tz)
    except (ValueError, OverflowError):
        return None
