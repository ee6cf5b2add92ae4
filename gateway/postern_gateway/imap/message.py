"""IMAP views of one message: ENVELOPE, BODYSTRUCTURE / BODY, BODY[section] (RFC 3501 §6.4.5, §7.4.2).

In:   the bytes of a message exactly as the client sees it (trace prefix +
      stored raw bytes), or just its header block.
Out:  wire bytes (ENVELOPE, BODYSTRUCTURE) ready to follow the FETCH item
      name, and raw byte slices of the original (sections).
Fails: never. Malformed headers degrade to NIL, malformed MIME to the
      nearest sensible structure (RFC 2045 §5.2 defaults: text/plain;
      charset=us-ascii; an unclosed multipart ends where its parent does; a
      multipart without any part gets one empty text/plain part, as Dovecot
      answers, since RFC 3501 §9 ``body-type-mpart`` needs at least one body).

How bytes are located (sizes and offsets are exact octet counts of the input)
-----------------------------------------------------------------------------
Everything the client receives must be byte-exact, and re-serialising through
the email package changes bytes, so the email package is used for what it is
good at -- the *meaning* of header fields -- and never to produce output bytes:

* a header section is split into its fields by :mod:`postern.mail.header`
  (the one splitter the store and the SMTP checks use too: where the section
  ends, what a field is, ``From :`` read as From), keeping byte ranges;
* address fields are read by :mod:`postern.mail.addresses` (the one address
  parser, linear, 8 KiB per field); the values of Content-Type /
  Content-Disposition by the stdlib ``email._header_value_parser`` (the
  parser behind ``policy.default``'s header registry; at most
  ``MAX_PARSED_VALUE`` bytes): media type, parameters incl. RFC 2231
  continuations;
* a multipart body is cut at its delimiter lines, found with ``bytes.find`` of
  ``--`` + the boundary the email package parsed, using the email package's
  own rule for what is a delimiter line (``feedparser``'s boundary regex:
  the delimiter, an optional ``--``, optional SP/HTAB, then end of line).
  The CRLF before a delimiter belongs to the delimiter (RFC 2046 §5.1.1).

Each message is scanned once, in time linear in its size: the body bytes of
leaf parts are never copied or parsed (a 10 MB attachment costs one ``find``
for the next delimiter and one ``count`` of newlines).

Encoded-words (RFC 2047) are left as they are in the header: ENVELOPE and
BODYSTRUCTURE carry raw header text (RFC 3501 §7.4.2). The stdlib parser is
kept from decoding them (its decoding is what grows with the square of their
number) by shielding ``=?`` with a private-use sentinel while it parses.
"""

from __future__ import annotations

import functools
import re
import urllib.parse
from dataclasses import dataclass, field
from email import _header_value_parser as _hvp

from postern.mail import limits
from postern.mail.addresses import Group, parse_address_list
from postern.mail.header import Field, Header, field_spans, header_end, header_length, split

from .wire import NIL, format_list, quote

__all__ = [
    "Entity",
    "parse",
    "envelope",
    "bodystructure",
    "section",
    "header_fields",
    "section_range",
    "header_length",
    "addresses",
    "field_spans",
    "Field",
    "Header",
]

MAX_DEPTH = 100  # nesting deeper than this is treated as opaque application/octet-stream
MAX_PARTS = 10_000  # MIME entities per message; the rest of a multipart joins its last part
MAX_PARSED_VALUE = limits.MAX_STRUCTURED  # longer header values are not handed to the email package
MAX_FIELDS = limits.MAX_FIELDS  # header fields in a section's ordered list (ENVELOPE, BODYSTRUCTURE)
MISSING_DOMAIN = b"MISSING_DOMAIN"  # host for an address without one (Dovecot's choice)

_SENTINEL = "\ue000"
_WS = b" \t"
_TOKEN_RE = re.compile(rb"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")


# --- header sections: postern.mail.header (the one splitter and view) ----------


