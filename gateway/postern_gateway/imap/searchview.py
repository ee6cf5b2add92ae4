"""What SEARCH reads of one message, derived lazily and once per evaluation.

In:   a message object as :mod:`.search` evaluates it (``header`` and/or ``raw`` bytes,
      ``internaldate`` epoch seconds).
Out:  :class:`View`: decoded casefolded header values (:meth:`View.values`), the texts the
      address keys match (:meth:`View.address_texts`: display names, addr-specs with comments
      removed, group names; RFC 3501 §6.4.4), the whole decoded header, the decoded text of every
      text/* part and the MIME headers of the parts; :func:`sent_date` (Date: as written, 1 Jan
      1970 when unreadable) and :func:`internal_date` (UTC date of INTERNALDATE).
Fails: the methods raise on unreadable data (the evaluator treats that as "no match"), and
      ``workers.EXHAUSTED`` (MemoryError) when out of memory, never caught here;
      :func:`internal_date` returns None for an unusable INTERNALDATE.

Headers are read through :mod:`postern.mail.header` (its caps, its linear RFC 2047 decoder);
the MIME structure comes from :mod:`.message`, so large attachments are never decoded; a text
part's body is decoded by the email package under a header of our making, never the part's own.
"""

from __future__ import annotations

import datetime as _dt
import re
from email import policy as _policy
from email.parser import BytesParser

from postern.mail.addresses import Group
from postern.mail.encoded import decode_words
from postern.mail.header import Header, header_length

from ..workers import EXHAUSTED
from . import message as _message

__all__ = ["View", "sent_date", "internal_date", "body_texts_of", "text_entities"]


class View:
    """Lazily derived data of one message for one evaluation."""

    __slots__ = ("msg", "_hdr", "_values", "_addresses", "_body", "_header_text", "_tree")

    def __init__(self, msg):
        self.msg = msg
        self._hdr: Header | None = None
        self._values: dict[bytes, list[str]] = {}
        self._addresses: dict[bytes, list[str]] = {}
        self._body: list[str] | None = None
        self._header_text: str | None = None
        self._tree = None

    def header(self) -> Header:
        if self._hdr is None:
            header = getattr(self.msg, "header", None)
            if not header:
                raw = getattr(self.msg, "raw", None) or b""
                header = raw[: header_length(raw)]
            self._hdr = Header(header)
        return self._hdr

    def values(self, name: str) -> list[str]:
        """Decoded, casefolded values of every field called ``name`` (lower case)."""
        key = name.encode("utf-8", "replace")
        got = self._values.get(key)
        if got is None:
            got = self._values[key] = [t.casefold() for t in self.header().texts(key)]
        return got

    def address_texts(self, name: str) -> list[str]:
        """What FROM/TO/CC/BCC match (RFC 3501 §6.4.4): per address its decoded display name
        and its addr-spec, and each group's name; casefolded."""
        key = name.encode("utf-8", "replace")
        got = self._addresses.get(key)
        if got is None:
            got = []
            for item in self.header().addresses(key):
                members = item.members if isinstance(item, Group) else (item,)
                if isinstance(item, Group) and item.name:
                    got.append(decode_words(item.name).casefold())
                for m in members:
                    if m.name:
                        got.append(decode_words(m.name).casefold())
                    got.append(m.addr_spec.casefold())
            self._addresses[key] = got
        return got

    def header_text(self) -> str:
        if self._header_text is None:
            h = self.header()
            self._header_text = "\n".join(
                (f.name or b"").decode("ascii", "replace") + ": " + decode_words(h.value(f)).casefold()
                for f in h.fields
            )
        return self._header_text

    def _root(self):
        if self._tree is None:
            raw = getattr(self.msg, "raw", None)
            self._tree = _message.parse(raw) if raw else False
        return self._tree

    def body_texts(self) -> list[str]:
        if self._body is None:
            root = self._root()
            self._body = body_texts_of(self.msg.raw, root) if root else []
        return self._body

    def part_headers_text(self) -> str:
        """Decoded MIME headers of every part below the top level (TEXT looks there too, as Dovecot does)."""
        root = self._root()
        if not root:
            return ""
        out = []
        stack = list(root.children) + ([root.message] if root.message is not None else [])
        while stack:
            e = stack.pop()
            if e.synthetic:
                continue
            h = e.header
            for f in h.fields:
                out.append((f.name or b"").decode("ascii", "replace") + ": " + decode_words(h.value(f)))
            stack.extend(e.children)
            if e.message is not None:
                stack.append(e.message)
        return "\n".join(out).casefold()


def text_entities(root: _message.Entity):
    stack = [root]
    while stack:
        e = stack.pop()
        if e.synthetic:
            continue
        if e.is_multipart:
            stack.extend(reversed(e.children))
        elif e.message is not None:
            stack.append(e.message)
        elif e.maintype == "text":
            yield e


_CHARSET_RE = re.compile(rb"[A-Za-z0-9._:+-]{1,40}")
_ENCODINGS = {b"7bit", b"8bit", b"binary", b"base64", b"quoted-printable"}


def _content_header(e: _message.Entity) -> bytes:
    """A short header for ``e`` built from what the capped view read (its type, charset and
    transfer encoding), so the email package never parses the attacker's own header values."""
    charset = dict(e.params).get("charset") or b"us-ascii"
    if not _CHARSET_RE.fullmatch(charset):
        charset = b"utf-8"
    cte = (e.header.get(b"content-transfer-encoding") or b"7bit").split(b"(", 1)[0].strip().lower()
    if cte not in _ENCODINGS:
        cte = b"7bit"
    subtype = e.subtype.encode("ascii", "replace")
    return (b"Content-Type: text/" + subtype + b'; charset="' + charset + b'"\r\n'
            b"Content-Transfer-Encoding: " + cte + b"\r\n\r\n")


def body_texts_of(raw: bytes, root: _message.Entity) -> list[str]:
    """Decoded text of every text/* part (casefolded): the email package decodes the transfer
    encoding and charset of the body, under a header of our making (:func:`_content_header`)."""
    out = []
    parser = BytesParser(policy=_policy.default)
    for e in text_entities(root):
        if e.end <= e.body_start:
            continue
        try:
            part = parser.parsebytes(_content_header(e) + raw[e.body_start : e.end])
            try:
                text = part.get_content()
            except (LookupError, UnicodeError):
                payload = part.get_payload(decode=True) or b""
                text = payload.decode("utf-8", "replace")
            if not isinstance(text, str):
                text = bytes(text).decode("utf-8", "replace")
        except EXHAUSTED:  # out of memory: NO [LIMIT], not the raw bytes as a fallback
            raise
        except Exception:
            text = raw[e.body_start : e.end].decode("utf-8", "replace")
        out.append(text.casefold())
    return out


_NO_DATE = _dt.date(1970, 1, 1)


def sent_date(view: View) -> _dt.date:
    """The date of the Date: header as written (its own zone; RFC 5322 §3.3, strict); 1 Jan 1970
    when it is missing or unreadable, as Dovecot and Cyrus treat it (so SENTBEFORE matches such messages)."""
    sent = view.header().date()
    return _NO_DATE if sent is None else sent.date()


def internal_date(msg) -> _dt.date | None:
    try:
        return _dt.datetime.fromtimestamp(float(msg.internaldate), _dt.timezone.utc).date()
    except (TypeError, ValueError, OverflowError, OSError):
        return None
