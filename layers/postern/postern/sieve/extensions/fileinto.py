"""fileinto (RFC 5228 §4.1), with :copy (RFC 3894), :flags (RFC 5232) and :create (RFC 5490 §3.2).

``fileinto [:copy] [:flags <flags>] [:create] <mailbox>``: store the message
into the named mailbox (names in UTF-8, ``/`` the hierarchy delimiter, INBOX in
any case is INBOX). A constant name is checked at upload by the mail store's
own name rule; a name built from variables is checked at delivery (an invalid
one is a run-time error: the message is kept). Without ``:create`` a mailbox
that does not exist is not created: the delivery keeps the message in INBOX
and logs it (RFC 5490 §3.2 leaves it to the implementation).
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import MailboxInvalid
from ..actions import FileInto
from ..compiler import STRING, Definition, TagSpec
from ..errors import SieveRuntimeError
from ..program import Cmd, Str
from .core import COPY
from .imap4flags import FLAGS_TAG, flags_of
from .mailbox import mailbox_name

CAPABILITIES = ("fileinto",)
CREATE = TagSpec("create", None, None, "mailbox")


@dataclass(frozen=True)
class FileIntoCmd(Cmd):
    mailbox: Str
    flags: tuple[Str, ...] | None
    create: bool
    copy: bool
    line: int = 0

    def run(self, rt) -> None:
        raw = self.mailbox.value(rt)
        try:
            name = mailbox_name(raw)
        except MailboxInvalid:
            raise SieveRuntimeError(f"fileinto: invalid mailbox name {raw[:100]!r}") from None
        rt.result.add(rt.origin, FileInto(name, flags_of(rt, self.flags), self.create, self.copy))


def _fileinto(node, args, cx):
    tags = args.tags(COPY, FLAGS_TAG, CREATE)
    (mailbox,) = args.positional(STRING)
    s = cx.string(mailbox)
    if s.constant:
        try:
            mailbox_name(s.text)
        except MailboxInvalid:
            raise args.error(f"fileinto: invalid mailbox name \"{s.text}\"", mailbox) from None
    flags = cx.strings(tags["flags"]) if "flags" in tags else None
    return FileIntoCmd(s, flags, "create" in tags, "copy" in tags, node.line)


COMMANDS = (Definition("fileinto", "fileinto", _fileinto),)
TESTS = ()