def _split_header(buf: bytes, start: int, end: int, max_fields: int | None = None):
    """(fields, header_end, body_start) of the header section of ``buf[start:end]``."""
    return split(buf, start, end, max_fields)


# --- structure ----------------------------------------------------------------


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

    @property
    def is_message(self) -> bool:
        return self.message is not None


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
        if not (_TOKEN_RE.fullmatch(maintype.encode("utf-8", "replace")) and _TOKEN_RE.fullmatch(subtype.encode("utf-8", "replace"))):
            return "text", "plain", (), True
        return maintype, subtype, params, True
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
            ent.children = [Entity(body_start, body_start, body_start, body_start, Header(buf, body_start, body_start), synthetic=True)]
    elif maintype == "message" and subtype == "rfc822":
        ent.message = _entity(buf, body_start, end, ("text", "plain"), depth + 1, budget)
    return ent


def parse(raw: bytes) -> Entity:
    """Locate every MIME entity of ``raw`` (see the module docstring). Never raises."""
    return _entity(raw, 0, len(raw), ("text", "plain"), 0, [MAX_PARTS])


# --- ENVELOPE -------------------------------------------------------------


Address = tuple  # (name, adl, mailbox, host), each bytes or None: RFC 3501 §7.4.2 address


def _addr(a: Address) -> bytes:
    return b"(" + b" ".join(quote(x) for x in a) + b")"


def _mailbox_tuple(m) -> Address:
    return (m.name, m.route, m.local, m.domain if m.domain else MISSING_DOMAIN)


def addresses(value: bytes | None) -> list[Address]:
    """Addresses of one raw address-list field value, RFC 3501 §7.4.2 style.

    Read by :func:`postern.mail.addresses.parse_address_list` (the one address
    parser); each is ``(name, adl, mailbox, host)`` (bytes or None, encoded-words
    left raw; a missing host is MISSING_DOMAIN, as Dovecot). A group is a start
    marker ``(None, None, b"group name", None)``, its members, and an end marker
    ``(None, None, None, None)``. Never raises.
    """
    out: list[Address] = []
    for item in parse_address_list(value):
        if isinstance(item, Group):
            out.append((None, None, item.name, None))
            out += [_mailbox_tuple(m) for m in item.members]
            out.append((None, None, None, None))
        else:
            out.append(_mailbox_tuple(item))
    return out


def _address_list(value: bytes | None) -> list[bytes]:
    """RFC 3501 §7.4.2 address structures in wire form, with group start/end markers."""
    return [_addr(a) for a in addresses(value)]


def _nil_list(items: list[bytes]) -> bytes:
    return b"(" + b"".join(items) + b")" if items else NIL


def _addresses_of(h: Header, name: bytes) -> list[bytes]:
    # a field given more than once (malformed, RFC 5322 §3.6) contributes all its
    # addresses, as Dovecot answers
    out: list[bytes] = []
    for value in h.get_all(name):
        out += _address_list(value)
    return out


def _envelope_of(h: Header) -> bytes:
    from_ = _nil_list(_addresses_of(h, b"from"))
    # RFC 3501 §7.4.2: sender and reply-to default to from when absent or empty
    sender = _addresses_of(h, b"sender")
    reply_to = _addresses_of(h, b"reply-to")
    items = [
        quote(h.get(b"date")),
        quote(h.get(b"subject")),
        from_,
        _nil_list(sender) if sender else from_,
        _nil_list(reply_to) if reply_to else from_,
        _nil_list(_addresses_of(h, b"to")),
        _nil_list(_addresses_of(h, b"cc")),
        _nil_list(_addresses_of(h, b"bcc")),
        quote(h.get(b"in-reply-to")),
        quote(h.get(b"message-id")),
    ]
    return format_list(items)


def envelope(header: bytes) -> bytes:
    """ENVELOPE (RFC 3501 §7.4.2) of a header block (a whole message works too)."""
    return _envelope_of(Header(header))


# --- BODYSTRUCTURE -----------------------------------------------------------


