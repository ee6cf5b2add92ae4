"""The account as JMAP sees it: mailboxes by id, Emails by id, Threads by id, and the state.

In:   an :class:`~.account.Account`; the store's public primitives only
      (``list_mailboxes``, ``get_mailbox_by_id``, ``list_messages``,
      ``get_messages``, ``list_subscriptions``) and the mailbox rules
      (``postern.mailboxes.ensure_defaults``: the default mailboxes appear on
      first use, as they do on first delivery).
Out:  :class:`AccountView`: ``state`` (the account-wide change number the view
      was read at: the JMAP state string of every type), ``mailboxes``
      (id -> MailboxInfo), ``emails`` (Email id -> :class:`EmailEntry`: the
      message in each mailbox it is in), ``threads`` (Thread id -> Email ids in
      receivedAt order).
Fails: the store's errors (StoreUnavailable -> serverUnavailable in ``api``).

One model: an Email is the store's ``email_id`` (RFC 8474 EMAILID), kept by
COPY and MOVE, so the IMAP messages that share it in several mailboxes are one
Email with several ``mailboxIds``. Its keywords are the union of those
messages' flags (a keyword change writes all of them). The state is read
*before* the messages, so a view is never older than its state: a client may
see a change twice, never miss one.

Cost: the mailboxes and the state are one Query of the user partition; the
counts one BatchGetItem of the mailboxes' states (``store.counts``); the
messages, read only by a call that needs them, one Query per mailbox (light
entries). Calls that name Emails by id (Email/get with ids, Email/set update
and destroy, blob downloads, EmailSubmission) use :meth:`AccountView.entries`:
the store's email-id index (``find_emails``), so their cost does not grow with
the account; calls over all Emails (query, changes, threads) read the view.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .. import mailboxes as rules
from ..store import counts as C
from ..store.base import MailboxInfo, MessageMeta
from .account import Account


_LEGACY = re.compile(r"E[0-9a-f]{24}")  # an id the store could have given (new_id): worth the full look


def email_id_of(mailbox_id: str, m: MessageMeta) -> str:
    """A stored message's Email id (the store's rule: ``store.counts.email_of``)."""
    return C.email_of(mailbox_id, m.uid, m.email_id)


def thread_id_of(email_id: str, m: MessageMeta) -> str:
    """A stored message's Thread id (the store's rule: ``store.counts.thread_of``)."""
    return C.thread_of(email_id, m.thread_id)


@dataclass
class EmailEntry:
    id: str
    thread_id: str
    where: list[tuple[str, MessageMeta]] = field(default_factory=list)  # (mailbox id, light meta)

    @property
    def mailbox_ids(self) -> dict[str, bool]:
        return {mbid: True for mbid, _ in self.where}

    @property
    def flags(self) -> frozenset[str]:
        out: set[str] = set()
        for _, m in self.where:
            out |= m.flags
        return frozenset(out)

    @property
    def first(self) -> MessageMeta:
        return self.where[0][1]

    @property
    def received(self) -> float:
        return min(m.internaldate for _, m in self.where)

    @property
    def size(self) -> int:
        return self.first.size


@dataclass
class AccountView:
    account: Account
    state: int
    mailboxes: dict[str, MailboxInfo]
    subscribed: set[str]
    _emails: dict[str, EmailEntry] | None = None
    _threads: dict[str, list[str]] | None = None
    _counts: dict[str, tuple[int, int, int, int]] | None = None
    # Email id -> its Thread id, as an Email/query page of this view read them (entries() looks such Emails
    # up through their threads' members items: a few BatchGetItem for a page instead of a Query per id)
    thread_hints: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, account: Account) -> AccountView:
        """Mailboxes and the state now; the messages on first use (Mailbox and Identity calls need none)."""
        store = account.store
        listed = store.list_mailboxes(account.user)
        if not any(mb.name == "INBOX" for mb in listed):
            rules.ensure_defaults(store, account.user)
            listed = store.list_mailboxes(account.user)
        state = max((mb.pos for mb in listed), default=0)
        boxes = {info.mailbox_id: info for info in listed}
        return cls(account, state, boxes, set(store.list_subscriptions(account.user)))

    @property
    def emails(self) -> dict[str, EmailEntry]:
        if self._emails is None:
            emails: dict[str, EmailEntry] = {}
            for info in self.mailboxes.values():
                for m in self.account.store.list_messages(info, light=True):
                    eid = email_id_of(info.mailbox_id, m)
                    e = emails.get(eid)
                    if e is None:
                        e = emails[eid] = EmailEntry(eid, thread_id_of(eid, m))
                    e.where.append((info.mailbox_id, m))
            self._emails = emails
        return self._emails

    def entries(self, ids) -> dict[str, EmailEntry]:
        """The Emails with these ids. A loaded view answers from memory; otherwise an Email a query page
        of this view named comes through its thread (:meth:`_hinted`), any other from the store's
        email-id index (``find_emails``: one Query per id and one BatchGetItem, whatever the
        account's size). An id the index does not know (a message stored before the index existed)
        is looked for in the whole view, so such mail is never missed; only then is it read."""
        wanted = [i for i in dict.fromkeys(ids) if isinstance(i, str) and i]
        if self._emails is not None:
            return {i: self._emails[i] for i in wanted if i in self._emails}
        out = self._hinted(wanted)
        rest = [i for i in wanted if i not in out]
        for eid, where in self.account.store.find_emails(self.account.user, rest).items():
            where = [(mbid, m) for mbid, m in where if mbid in self.mailboxes]  # deleted, not yet swept
            if where:
                out[eid] = EmailEntry(eid, thread_id_of(eid, where[0][1]), where)
        missing = [i for i in wanted if i not in out and _LEGACY.fullmatch(i)]
        if missing:
            out.update((i, self.emails[i]) for i in missing if i in self.emails)
        return out

    def _hinted(self, wanted: list[str]) -> dict[str, EmailEntry]:
        """The wanted Emails whose Thread a page of this view named, from the threads' members items: every
        message of an Email carries its Thread id (COPY keeps it), so the Thread's messages in every
        mailbox hold all of the Email's. {} when a mailbox's threads are not counted yet."""
        tids = {self.thread_hints[i] for i in wanted if i in self.thread_hints}
        got = self.account.store.thread_messages(self.account.user, list(self.mailboxes), tids, light=False) \
            if tids else None
        out: dict[str, EmailEntry] = {}
        for tid, where in (got or {}).items():
            for mbid, m in where:
                eid = email_id_of(mbid, m)
                if eid in wanted and self.thread_hints.get(eid) == tid:
                    out.setdefault(eid, EmailEntry(eid, tid)).where.append((mbid, m))
        return out

    @property
    def loaded(self) -> bool:
        return self._emails is not None

    @property
    def state_string(self) -> str:
        return str(self.state)

    @property
    def threads(self) -> dict[str, list[str]]:
        if self._threads is None:
            out: dict[str, list[EmailEntry]] = {}
            for e in self.emails.values():
                out.setdefault(e.thread_id, []).append(e)
            self._threads = {t: [e.id for e in sorted(es, key=lambda e: (e.received, e.id))] for t, es in out.items()}
        return self._threads

    def thread_emails(self, ids) -> dict[str, list[str]]:
        """The Email ids of these Threads in receivedAt order (as :attr:`threads` has them). A loaded view
        answers from memory; otherwise the store's members items do (``thread_messages``: one Query per
        Thread, whatever the account's size), unless a mailbox's threads are not counted yet (mail stored
        before the counters): then the whole view is read, once."""
        wanted = [i for i in dict.fromkeys(ids) if isinstance(i, str) and i]
        got = None if self._emails is not None else \
            self.account.store.thread_messages(self.account.user, list(self.mailboxes), wanted)
        if got is None:
            return {t: self.threads[t] for t in wanted if t in self.threads}
        out: dict[str, list[str]] = {}
        for tid, where in got.items():
            emails: dict[str, EmailEntry] = {}
            for mbid, m in where:
                eid = email_id_of(mbid, m)
                emails.setdefault(eid, EmailEntry(eid, tid)).where.append((mbid, m))
            out[tid] = [e.id for e in sorted(emails.values(), key=lambda e: (e.received, e.id))]
        return out

    def by_name(self) -> dict[str, MailboxInfo]:
        return {mb.name: mb for mb in self.mailboxes.values()}

    def counts(self, mailbox_id: str) -> tuple[int, int, int, int]:
        """(Emails, unread Emails, Threads, unread Threads) of a mailbox (RFC 8621 §2), as the store keeps
        them (``store.counts``: one BatchGetItem for every mailbox of the view, read on first use)."""
        if self._counts is None:
            got = self.account.store.mailbox_counts(self.account.user, list(self.mailboxes))
            self._counts = {k: (c.emails, c.unread_emails, c.threads, c.unread_threads) for k, c in got.items()}
        return self._counts.get(mailbox_id, (0, 0, 0, 0))

    def full(self, entry: EmailEntry) -> MessageMeta:
        """The full metadata (trace prefix, header block) of the Email's first message."""
        mbid, light = entry.where[0]
        if not light.light:
            return light  # read from the email-id index's entries: full already
        got = self.account.store.get_messages(self.mailboxes[mbid], [light.uid])
        if not got:
            from ..errors import StoreUnavailable

            raise StoreUnavailable("message vanished while read")
        return got[0]
