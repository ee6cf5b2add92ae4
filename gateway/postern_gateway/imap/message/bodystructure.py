"""BODYSTRUCTURE and BODY (RFC 3501 §6.4.5, §7.4.2, grammar §9 ``body``) of a message.

In:   the bytes of a message exactly as the client sees it (trace prefix + stored bytes).
Out:  :func:`bodystructure` -> the wire form (``extended=True``: BODYSTRUCTURE with the
      extension data; ``False``: BODY). Sizes and line counts are exact octet counts of the
      input; values are raw header text (encoded-words left as they are).
Fails: never (see :mod:`.mime` for how malformed MIME is read).
"""

from __future__ import annotations

from postern.mail.header import Header

from ..wire import NIL, format_list, quote
from .envelope import envelope_of
from .mime import TOKEN_RE, Entity, content_disposition, parse

__all__ = ["bodystructure"]

_WS = b" \t"


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
    return quote(v) if TOKEN_RE.fullmatch(v) else b'"7bit"'


def _disposition(h: Header) -> bytes:
    cd = content_disposition(h.get(b"content-disposition"))
    if cd is None:
        return NIL
    kind, params = cd
    return b"(" + quote(kind) + b" " + _param_list(params) + b")"


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
            ext = (_param_list(e.params), _disposition(h), _language(h), quote(h.get(b"content-location")))
            out += b" " + b" ".join(ext)
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
        items.append(envelope_of(m.header))
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
