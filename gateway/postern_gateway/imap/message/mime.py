"""Where each MIME entity of a message is (RFC 2045, RFC 2046), and what its Content-Type says.

In:   the bytes of a message (or of an entity inside one).
Out:  :func:`parse` -> the root :class:`Entity`: byte offsets of each entity's header and body,
      its media type and parameters, its parts (multipart) or encapsulated message
      (message/rfc822); :func:`content_disposition` -> the meaning of a Content-Disposition.
Fails: never. Malformed MIME gives the nearest sensible structure (RFC 2045 §5.2 defaults:
      text/plain; charset=us-ascii; an unclosed multipart ends where its parent does; a
      multipart without any part gets one empty text/plain part, as Dovecot answers, since
      RFC 3501 §9 ``body-type-mpart`` needs at least one body).

A header section is split by :mod:`postern.mail.header` (the one splitter), keeping byte
ranges; the values of Content-Type / Content-Disposition are read by the stdlib
``email._header_value_parser`` (the parser behind ``policy.default``'s header registry; at most
:data:`MAX_PARSED_VALUE` bytes): media type, parameters incl. RFC 2231 continuations. The
stdlib parser is kept from decoding encoded-words (its decoding is what grows with the square
of their number; BODYSTRUCTURE carries raw header text anyway, RFC 3501 §7.4.2) by shielding
``=?`` with a private-use sentinel while it parses.

A multipart body is cut at its delimiter lines, found with ``bytes.find`` of ``--`` + the
boundary, using the email package's own rule for what is a delimiter line (``feedparser``'s
boundary regex: the delimiter, an optional ``--``, optional SP/HTAB, then end of line). The CRLF
before a delimiter belongs to the delimiter (RFC 2046 §5.1.1). Each message is scanned once, in
time linear in its size: the body bytes of leaf parts are never copied or parsed (a 10 MB
attachment costs one ``find`` for the next delimiter). Bounded: :data:`MAX_PARTS` entities,
:data:`MAX_DEPTH` levels; the CPU of hostile structures is the work budget's
(``imap/work.py``).
"""

from __future__ import annotations

import functools
import re
import urllib.parse
from dataclasses import dataclass, field
from email import _header_value_parser as _hvp

from postern.mail import limits
from postern.mail.header import Header, split

from ...workers import EXHAUSTED

__all__ = ["Entity", "parse", "content_disposition", "MAX_PARTS", "MAX_DEPTH", "TOKEN_RE"]

MAX_DEPTH = 100  # nesting deeper than this is treated as opaque application/octet-stream
MAX_PARTS = 10_000  # MIME entities per message; the rest of a multipart joins its last part
MAX_PARSED_VALUE = limits.MAX_STRUCTURED  # longer header values are not handed to the email package
MAX_FIELDS = limits.MAX_FIELDS  # header fields in a section's ordered list (ENVELOPE, BODYSTRUCTURE)

_SENTINEL = "\ue000"
_WS = b" \t"
TOKEN_RE = re.compile(rb"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")  # RFC 2045 §5.1 token


@dataclass
class Entity:
    """One MIME entity located in the buffer: header ``[start, body_start)``, body ``[body_start, end)``."""

    start: int
    header_end: int
    body_start: int
    end: int
    header: Header
    maintype: str = "text"
    subtype: str = "plain"
    params: tuple[tuple[str, bytes], ...] = ()
    has_content_type: bool = False
    children: list[Entity] = field(default_factory=list)  # multipart parts
    message: Entity | None = None  # the encapsulated message of a message/rfc822 part
    synthetic: bool = False  # the empty text/plain part stood in for a multipart without parts

    @property
    def is_multipart(self) -> bool:
        return self.maintype == "multipart"


