"""reject and ereject (RFC 5429): refuse the message with a reason.

``reject <reason>`` / ``ereject <reason>``: Postern has already answered 250
when the store function runs, so both become a delivery status notification to
the envelope sender through the report path (RFC 5429 §2.1.1), never to the
null sender, and only to a sender that passed SPF or aligned DKIM in a message
not marked spam (no backscatter): otherwise the message is kept and the skipped
reply logged (postern.sieve.effects). Conflicts (another reject, keep,
fileinto, redirect, vacation) are run-time errors: the message is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..actions import Reject
from ..compiler import STRING, Definition
from ..program import Cmd, Str

CAPABILITIES = ("reject", "ereject")
MAX_REASON = 4000  # characters kept of a reason (it travels in the report's Diagnostic-Code and text)


@dataclass(frozen=True)
class RejectCmd(Cmd):
    reason: Str
    extended: bool
    line: int = 0

    def run(self, rt) -> None:
        rt.result.add(rt.origin, Reject(self.reason.value(rt)[:MAX_REASON], self.extended))


def _reject(extended: bool):
    def build(node, args, cx):
        (reason,) = args.positional(STRING)
        return RejectCmd(cx.string(reason), extended, node.line)

    return build


COMMANDS = (Definition("reject", "reject", _reject(False)), Definition("ereject", "ereject", _reject(True)))
TESTS = ()
