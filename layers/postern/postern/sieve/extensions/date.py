"""date and index (RFC 5260): test dates in headers and the current date; pick one header field.

``date [:zone Z | :originalzone] [COMPARATOR] [MATCH-TYPE] <header> <part> <keys>``
reads the field as an RFC 5322 date-time (the shared strict parser,
postern.mail.dates; for ``Received`` the date after the last ``;``, §4.1);
a missing or unreadable date gives no value (the test fails, ``:count`` is 0).
``currentdate [:zone Z] [COMPARATOR] [MATCH-TYPE] <part> <keys>`` reads the
delivery's clock. Without ``:zone`` dates are shown in UTC (Postern has no
per-user time zone); ``:originalzone`` keeps the header's own zone.
Parts (§4.2): year month day date julian hour minute second time iso8601
std11 zone weekday. ``:index N [:last]`` (index, §6) selects the Nth field of
that name, counted from the end with ``:last``; it applies to header, address
and date.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass
from email.utils import format_datetime

from ...mail.dates import parse_rfc5322_date
from .. import match
from ..compiler import COMPARATOR, INDEX, MATCH_TYPES, STRING, STRING_LIST, Definition, TagSpec
from ..program import Str, Tst
from ..syntax import StringList
from .core import header_names, index_of, select_index

CAPABILITIES = ("date", "index")
PARTS = ("year", "month", "day", "date", "julian", "hour", "minute", "second", "time", "iso8601", "std11",
         "zone", "weekday")
ZONE = TagSpec("zone", STRING, "zone")
ORIGINALZONE = TagSpec("originalzone", None, "zone")
_ZONE = re.compile(r"([+-])(\d\d)(\d\d)\Z")
_MJD_EPOCH = _dt.date(1858, 11, 17)


def parse_zone(text: str) -> _dt.timezone | None:
    m = _ZONE.match(text.strip())
    if m is None or int(m.group(2)) > 23 or int(m.group(3)) > 59:
        return None
    minutes = int(m.group(2)) * 60 + int(m.group(3))
    return _dt.timezone(_dt.timedelta(minutes=-minutes if m.group(1) == "-" else minutes))


def _zone_text(d: _dt.datetime) -> str:
    off = int(d.utcoffset().total_seconds() // 60)
    sign = "-" if off < 0 else "+"
    return f"{sign}{abs(off) // 60:02d}{abs(off) % 60:02d}"


def date_part(d: _dt.datetime, part: str) -> str:
    """RFC 5260 §4.2."""
    if part == "year":
        return f"{d.year:04d}"
    if part == "month":
        return f"{d.month:02d}"
    if part == "day":
        return f"{d.day:02d}"
    if part == "date":
        return f"{d.year:04d}-{d.month:02d}-{d.day:02d}"
    if part == "julian":
        return str((d.date() - _MJD_EPOCH).days)
    if part == "hour":
        return f"{d.hour:02d}"
    if part == "minute":
        return f"{d.minute:02d}"
    if part == "second":
        return f"{d.second:02d}"
    if part == "time":
        return f"{d.hour:02d}:{d.minute:02d}:{d.second:02d}"
    if part == "iso8601":
        z = _zone_text(d)
        zone = "Z" if z == "+0000" else f"{z[:3]}:{z[3:]}"
        return f"{d.year:04d}-{d.month:02d}-{d.day:02d}T{d.hour:02d}:{d.minute:02d}:{d.second:02d}{zone}"
    if part == "std11":
        return format_datetime(d)
    if part == "zone":
        return _zone_text(d)
    if part == "weekday":
        return str((d.weekday() + 1) % 7)  # 0 = Sunday
    return ""


def _in_zone(rt, d: _dt.datetime, zone: Str | None, original: bool) -> _dt.datetime | None:
    if original:
        return d
    if zone is None:
        return d.astimezone(_dt.timezone.utc)
    tz = parse_zone(zone.value(rt))
    return None if tz is None else d.astimezone(tz)


def _check_part(args, s: Str, node) -> None:
    if s.constant and s.text.lower() not in PARTS:
        raise args.error(f"unknown date part \"{s.text}\"", node)


def _check_zone(args, tags) -> Str | None:
    if "zone" not in tags:
        return None
    node = tags["zone"]
    s = args.cx.string(node)
    if s.constant and parse_zone(s.text) is None:
        raise args.error(f"invalid time zone \"{s.text}\" (+hhmm or -hhmm)", node)
    return s


@dataclass(frozen=True)
class DateTest(Tst):
    matcher: match.Matcher
    header: tuple[Str, ...]  # one name
    part: Str
    keys: tuple[Str, ...]
    zone: Str | None = None
    original: bool = False
    index: int | None = None
    last: bool = False
    line: int = 0

    def eval(self, rt) -> bool:
        name = self.header[0].value(rt).lower()
        fields = rt.ctx.message.header.get_all(name.encode("utf-8", "replace"))
        rt.step(1 + len(fields))
        part = self.part.value(rt).lower()
        values = []
        for raw in select_index(fields, self.index, self.last):
            if name == "received":
                raw = raw.rsplit(b";", 1)[-1]
            d = parse_rfc5322_date(raw)
            d = _in_zone(rt, d, self.zone, self.original) if d is not None else None
            if d is not None and part in PARTS:
                values.append(date_part(d, part))
        return rt.matches(self.matcher, values, [k.value(rt) for k in self.keys])


@dataclass(frozen=True)
class CurrentDate(Tst):
    matcher: match.Matcher
    part: Str
    keys: tuple[Str, ...]
    zone: Str | None = None
    line: int = 0

    def eval(self, rt) -> bool:
        d = _in_zone(rt, rt.ctx.now, self.zone, False)
        part = self.part.value(rt).lower()
        values = [date_part(d, part)] if d is not None and part in PARTS else []
        return rt.matches(self.matcher, values, [k.value(rt) for k in self.keys])


def _date(node, args, cx):
    tags = args.tags(ZONE, ORIGINALZONE, COMPARATOR, *MATCH_TYPES, *INDEX)
    header, part, keys = args.positional(STRING, STRING, STRING_LIST)
    names = header_names(args, StringList((header,), header.line, header.column), cx)
    p = cx.string(part)
    _check_part(args, p, part)
    index, last = index_of(args, tags)
    return DateTest(args.matcher(tags), names, p, cx.strings(keys), _check_zone(args, tags),
                    "originalzone" in tags, index, last, node.line)


def _currentdate(node, args, cx):
    tags = args.tags(ZONE, COMPARATOR, *MATCH_TYPES)
    part, keys = args.positional(STRING, STRING_LIST)
    p = cx.string(part)
    _check_part(args, p, part)
    return CurrentDate(args.matcher(tags), p, cx.strings(keys), _check_zone(args, tags), node.line)


COMMANDS = ()
TESTS = (Definition("date", "date", _date), Definition("currentdate", "date", _currentdate))
