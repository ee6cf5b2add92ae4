"""envelope (RFC 5228 §5.4): test the SMTP envelope.

``envelope [COMPARATOR] [ADDRESS-PART] [MATCH-TYPE] <envelope-part> <keys>``
with parts ``from`` (MAIL FROM; the null reverse-path is the empty string for
every address part) and ``to`` (the RCPT TO this copy came from, with its
+detail, so ``:detail`` works with subaddress). Other part names are refused at
upload (§5.4: an unsupported part is an error).
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import match
from ..compiler import ADDRESS_PARTS, COMPARATOR, MATCH_TYPES, STRING_LIST, Definition
from ..program import Str, Tst
from .core import address_part, envelope_parts

CAPABILITIES = ("envelope",)
PARTS = ("from", "to")


@dataclass(frozen=True)
class EnvelopeTest(Tst):
    matcher: match.Matcher
    part: str
    parts: tuple[Str, ...]
    keys: tuple[Str, ...]
    line: int = 0

    def eval(self, rt) -> bool:
        env = rt.ctx.envelope
        values = []
        for p in self.parts:
            which = p.value(rt).lower()
            if which not in PARTS:
                continue
            address = env.mail_from if which == "from" else env.to
            if not address:  # <>: every part is "" (RFC 5228 §5.4)
                values.append("")
                continue
            local, domain = envelope_parts(address)
            v = address_part(local, domain, self.part)
            if v is not None:
                values.append(v)
        return rt.matches(self.matcher, values, [k.value(rt) for k in self.keys])


def _envelope(node, args, cx):
    tags = args.tags(COMPARATOR, *MATCH_TYPES, *ADDRESS_PARTS)
    parts, keys = args.positional(STRING_LIST, STRING_LIST)
    compiled = cx.strings(parts)
    for s, item in zip(compiled, parts.items, strict=True):
        if s.constant and s.text.lower() not in PARTS:
            raise args.error(f"envelope: unknown part \"{s.text}\" (from, to)", item)
    return EnvelopeTest(args.matcher(tags), args.address_part(tags), compiled, cx.strings(keys), node.line)


COMMANDS = ()
TESTS = (Definition("envelope", "envelope", _envelope),)
