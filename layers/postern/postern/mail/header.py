"""Where a header section ends, where its fields are, and a view of them by name.

In:   bytes holding a message or a MIME entity (a whole message, a header
      section alone, or a slice ``[start, end)`` of a larger buffer).
Out:  :func:`header_end` / :func:`header_length` (the ONE rule for where a
      header section ends), :func:`split` (its fields as :class:`Field` byte
      ranges), :func:`field_spans` (fields of given names, found fast),
      :func:`unfold` (a field's value), and :class:`Header`, the view every
      consumer reads fields through: raw values by name, and the capped
      parsed values (decoded text, addresses, the Date, References).
Fails: never. Bytes that are not a field still occupy a line (``Field.name``
      is None) and are reported in :attr:`Header.faults`.

The rules (each written here once)
----------------------------------
* A line ends at LF, with or without a CR before it (mail that arrived with
  bare newlines is stored as it arrived and canonicalised to CRLF only on
  output). A bare CR is not a line end: SMTP ingest refuses it.
* The header section ends at the first empty line (RFC 5322 §2.1). So
  ``A: b\\n\\r\\nbody`` has a 7-byte header section (``A: b`` LF, then the empty
  line CRLF): exactly what its canonical form ``A: b\\r\\n\\r\\nbody`` has, and
  what the stdlib feedparser, dkimpy and Dovecot read. A message without an
  empty line is all header.
* A field starts at a line that does not begin with SP/HTAB; continuation
  lines belong to it (RFC 5322 §2.2.3). Its name is the text before the
  first colon with trailing SP/HTAB removed, which reads the obsolete
  ``From :`` as From (RFC 5322 §4.5); the name must then be 1*ftext
  (printable US-ASCII, §3.6.8), else the line is not a field.
* The view's caps (:mod:`postern.mail.limits`) apply to what is *parsed* --
  never to stored bytes, which stay as received (DKIM verifies them).
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

from . import limits
from .addresses import Group, Mailbox, parse_address_list
from .dates import parse_rfc5322_date
from .encoded import decode_words

__all__ = [
    "Field",
    "Split",
    "Header",
    "header_end",
    "header_length",
    "split",
    "field_spans",
    "unfold",
    "FAULT_LEADING_CONTINUATION",
    "FAULT_NOT_A_FIELD",
    "FAULT_TOO_MANY_FIELDS",
]

_WS = b" \t"
_FIELD_BREAK = re.compile(rb"\n(?![ \t])")  # a line end not followed by a continuation line
_BAD_NAME = re.compile(rb"[^\x21-\x39\x3b-\x7e]")  # RFC 5322 §3.6.8 ftext: printable US-ASCII except ":"
_UNFOLD_RE = re.compile(rb"\r?\n(?=[ \t])")
_EOL_RE = re.compile(rb"[\r\n]")
_MSGID_RE = re.compile(rb"<([^<>]*)>")

FAULT_LEADING_CONTINUATION = "the header section starts with a continuation line"
FAULT_NOT_A_FIELD = "a header line is not a field (no colon or a bad field name)"
FAULT_TOO_MANY_FIELDS = "too many header fields"


@dataclass(frozen=True, slots=True)
class Field:
    """One header field located in a buffer (byte offsets into that buffer)."""

    name: bytes | None  # lower-cased field name; None for a line that is not a field
    start: int  # first byte of the field
    value_start: int  # first byte after the colon (== start when name is None)
    end: int  # one past the field's last line ending


class Split(NamedTuple):
    fields: list[Field]
    header_end: int  # where the empty line starts (== body_start when there is none)
    body_start: int  # first byte after the empty line


def header_end(buf: bytes, start: int = 0, end: int | None = None) -> tuple[int, int]:
    """(header_end, body_start) of the entity at ``buf[start:end]``.

    ``header_end`` is where its first empty line starts (the end of the last
    field), ``body_start`` where that line ends; both are ``end`` when there
    is no empty line.
    """
    if end is None:
        end = len(buf)
    if start >= end:
        return end, end
    if buf.startswith(b"\n", start):
        return start, start + 1
    if buf.startswith(b"\r\n", start) and start + 2 <= end:
        return start, start + 2
    lf = buf.find(b"\n\n", start, end)
    crlf = buf.find(b"\n\r\n", start, end)
    if lf < 0 and crlf < 0:
        return end, end
    if crlf < 0 or 0 <= lf < crlf:
        return lf + 1, lf + 2
    return crlf + 1, crlf + 3


def header_length(raw: bytes) -> int:
    """Length of the header section of ``raw`` including the empty line (all of ``raw`` without one)."""
    return header_end(raw)[1]


def _field(buf: bytes, start: int, end: int) -> Field:
    colon = buf.find(b":", start, end)
    if colon > start:
        name = buf[start:colon].rstrip(_WS)  # obs-optional: WSP before the colon (RFC 5322 §4.5)
        if name and not _BAD_NAME.search(name):
            return Field(name.lower(), start, colon + 1, end)
    return Field(None, start, start, end)


def split(buf: bytes, start: int = 0, end: int | None = None, max_fields: int | None = None) -> Split:
    """The fields of the header section of ``buf[start:end]``, in order.

    ``max_fields`` bounds the work for callers that only want the leading
    fields' meaning; fields past it are not returned (``header_end`` and
    ``body_start`` still describe the whole section).
    """
    if end is None:
        end = len(buf)
    h_end, body_start = header_end(buf, start, end)
    fields: list[Field] = []
    pos = start
    if pos >= h_end:
        return Split(fields, h_end, body_start)
    for m in _FIELD_BREAK.finditer(buf, start, h_end):
        fields.append(_field(buf, pos, m.end()))
        pos = m.end()
        if max_fields is not None and len(fields) >= max_fields:
            return Split(fields, h_end, body_start)
    if pos < h_end:
        fields.append(_field(buf, pos, h_end))
    return Split(fields, h_end, body_start)


def field_spans(buf: bytes, names, end: int, start: int = 0, lower: bytes | None = None) -> list[tuple[int, int, int]]:
    """(start, value_start, end) of every field in ``buf[start:end]`` whose lower-cased name is in ``names``.

    The same fields :func:`split` finds, located with ``bytes.find`` of
    ``LF + name`` in a lower-cased copy of ``buf[start:end]`` (pass it as
    ``lower`` to reuse one), so the cost is a few C-speed scans however many
    lines the header has. Sorted by position; offsets are into ``buf``.
    """
    if lower is None:
        lower = buf[start:end].lower()
    size = len(lower)
    spans = []
    for name in names:
        if not name:
            continue
        n = len(name)
        needle = b"\n" + name
        pos = 0 if lower.startswith(name) else lower.find(needle) + 1
        while pos > 0 or (pos == 0 and lower.startswith(name)):
            k = pos + n
            while k < size and lower[k] in _WS:
                k += 1
            if k < size and lower[k] == 0x3A:  # ":"
                brk = _FIELD_BREAK.search(buf, start + k + 1, end)
                spans.append((start + pos, start + k + 1, brk.end() if brk else end))
            nxt = lower.find(needle, pos)
            if nxt < 0:
                break
            pos = nxt + 1
    spans.sort()
    return spans


def unfold(buf: bytes, f: Field) -> bytes:
    """A field's value: unfolded (RFC 5322 §2.2.3), stray CR/LF removed, NUL made U+FFFD, stripped."""
    v = buf[f.value_start : f.end]
    if v.endswith(b"\r\n"):
        v = v[:-2]
    elif v.endswith(b"\n"):
        v = v[:-1]
    if b"\n" not in v and b"\r" not in v and b"\x00" not in v:
        return v.strip(_WS)  # the common, unfolded case
    v = _UNFOLD_RE.sub(b"", v)
    v = _EOL_RE.sub(b"", v)
    if b"\x00" in v:
        v = v.replace(b"\x00", b"\xef\xbf\xbd")
    return v.strip(_WS)