def _lines(buf: bytes, start: int, end: int) -> int:
    """body-fld-lines: the line ends in ``buf[start:end]``.

    A last line without its own line end (the usual case in a multipart
    part, whose final CRLF belongs to the delimiter, RFC 2046 §5.1.1) is not
    counted: this is what Dovecot answers, checked against it.
    """
    return buf.count(b"\n", start, end) if end > start else 0


def _param_list(params: list[tuple[str, bytes]]) -> bytes:
    if not params:
        return NIL
    return format_list(b"%s %s" % (quote(n), quote(v)) for n, v in params)


def _encoding(h: Header) -> bytes:
    v = h.get(b"content-transfer-encoding")
    if v is None:
        return b'"7bit"'
    v = v.split(b"(", 1)[0].strip(_WS).lower()  # drop a trailing comment
    return quote(v) if _TOKEN_RE.fullmatch(v) else b'"7bit"'


def _disposition(h: Header) -> bytes:
    v = h.get(b"content-disposition")
    if not v or len(v) > MAX_PARSED_VALUE:
        return NIL
    try:
        cd = _hvp.parse_content_disposition_header(_shield(_text(v)))
        kind = (cd.content_disposition or "").replace(_SENTINEL, "")
        params = []
        for tok in cd:
            if tok.token_type == "mime-parameters":
                params = _params(tok)
    except Exception:
        return NIL
    if not kind:
        return NIL
    return b"(" + quote(kind.lower()) + b" " + _param_list(params) + b")"


def _language(h: Header) -> bytes:
    v = h.get(b"content-language")
    if not v:
        return NIL
    tags = [t.strip(_WS) for t in v.split(b",")]
    tags = [t for t in tags if t]
    return format_list(quote(t) for t in tags) if tags else NIL


def _body(buf: bytes, e: Entity, extended: bool) -> bytes:
    if e.is_multipart:
        out = b"".join(_body(buf, c, extended) for c in e.children)
        out = b"(" + out + b" " + quote(e.subtype)
        if extended:
            h = e.header
            out += b" " + b" ".join((_param_list(e.params), _disposition(h), _language(h), quote(h.get(b"content-location"))))
        return out + b")"
    h = e.header
    params = e.params
    if not params and e.maintype == "text":
        params = [("charset", b"us-ascii")]  # RFC 2045 §5.2 default, stated as Dovecot does
    size = e.end - e.body_start
    items = [
        quote(e.maintype),
        quote(e.subtype),
        _param_list(params),
        quote(h.get(b"content-id")),
        quote(h.get(b"content-description")),
        _encoding(h),
        b"%d" % size,
    ]
    if e.message is not None:
        m = e.message
        items.append(_envelope_of(m.header))
        items.append(_body(buf, m, extended))
        items.append(b"%d" % _lines(buf, e.body_start, e.end))
    elif e.maintype == "text":
        items.append(b"%d" % _lines(buf, e.body_start, e.end))
    if extended:
        items += [quote(h.get(b"content-md5")), _disposition(h), _language(h), quote(h.get(b"content-location"))]
    return b"(" + b" ".join(items) + b")"


def bodystructure(raw: bytes, extended: bool = True) -> bytes:
    """BODYSTRUCTURE (``extended=True``) or BODY (``False``) of a whole message, wire form."""
    return _body(raw, parse(raw), extended)


# --- sections --------------------------------------------------------------


def _find_part(root: Entity, part: tuple[int, ...]) -> Entity | None:
    """The entity named by a part number (RFC 3501 §6.4.5), or None when it does not exist.

    Part numbers index the parts of a multipart; inside a message/rfc822 part
    they index the encapsulated message's parts; a message (top level or
    encapsulated) that is not multipart has just a part 1: its body; and a
    single part inside a multipart has itself as its part 1 (Dovecot's reading).
    """
    container: Entity | None = root  # the entity whose parts the next number selects
    ent: Entity | None = None
    for n in part:
        if container is None:
            return None
        in_multipart = container.is_multipart
        kids = container.children if in_multipart else [container]
        if not 1 <= n <= len(kids):
            return None
        ent = kids[n - 1]
        if ent.is_multipart:
            container = ent
        elif ent.message is not None:
            container = ent.message
        elif in_multipart:
            # a single part of a multipart is its own part 1 (2.1 of a text part 2 is
            # part 2): Dovecot's reading, checked against it
            container = ent
        else:
            container = None  # the body of a non-multipart message has no parts
    return ent