def _text(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")


def _shield(text: str) -> str:
    return text.replace("=?", "=" + _SENTINEL + "?")


def _unshield(text: str) -> bytes:
    return text.replace(_SENTINEL, "").encode("utf-8", "surrogateescape")


def _params(mime_params) -> list[tuple[str, bytes]]:
    """Parameters as (lower-cased name, wire value bytes), RFC 2231 continuations merged.

    An RFC 2231 *encoded* value that is not plain ASCII is given back in RFC 2231
    form under ``name*`` (``charset''%xx``), as Dovecot does, so nothing is lost
    and the wire value stays 7-bit.
    """
    extended: dict[str, str] = {}
    for tok in mime_params:
        if tok.token_type.endswith("parameter") and len(tok) and tok[0].token_type == "attribute":
            name = tok[0].value.strip().lower()
            if tok.extended and name not in extended:
                extended[name] = tok.charset or "utf-8"
    out: list[tuple[str, bytes]] = []
    seen: set[str] = set()
    for name, value in mime_params.params:
        lname = name.lower().replace(_SENTINEL, "")
        if not lname or lname in seen:
            continue
        seen.add(lname)
        raw = _unshield(value)
        charset = extended.get(lname)
        if charset is not None and not raw.isascii():
            try:
                data = value.replace(_SENTINEL, "").encode(charset, "surrogateescape")
            except (LookupError, UnicodeError):
                charset, data = "utf-8", raw
            out.append((lname + "*", charset.encode("ascii", "replace") + b"''" + urllib.parse.quote(data).encode()))
        else:
            out.append((lname, raw))
    return out


def _parse_content_type(value: bytes | None, default: tuple[str, str]):
    """(maintype, subtype, params, present) of a Content-Type value; short values are cached."""
    if value is not None and len(value) > 1024:
        return _parse_content_type_uncached(value, default)
    return _parse_content_type_cached(value, default)


def _parse_content_type_uncached(value: bytes | None, default: tuple[str, str]):
    if value is None:
        return default[0], default[1], (), False
    if len(value) > MAX_PARSED_VALUE:
        return "application", "octet-stream", (), True
    try:
        ct = _hvp.parse_content_type_header(_shield(_text(value)))
        maintype, subtype = ct.maintype, ct.subtype
        params = ()
        for tok in ct:
            if tok.token_type == "mime-parameters":
                params = tuple(_params(tok))
        maintype = maintype.replace(_SENTINEL, "") or "text"
        subtype = subtype.replace(_SENTINEL, "") or "plain"
        if not all(TOKEN_RE.fullmatch(t.encode("utf-8", "replace")) for t in (maintype, subtype)):
            return "text", "plain", (), True
        return maintype, subtype, params, True
    except EXHAUSTED:  # out of memory is no malformed header (and must not be cached as one)
        raise
    except Exception:  # malformed header: RFC 2045 §5.2 default
        return "text", "plain", (), True


_parse_content_type_cached = functools.lru_cache(maxsize=512)(_parse_content_type_uncached)


def _boundary(params: list[tuple[str, bytes]]) -> bytes | None:
    for name, value in params:
        if name == "boundary":
            return value or None
    return None


def _split_multipart(
    buf: bytes, start: int, end: int, boundary: bytes, max_parts: int = MAX_PARTS
) -> tuple[list[tuple[int, int]], bool]:
    """Byte ranges of the body parts between ``--boundary`` delimiter lines in ``buf[start:end]``.

    A delimiter line is ``--boundary`` at a line start, an optional ``--``
    (close delimiter), optional SP/HTAB, then the end of the line (the email
    package's ``feedparser`` rule). The line ending before a delimiter belongs
    to it (RFC 2046 §5.1.1). Returns (ranges, closed). Past ``max_parts`` the
    last part runs to ``end`` (bounded work on hostile input).
    """
    delim = b"--" + boundary
    dlen = len(delim)
    parts: list[tuple[int, int]] = []
    part_start = -1
    pos = start
    while True:
        i = buf.find(delim, pos, end)
        if i < 0:
            break
        pos = i + 1
        if i != start and buf[i - 1] != 0x0A:
            continue
        j = i + dlen
        close = buf.startswith(b"--", j) and j + 2 <= end
        k = j + 2 if close else j
        while k < end and buf[k] in _WS:
            k += 1
        if k < end and buf[k] not in b"\r\n":
            continue
        if k < end and buf[k] == 0x0D and k + 1 < end and buf[k + 1] == 0x0A:
            k += 2
        elif k < end:
            k += 1
        if part_start >= 0:
            content_end = i
            if content_end > part_start and buf[content_end - 1] == 0x0A:
                content_end -= 1
                if content_end > part_start and buf[content_end - 1] == 0x0D:
                    content_end -= 1
            parts.append((part_start, content_end))
        if close:
            return parts, True
        part_start = k
        pos = k
        if len(parts) >= max_parts - 1:
            break
    if part_start >= 0:
        parts.append((part_start, end))
    return parts, False


def _entity(buf: bytes, start: int, end: int, default: tuple[str, str], depth: int, budget: list[int]) -> Entity:
    budget[0] -= 1
    sp = split(buf, start, end, MAX_FIELDS)
    h_end, body_start = sp.header_end, sp.body_start
    header = Header.of_fields(buf, sp, start)
    maintype, subtype, params, has_ct = _parse_content_type(header.get(b"content-type"), default)
    if (depth > MAX_DEPTH or budget[0] <= 0) and maintype in ("multipart", "message"):
        return Entity(start, h_end, body_start, end, header, "application", "octet-stream", (), True)
    ent = Entity(start, h_end, body_start, end, header, maintype, subtype, params, has_ct)
    if maintype == "multipart":
        boundary = _boundary(params)
        ranges = _split_multipart(buf, body_start, end, boundary, max(1, budget[0]))[0] if boundary else []
        child_default = ("message", "rfc822") if subtype == "digest" else ("text", "plain")  # RFC 2046 §5.1.5
        ent.children = [_entity(buf, a, b, child_default, depth + 1, budget) for a, b in ranges]
        if not ent.children:
            empty = Header(buf, body_start, body_start)
            ent.children = [Entity(body_start, body_start, body_start, body_start, empty, synthetic=True)]
    elif maintype == "message" and subtype == "rfc822":
        ent.message = _entity(buf, body_start, end, ("text", "plain"), depth + 1, budget)
    return ent


def parse(raw: bytes) -> Entity:
    """Locate every MIME entity of ``raw`` (see the module docstring). Never raises."""
    return _entity(raw, 0, len(raw), ("text", "plain"), 0, [MAX_PARTS])


def content_disposition(value: bytes | None) -> tuple[str, list[tuple[str, bytes]]] | None:
    """(disposition type lower-cased, parameters) of a Content-Disposition value (RFC 2183), or
    None when it is absent, too long to parse or unreadable."""
    if not value or len(value) > MAX_PARSED_VALUE:
        return None
    try:
        cd = _hvp.parse_content_disposition_header(_shield(_text(value)))
        kind = (cd.content_disposition or "").replace(_SENTINEL, "")
        params: list[tuple[str, bytes]] = []
        for tok in cd:
            if tok.token_type == "mime-parameters":
                params = _params(tok)
    except EXHAUSTED:
        raise
    except Exception:
        return None
    return (kind.lower(), params) if kind else None
