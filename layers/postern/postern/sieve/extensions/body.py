"""body (RFC 5173): test the message body.

``body [COMPARATOR] [MATCH-TYPE] [:raw | :content <types> | :text] <keys>``:
``:raw`` is the body as stored (no MIME decoding, §5.1); ``:content`` the
decoded content of every MIME leaf part whose type is listed (``""`` every
part, ``"text"`` every text/* part, ``"text/html"`` exactly that, §5.2);
``:text`` (the default) is ``:content "text"``.

Cost and bounds: the body is read only when a body test runs (from the spool
object in S3, at most ``POSTERN_SIEVE_BODY_MAX`` bytes, 1 MiB by default) and
only once per delivery; at most 100 parts are looked at. MIME is read by the
stdlib ``email`` package (policy.default) through a policy that parses at
most 1 KiB of any header value: the package's header parser takes time
growing with the square of the number of encoded-words in a value (issue 11),
and Content-Type / Content-Transfer-Encoding never need more.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from email.parser import BytesParser

from ...mail.header import header_end
from ...mail.mimepolicy import CAPPED_POLICY
from .. import match
from ..compiler import COMPARATOR, MATCH_TYPES, STRING_LIST, Definition, TagSpec
from ..program import Str, Tst

CAPABILITIES = ("body",)
TRANSFORMS = (TagSpec("raw", None, "transform"), TagSpec("content", STRING_LIST, "transform"),
              TagSpec("text", None, "transform"))
POLICY = CAPPED_POLICY  # postern.mail.mimepolicy: at most 1 KiB of a header value parsed


def _wanted(ctype: str, types: list[str]) -> bool:
    main = ctype.split("/", 1)[0]
    for t in types:
        t = t.strip().lower()
        if t == "" or t == ctype or ("/" not in t and t == main):
            return True
    return False


def _decoded(part) -> str:
    payload = part.get_payload(decode=True) or b""
    if part.get_content_maintype() != "text":
        return payload.decode("latin-1")  # octets as they are (RFC 5173 §5.2: no charset for non-text)
    charset = part.get_content_charset() or "us-ascii"
    try:
        codecs.lookup(charset)
    except LookupError:
        charset = "utf-8"
    return payload.decode(charset, "replace")


def body_values(rt, transform: str, types: list[str]) -> list[str]:
    raw = rt.ctx.message.raw()[: rt.limits.body_bytes]
    rt.step(1 + len(raw) // 1024)
    _, body_start = header_end(raw)
    if transform == "raw":
        return [raw[body_start:].decode("utf-8", "replace")]
    msg = BytesParser(policy=POLICY).parsebytes(raw)
    out: list[str] = []
    for n, part in enumerate(msg.walk()):
        if n >= rt.limits.body_parts:
            break
        rt.step()
        if part.is_multipart():
            continue
        if _wanted(part.get_content_type(), types):
            out.append(_decoded(part))
    return out


@dataclass(frozen=True)
class BodyTest(Tst):
    matcher: match.Matcher
    transform: str  # raw | content
    types: tuple[Str, ...]
    keys: tuple[Str, ...]
    line: int = 0

    def eval(self, rt) -> bool:
        values = body_values(rt, self.transform, [t.value(rt) for t in self.types])
        return rt.matches(self.matcher, values, [k.value(rt) for k in self.keys])


def _body(node, args, cx):
    tags = args.tags(COMPARATOR, *MATCH_TYPES, *TRANSFORMS)
    (keys,) = args.positional(STRING_LIST)
    if "raw" in tags:
        transform, types = "raw", ()
    elif "content" in tags:
        transform, types = "content", cx.strings(tags["content"])
    else:
        transform, types = "content", (Str("text"),)
    return BodyTest(args.matcher(tags), transform, types, cx.strings(keys), node.line)


COMMANDS = ()
TESTS = (Definition("body", "body", _body),)