def header_fields(header: bytes, fields: tuple[str, ...] | list, negate: bool = False) -> bytes:
    """HEADER.FIELDS / HEADER.FIELDS.NOT of a header block (RFC 3501 §6.4.5).

    Field names match case-insensitively but otherwise exactly; each kept
    field is returned byte for byte including its continuation lines; the
    blank line that ends the header is appended when the header has one.
    Work is a few C-speed scans per name (:func:`field_spans`) plus the
    matching fields, not a Python loop over the header's lines.
    """
    names = {(f.encode("utf-8", "surrogateescape") if isinstance(f, str) else bytes(f)).strip().lower() for f in fields}
    names.discard(b"")
    h_end, body_start = header_end(header)
    blank = header[h_end:body_start]
    if not names:
        return (header[:h_end] if negate else b"") + blank
    kept = []
    pos = 0  # for .NOT: start of the stretch not yet copied
    for start, _value_start, end in field_spans(header, names, h_end):
        if negate:
            kept.append(header[pos:start])
            pos = end
        else:
            kept.append(header[start:end])
    if negate:
        kept.append(header[pos:h_end])
    kept.append(blank)
    return b"".join(kept)


def _message_section(raw: bytes, m: Entity, text: str | None, fields) -> bytes:
    if text is None:
        return raw[m.start : m.end]
    if text == "HEADER":
        return raw[m.start : m.body_start]
    if text == "TEXT":
        return raw[m.body_start : m.end]
    if text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        return header_fields(raw[m.start : m.body_start], fields, text == "HEADER.FIELDS.NOT")
    return b""


def section(raw: bytes, part: tuple[int, ...] = (), text: str | None = None, fields: tuple[str, ...] = ()) -> bytes:
    """The bytes of ``BODY[<part>.<text>]`` (RFC 3501 §6.4.5); ``b""`` for a part that does not exist."""
    text = text.upper() if text else None
    part = tuple(part)
    if not part:
        if text is None:
            return raw
        if text in ("HEADER", "TEXT", "HEADER.FIELDS", "HEADER.FIELDS.NOT"):
            # cheap paths: no MIME structure needed
            hlen = header_length(raw)
            if text == "HEADER":
                return raw[:hlen]
            if text == "TEXT":
                return raw[hlen:]
            return header_fields(raw[:hlen], fields, text == "HEADER.FIELDS.NOT")
        return b""  # MIME needs a part number
    root = parse(raw)
    ent = _find_part(root, part)
    if ent is None:
        return b""
    if text is None:
        return raw[ent.body_start : ent.end]
    if text == "MIME":
        return raw[ent.start : ent.body_start]
    if ent.message is None:
        return b""  # HEADER / TEXT name the header / text of an encapsulated message only
    return _message_section(raw, ent.message, text, fields)


def section_range(raw_header: bytes, part: tuple[int, ...], text: str | None, size: int | None = None):
    """Byte range ``(start, end)`` of a section computable from the header block alone, else None.

    ``end`` is ``size`` (the message's length) when given, otherwise None
    meaning "to the end". Covers the whole message, HEADER, TEXT, and part 1
    of a message that is neither multipart nor message/rfc822.
    """
    text = text.upper() if text else None
    part = tuple(part)
    hlen = header_length(raw_header)
    if not part:
        if text is None:
            return (0, size)
        if text == "HEADER":
            return (0, hlen)
        if text == "TEXT":
            return (hlen, size)
        return None
    if part == (1,) and text is None:
        maintype, subtype, _, _ = _parse_content_type(Header(raw_header).get(b"content-type"), ("text", "plain"))
        if maintype != "multipart":
            return (hlen, size)
    return None
