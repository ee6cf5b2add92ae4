"""The POP3 maildrop: a snapshot of INBOX taken at login, with deletion marks.

In:   the INBOX :class:`~postern.store.base.MailboxInfo` (or None when the
      user has had no delivery yet) and its live messages, listed once when
      the session enters the TRANSACTION state (Stalwart
      ``crates/pop3/src/mailbox.rs``).
Out:  message numbers 1..n over that snapshot (RFC 1939 §5: numbers do not
      change during a session, deleted ones are not reused), sizes (the
      logical size: trace prefix + raw bytes), stable unique ids, and the
      marked messages for the UPDATE state.
Fails: :class:`~postern_gateway.pop3.protocol.Pop3Error` with the ``-ERR``
      text for a bad number, no such message, or a message marked deleted.

DELE only marks; RSET unmarks; only QUIT in TRANSACTION expunges the marked
messages (RFC 1939 §6). Mail arriving after login is not seen until the next
session.
"""

from __future__ import annotations

from dataclasses import dataclass

from postern.store.base import MailboxInfo, MessageMeta

from .protocol import Pop3Error, parse_number


@dataclass
class Entry:
    number: int
    meta: MessageMeta
    deleted: bool = False
    full: bool = False  # meta has the prefix and header (the snapshot listing is light)


def unique_id(uidvalidity: int, uid: int) -> str:
    """RFC 1939 §7 UIDL: 1-70 chars in 0x21-0x7E, the same across sessions.

    UIDVALIDITY changes only if the mailbox is recreated, which is exactly
    when old ids must stop matching.
    """
    return f"{uidvalidity}.{uid}"


class Maildrop:
    def __init__(self, mailbox: MailboxInfo | None, metas: list[MessageMeta]):
        self.mailbox = mailbox
        self.entries = [Entry(i + 1, m) for i, m in enumerate(metas)]

    def __len__(self) -> int:
        return len(self.entries)

    # --- look-ups ---------------------------------------------------------
    def get(self, arg: str) -> Entry:
        """The live entry for a message-number argument, or Pop3Error with the reason."""
        n = parse_number(arg)
        if n is None:
            raise Pop3Error(f"Invalid message number: {arg[:40]}")
        if n > len(self.entries):
            raise Pop3Error(f"No such message: {n}")
        e = self.entries[n - 1]
        if e.deleted:
            raise Pop3Error(f"Message {n} already deleted")  # RFC 1939 §5
        return e

    def live(self) -> list[Entry]:
        return [e for e in self.entries if not e.deleted]

    def stat(self) -> tuple[int, int]:
        live = self.live()
        return len(live), sum(e.meta.size for e in live)

    def uidl(self, e: Entry) -> str:
        uv = self.mailbox.uidvalidity if self.mailbox is not None else 0
        return unique_id(uv, e.meta.uid)

    # --- marks --------------------------------------------------------------
    def delete(self, e: Entry) -> None:
        e.deleted = True

    def reset(self) -> None:
        for e in self.entries:
            e.deleted = False

    def marked(self) -> list[MessageMeta]:
        return [e.meta for e in self.entries if e.deleted]

    def upgrade(self, e: Entry, full: MessageMeta) -> None:
        """Keep the full metadata (prefix, header) once fetched for RETR/TOP."""
        e.meta = full
        e.full = True
