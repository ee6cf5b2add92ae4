"""What a Sieve run may look at: the envelope, the message's header view, its body on demand.

In:   built by the delivery code (:mod:`.delivery`) from a StoreJob, or by tests.
Out:  :class:`Envelope` (MAIL FROM, the recipient, the mailbox owner, the
      authentication facts and the spam verdict the MX recorded) and
      :class:`MessageView` (a :class:`postern.mail.header.Header` over the
      logical header section - our trace prefix plus the message's own header,
      as the user's IMAP client sees it - the logical size, and a loader for
      the body that is called only by a ``body`` test) in a :class:`Context`
      with the clock and the mailbox-existence lookup.
Fails: n/a. The body loader may raise StoreUnavailable (the delivery is then
      retried by SQS) and returns at most the configured number of bytes.

Headers are read through the shared header module only (its caps apply:
8 KiB parsed per structured value, 64 encoded-words, 100 fields of one name).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from dataclasses import dataclass, field

from ..mail.addresses import mailboxes, parse_address_list
from ..mail.header import Header
from ..mail.limits import structured
from ..verdicts import AuthFacts, SpamVerdict


@dataclass(frozen=True)
class Envelope:
    mail_from: str  # "" for the null reverse-path
    to: str  # the envelope recipient this copy came from (RFC 5228 §5.4 "to"), with any +detail
    user: str = ""  # the canonical address of the mailbox owner
    auth: AuthFacts = field(default_factory=AuthFacts)
    spam: SpamVerdict = field(default_factory=SpamVerdict)


@dataclass
class MessageView:
    header: Header
    size: int  # logical size (RFC 5228 §5.9: the same as IMAP RFC822.SIZE)
    body_loader: Callable[[], bytes] | None = None  # the whole message (header + body), bounded
    _body: bytes | None = None
    _texts: dict = field(default_factory=dict)  # name -> decoded values (a script tests one header many times)
    _addresses: dict = field(default_factory=dict)  # name -> [mailboxes of each field]

    @classmethod
    def of_bytes(cls, raw: bytes, size: int | None = None) -> MessageView:
        """A view of a whole message held in memory (tests, the in-memory path)."""
        return cls(Header(raw), len(raw) if size is None else size, lambda: raw)

    def texts(self, name: bytes) -> list[str]:
        """The decoded values of every field ``name`` (lower case), read once per message."""
        got = self._texts.get(name)
        if got is None:
            got = self._texts[name] = self.header.texts(name)
        return got

    def address_fields(self, name: bytes) -> list[list]:
        """The mailboxes of each field ``name``, in field order (groups flattened), read once per message."""
        got = self._addresses.get(name)
        if got is None:
            got = self._addresses[name] = [mailboxes(parse_address_list(structured(v)))
                                           for v in self.header.get_all(name)]
        return got

    def raw(self) -> bytes:
        """The message's bytes (read once; empty when no loader was given)."""
        if self._body is None:
            self._body = self.body_loader() if self.body_loader is not None else b""
        return self._body


@dataclass
class Context:
    envelope: Envelope
    message: MessageView
    now: _dt.datetime = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc))
    mailbox_exists: Callable[[str], bool] = lambda name: name == "INBOX"  # names arrive canonical (validate_name)
    environment: dict[str, str] = field(default_factory=dict)  # RFC 5183 items
