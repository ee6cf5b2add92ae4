"""vacation (RFC 5230) and vacation-seconds (RFC 6131): the out-of-office reply.

``vacation [:days N | :seconds N] [:subject S] [:from S] [:addresses L] [:mime]
[:handle S] <reason>`` adds one reply to the result; whether it is sent is
decided at delivery (postern.sieve.autoreply: RFC 3834 and RFC 5230 §4.5-4.6 -
only to a verified sender that addressed the user, never to lists, automatic
mail, the null sender or the user, at most once per sender per period).

Period: ``:days`` (default 7) or ``:seconds``, kept between one hour and 30
days (RFC 5230 §4.1 and RFC 6131 §2 let a site set both bounds). The handle
(§4.2) is ``:handle`` or, without it, derived from the reason, subject, from,
addresses and :mime, so a changed reply text answers again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ...mail.addresses import mailboxes, parse_address_list
from ..actions import Vacation
from ..compiler import NUMBER, STRING, STRING_LIST, Definition, TagSpec
from ..program import Cmd, Str

CAPABILITIES = ("vacation", "vacation-seconds")
IMPLIES = {"vacation-seconds": ("vacation",)}  # RFC 6131 §2
DAY = 86400
DEFAULT_DAYS = 7
MIN_PERIOD = 3600
MAX_PERIOD = 30 * DAY
MAX_REASON = 64 * 1024
TAGS = (TagSpec("days", NUMBER, "period"), TagSpec("seconds", NUMBER, "period", "vacation-seconds"),
        TagSpec("subject", STRING), TagSpec("from", STRING), TagSpec("addresses", STRING_LIST),
        TagSpec("mime", None), TagSpec("handle", STRING))


def period_of(days: int | None, seconds: int | None) -> int:
    p = seconds if seconds is not None else (days if days is not None else DEFAULT_DAYS) * DAY
    return max(MIN_PERIOD, min(MAX_PERIOD, p))


def _one_address(text: str) -> bool:
    boxes = mailboxes(parse_address_list(text.encode("utf-8")))
    return len(boxes) == 1 and boxes[0].domain is not None and bool(boxes[0].local)


@dataclass(frozen=True)
class VacationCmd(Cmd):
    reason: Str
    period: int
    subject: Str | None
    from_: Str | None
    addresses: tuple[Str, ...]
    mime: bool
    handle: Str | None
    line: int = 0

    def run(self, rt) -> None:
        reason = self.reason.value(rt)[:MAX_REASON]
        subject = self.subject.value(rt) if self.subject is not None else None
        from_ = self.from_.value(rt) if self.from_ is not None else None
        addresses = tuple(a.value(rt) for a in self.addresses)
        if self.handle is not None:
            handle = self.handle.value(rt)
        else:
            handle = "\x00".join([reason, subject or "", from_ or "", " ".join(addresses), "mime" if self.mime else ""])
        digest = hashlib.sha256(handle.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        rt.result.add(rt.origin, Vacation(reason, self.period, subject, from_, addresses, self.mime, digest))


def _vacation(node, args, cx):
    tags = args.tags(*TAGS)
    (reason,) = args.positional(STRING)
    for name in ("days", "seconds"):
        if name in tags and tags[name] < 0:
            raise args.error(f"vacation :{name} must not be negative")
    frm = cx.string(tags["from"]) if "from" in tags else None
    if frm is not None and frm.constant and not _one_address(frm.text):
        raise args.error(f"vacation :from is not one address: \"{frm.text}\"", tags["from"])
    addresses = cx.strings(tags["addresses"]) if "addresses" in tags else ()
    for s, item in zip(addresses, tags["addresses"].items if "addresses" in tags else (), strict=True):
        if s.constant and not _one_address(s.text):
            raise args.error(f"vacation :addresses holds something that is not an address: \"{s.text}\"", item)
    return VacationCmd(cx.string(reason), period_of(tags.get("days"), tags.get("seconds")),
                       cx.string(tags["subject"]) if "subject" in tags else None, frm, addresses,
                       "mime" in tags, cx.string(tags["handle"]) if "handle" in tags else None, node.line)


COMMANDS = (Definition("vacation", "vacation", _vacation),)
TESTS = ()
