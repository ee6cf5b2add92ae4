"""mailbox (RFC 5490 §3): the ``:create`` tag of fileinto, and ``mailboxexists``.

``mailboxexists <mailbox-names: string-list>`` is true when every named
mailbox exists (§3.1); the delivery answers it from the user's mailbox list
(one read, only when the test runs). :func:`mailbox_name` is where Sieve asks
the mailbox rules' one validator (``postern.mailboxes.validate_name``: IMAP
CREATE and SUBSCRIBE, JMAP and Sieve agree) whether a name may be a mailbox.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import MailboxInvalid
from ...mailboxes import validate_name
from ..compiler import STRING_LIST, Definition
from ..program import Str, Tst

CAPABILITIES = ("mailbox",)


def mailbox_name(name: str) -> str:
    """The canonical mailbox name (INBOX in any case is INBOX); MailboxInvalid when no mailbox may
    have it."""
    return validate_name(name)


@dataclass(frozen=True)
class MailboxExists(Tst):
    names: tuple[Str, ...]
    line: int = 0

    def eval(self, rt) -> bool:
        for n in self.names:
            rt.step()
            try:
                name = mailbox_name(n.value(rt))
            except MailboxInvalid:
                return False
            if not rt.ctx.mailbox_exists(name):
                return False
        return True


def _mailboxexists(node, args, cx):
    (names,) = args.positional(STRING_LIST)
    return MailboxExists(cx.strings(names), node.line)


COMMANDS = ()
TESTS = (Definition("mailboxexists", "mailbox", _mailboxexists),)
