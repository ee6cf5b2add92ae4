"""BODY[section] bytes (RFC 3501 §6.4.5): part numbers, HEADER, TEXT, MIME, HEADER.FIELDS(.NOT).

In:   the bytes of a message as the client sees it (trace prefix + stored bytes), or a header
      block (:func:`header_fields`).
Out:  exact byte slices of the input (never re-serialised); ``b""`` for a part that does not
      exist. Partials (``<o.n>``) are cut by the caller (``ops/fetch.py``).
Fails: never.
"""

from __future__ import annotations

from postern.mail.header import field_spans, header_end, header_length

from .mime import Entity, parse

__all__ = ["header_fields", "section"]


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