class Header:
    """The fields of one header section, by name; raw and parsed (capped) values.

    ``Header(buf)`` reads the header section at the start of ``buf`` (a whole
    message works too); ``Header(buf, start, end)`` the entity at that slice.
    Lookups by name (:meth:`get_all` and everything built on it) find every
    field of that name in the whole section; :attr:`fields` (the ordered
    list, for callers that walk all fields) stops at ``max_fields``.
    """

    __slots__ = ("buf", "start", "end", "body_start", "_max", "_fields", "_lower", "_spans", "_faults")

    def __init__(self, buf: bytes, start: int = 0, end: int | None = None, max_fields: int = limits.MAX_FIELDS):
        self.buf = buf
        self.start = start
        self.end, self.body_start = header_end(buf, start, len(buf) if end is None else end)
        self._max = max_fields
        self._fields: list[Field] | None = None
        self._lower: bytes | None = None
        self._spans: dict[bytes, list[tuple[int, int, int]]] = {}
        self._faults: tuple[str, ...] | None = None

    @classmethod
    def of_fields(cls, buf: bytes, split_result: Split, start: int = 0, max_fields: int = limits.MAX_FIELDS) -> Header:
        """A view over a section already split (saves a second scan)."""
        h = cls.__new__(cls)
        h.buf, h.start, h.end, h.body_start = buf, start, split_result.header_end, split_result.body_start
        h._max = max_fields
        h._fields = split_result.fields
        h._lower = None
        h._spans = {}
        h._faults = None
        return h

    # --- raw ---------------------------------------------------------------
    @property
    def fields(self) -> list[Field]:
        """The section's fields in order (at most ``max_fields``)."""
        if self._fields is None:
            self._fields = split(self.buf, self.start, self.end, self._max).fields
        return self._fields

    def spans(self, name: bytes) -> list[tuple[int, int, int]]:
        """(start, value_start, end) of every field called ``name`` (lower case), in order."""
        got = self._spans.get(name)
        if got is None:
            if self._lower is None:
                self._lower = self.buf[self.start : self.end].lower()
            got = field_spans(self.buf, (name,), self.end, self.start, self._lower)
            self._spans[name] = got
        return got

    def count(self, name: bytes) -> int:
        return len(self.spans(name))

    def get_all(self, name: bytes) -> list[bytes]:
        """Unfolded raw values of every field called ``name`` (at most MAX_SAME_NAME of them)."""
        return [unfold(self.buf, Field(name, s, v, e)) for s, v, e in self.spans(name)[: limits.MAX_SAME_NAME]]

    def get(self, name: bytes) -> bytes | None:
        """Unfolded raw value of the first field called ``name``, or None."""
        spans = self.spans(name)
        if not spans:
            return None
        s, v, e = spans[0]
        return unfold(self.buf, Field(name, s, v, e))

    def value(self, f: Field) -> bytes:
        return unfold(self.buf, f)

    @property
    def faults(self) -> tuple[str, ...]:
        """What makes this section other than a plain list of fields (RFC 5322 §2.2, §3.6), in order."""
        if self._faults is None:
            out = []
            fields = split(self.buf, self.start, self.end, self._max + 1).fields
            leading = self.end > self.start and self.buf[self.start] in _WS
            if leading:
                out.append(FAULT_LEADING_CONTINUATION)
            if any(f.name is None for f in fields[1 if leading else 0 :]):
                out.append(FAULT_NOT_A_FIELD)
            if len(fields) > self._max:
                out.append(FAULT_TOO_MANY_FIELDS)
            self._faults = tuple(out)
        return self._faults

    # --- parsed (capped) -----------------------------------------------------
    def text(self, name: bytes) -> str | None:
        """The first ``name`` field as text: RFC 2047 words decoded (at most MAX_ENCODED_WORDS)."""
        v = self.get(name)
        return None if v is None else decode_words(v)

    def texts(self, name: bytes) -> list[str]:
        return [decode_words(v) for v in self.get_all(name)]

    def addresses(self, name: bytes) -> list[Mailbox | Group]:
        """Addresses of every ``name`` field, each value capped at MAX_STRUCTURED bytes."""
        out: list[Mailbox | Group] = []
        for v in self.get_all(name):
            out += parse_address_list(limits.structured(v))
        return out

    def date(self) -> object | None:
        """The Date: field as an aware datetime (RFC 5322 §3.3, strict), or None."""
        v = self.get(b"date")
        return None if v is None else parse_rfc5322_date(limits.structured(v))

    def message_ids(self, name: bytes) -> list[bytes]:
        """The msg-ids (without ``<>``, whitespace removed) of the first ``name`` field, capped."""
        v = self.get(name)
        return [] if v is None else _msg_ids(limits.structured(v))

    def references(self) -> list[bytes]:
        """References (RFC 5322 §3.6.4): its first msg-id and its last MAX_REFERENCES."""
        v = self.get(b"references")
        if v is None:
            return []
        first: bytes | None = None
        last: deque[bytes] = deque(maxlen=limits.MAX_REFERENCES)
        for m in _MSGID_RE.finditer(v):
            ident = _clean_id(m.group(1))
            if ident is None:
                continue
            if first is None:
                first = ident
            else:
                last.append(ident)
        return ([first] if first is not None else []) + list(last)


def _clean_id(ident: bytes) -> bytes | None:
    ident = b"".join(ident.split())
    return ident if ident and b"@" in ident else None


def _msg_ids(value: bytes) -> list[bytes]:
    out = []
    for m in _MSGID_RE.finditer(value):
        ident = _clean_id(m.group(1))
        if ident is not None:
            out.append(ident)
    return out
