"""An Email's MIME structure as JMAP describes it (RFC 8621 §4.1.4), read by the stdlib email package.

In:   the logical message bytes (trace prefix + message as received) and the
      Email's blobId.
Out:  :class:`Parsed`: ``structure`` (the EmailBodyPart tree, full
      properties), ``text_body`` / ``html_body`` / ``attachments`` (leaf parts
      chosen by the RFC's parseStructure algorithm), :func:`body_value`
      (decoded text, truncated at a UTF-8 boundary), :func:`preview`, and
      :func:`part_bytes` (a part's decoded content, for blob downloads).
Fails: never for a message's content: an unreadable charset is decoded as
      UTF-8 with ``isEncodingProblem``; parts past MAX_PARTS (or after the
      MAX_BOUNDARY_LINES-th boundary line) or deeper than MAX_DEPTH are not
      described.

MIME is never parsed by hand: ``BytesParser`` with :data:`POLICY`, the default
policy reading at most ``mail.mimepolicy.HEADER_VALUE_CAP`` characters of any header value it is
asked to parse (the stdlib header parser takes time growing with the square of
the encoded-words in a value, issue 11; Content-Type, Content-Disposition and
friends never need more). Raw header values (``headers``) are handed out as
stored, never parsed.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser

from ..mail.mimepolicy import CAPPED_POLICY

MAX_PARTS = 500
MAX_BOUNDARY_LINES = 2 * MAX_PARTS
MAX_DEPTH = 32
PREVIEW_CHARS = 256
POLICY = CAPPED_POLICY  # postern.mail.mimepolicy, shared with the Sieve body test


@dataclass
class Part:
    entity: EmailMessage
    part_id: str | None
    type: str
    props: dict
    sub: list[Part] = field(default_factory=list)

    @property
    def name(self) -> str | None:
        return self.props.get("name")

    @property
    def disposition(self) -> str | None:
        return self.props.get("disposition")


@dataclass
class Parsed:
    structure: Part
    text_body: list[Part]
    html_body: list[Part]
    attachments: list[Part]
    leaves: dict[str, Part]


def _safe(f, default=None):
    try:
        return f()
    except Exception:  # noqa: BLE001 - a malformed parameter reads as absent
        return default


def _describe(entity: EmailMessage, part_id: str | None, blob_id: str) -> dict:
    ctype = _safe(entity.get_content_type, "text/plain")
    multipart = ctype.startswith("multipart/")
    raw_headers = [{"name": n, "value": v if isinstance(v, str) else str(v)} for n, v in entity.raw_items()][:1000]
    size = 0
    if not multipart:
        payload = _safe(lambda: entity.get_payload(decode=True), b"") or b""
        size = len(payload) if isinstance(payload, (bytes, bytearray)) else 0
    disp = _safe(entity.get_content_disposition)
    cid = _safe(lambda: entity.get("content-id"))
    lang = _safe(lambda: entity.get("content-language"))
    loc = _safe(lambda: entity.get("content-location"))
    charset = _safe(entity.get_content_charset) if ctype.startswith("text/") else _safe(entity.get_content_charset)
    if charset is None and ctype.startswith("text/"):
        charset = "us-ascii"  # RFC 2046 §4.1.2 default; RFC 8621 §4.1.4
    name = _safe(entity.get_filename)
    return {
        "partId": part_id,
        "blobId": None if multipart or part_id is None else f"{blob_id}-{part_id}",
        "size": size,
        "headers": raw_headers,
        "name": name,
        "type": ctype,
        "charset": charset,
        "disposition": disp,
        "cid": str(cid).strip().strip("<>") if cid else None,
        "language": [x.strip() for x in str(lang).split(",") if x.strip()] if lang else None,
        "location": str(loc).strip() if loc else None,
    }


_BOUNDARY_LINE = re.compile(rb"\n--")


def _bounded(raw: bytes) -> bytes:
    """The message up to its MAX_BOUNDARY_LINES-th boundary-like line: the feed parser's time grows with
    the number of parts, so a message of thousands of tiny parts is described up to there (a C-speed scan)."""
    for n, m in enumerate(_BOUNDARY_LINE.finditer(raw)):
        if n >= MAX_BOUNDARY_LINES:
            return raw[: m.start() + 1]
    return raw


def parse(raw: bytes, blob_id: str) -> Parsed:
    msg = BytesParser(policy=POLICY).parsebytes(_bounded(raw))
    counter = [0]
    leaves: dict[str, Part] = {}

    def build(entity, depth: int) -> Part:
        multipart = entity.is_multipart()
        pid = None
        if not multipart:
            counter[0] += 1
            pid = str(counter[0])
        part = Part(entity, pid, "", _describe(entity, pid, blob_id))
        part.type = part.props["type"]
        if pid is not None:
            leaves[pid] = part
        if multipart and depth < MAX_DEPTH:
            payload = entity.get_payload()
            for child in payload if isinstance(payload, list) else []:
                if counter[0] >= MAX_PARTS:
                    break
                part.sub.append(build(child, depth + 1))
        return part

    root = build(msg, 0)
    text, html, att = [], [], []
    _structure([root], "mixed", False, html, text, att)
    return Parsed(root, text, html, att, leaves)


def _inline_media(t: str) -> bool:
    return t.startswith(("image/", "audio/", "video/"))


def _structure(parts, multipart_type, in_alternative, html_body, text_body, attachments) -> None:
    """RFC 8621 §4.1.4 parseStructure, as the RFC writes it."""
    text_len = len(text_body) if text_body is not None else -1
    html_len = len(html_body) if html_body is not None else -1
    for i, part in enumerate(parts):
        multipart = part.type.startswith("multipart/")
        inline = (part.disposition != "attachment"
                  and (part.type in ("text/plain", "text/html") or _inline_media(part.type))
                  and (i == 0 or (multipart_type != "related" and (_inline_media(part.type) or not part.name))))
        if multipart:
            sub = part.type.split("/", 1)[1]
            _structure(part.sub, sub, in_alternative or sub == "alternative", html_body, text_body, attachments)
        elif inline:
            if multipart_type == "alternative":
                if part.type == "text/plain":
                    text_body.append(part)
                elif part.type == "text/html":
                    html_body.append(part)
                else:
                    attachments.append(part)
                continue
            if in_alternative:
                if part.type == "text/plain":
                    html_body = None
                if part.type == "text/html":
                    text_body = None
            if text_body is not None:
                text_body.append(part)
            if html_body is not None:
                html_body.append(part)
            if (text_body is None or html_body is None) and _inline_media(part.type):
                attachments.append(part)
        else:
            attachments.append(part)
    if multipart_type == "alternative" and text_body is not None and html_body is not None:
        if text_len == len(text_body) and html_len != len(html_body):
            text_body.extend(html_body[html_len:])
        if html_len == len(html_body) and text_len != len(text_body):
            html_body.extend(text_body[text_len:])


def decoded_text(part: Part) -> tuple[str, bool]:
    """(text, encoding problem) of a text part: transfer encoding and charset undone."""
    payload = _safe(lambda: part.entity.get_payload(decode=True), b"") or b""
    if not isinstance(payload, (bytes, bytearray)):
        return "", True
    charset = part.props.get("charset") or "us-ascii"
    problem = False
    try:
        codec = codecs.lookup(charset).name
    except LookupError:
        codec, problem = "utf-8", True
    if codec == "ascii":
        codec = "utf-8"  # 8-bit text labelled us-ascii is common; UTF-8 reads ASCII the same
    try:
        return bytes(payload).decode(codec), problem
    except UnicodeDecodeError:
        return bytes(payload).decode(codec, "replace"), True


def body_value(part: Part, max_bytes: int = 0) -> dict:
    text, problem = decoded_text(part)
    text = text.replace("\r\n", "\n")  # RFC 8621 §4.1.4 bodyValues: CRLF becomes LF
    truncated = False
    if max_bytes and len(text.encode("utf-8")) > max_bytes:
        text = text.encode("utf-8")[:max_bytes].decode("utf-8", "ignore")  # never half a character
        truncated = True
    return {"value": text, "isEncodingProblem": problem, "isTruncated": truncated}


def preview(parsed: Parsed) -> str:
    for part in parsed.text_body:
        if part.type.startswith("text/"):
            text, _ = decoded_text(part)
            if part.type == "text/html":
                text = _strip_html(text)
            return " ".join(text[: PREVIEW_CHARS * 8].split())[:PREVIEW_CHARS]
    return ""


def _strip_html(html: str) -> str:
    from html.parser import HTMLParser

    out: list[str] = []

    class _P(HTMLParser):
        skip = 0

        def handle_starttag(self, tag, attrs):
            self.skip += tag in ("script", "style")

        def handle_endtag(self, tag):
            self.skip -= tag in ("script", "style") and self.skip > 0

        def handle_data(self, data):
            if not self.skip:
                out.append(data)

    p = _P(convert_charrefs=True)
    p.feed(html[: PREVIEW_CHARS * 64])
    return " ".join(out)


def part_bytes(parsed: Parsed, part_id: str) -> bytes | None:
    part = parsed.leaves.get(part_id)
    if part is None:
        return None
    payload = _safe(lambda: part.entity.get_payload(decode=True), b"") or b""
    return bytes(payload) if isinstance(payload, (bytes, bytearray)) else b""


def body_part(part: Part, props: list[str]) -> dict:
    """An EmailBodyPart object with the requested properties (``subParts`` recursive)."""
    out = {p: part.props.get(p) for p in props if p != "subParts"}
    if "subParts" in props and part.type.startswith("multipart/"):
        out["subParts"] = [body_part(s, props) for s in part.sub]
    return out
