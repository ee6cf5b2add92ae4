"""Mail store interface: storage primitives, no IMAP semantics (pymap ``backend/mailbox.py``).

In:   calls from the store Lambda (delivery), the gateway (through its async
      facade: every method here blocks), the NDR Lambda (local reports), the CLI
      and the mailbox-rules layer above (``postern.mailboxes``: INBOX, hierarchy,
      defaults, name validation live there, not here).
Out:  small frozen data objects: :class:`MailboxInfo`, :class:`MessageMeta`,
      :class:`Change`, :class:`AppendResult`, :class:`StoreResult`.
Fails: :class:`~postern.errors.MailboxNotFound`, :class:`~postern.errors.MailboxExists`,
      :class:`~postern.errors.QuotaExceeded`, :class:`~postern.errors.KeywordLimit`
      and :class:`~postern.errors.MailboxLimit` (a change record past DynamoDB's item
      size) (permanent), :class:`~postern.errors.BlobMissing` (the bytes are gone) and
      :class:`~postern.errors.StoreUnavailable` (transient).

Semantics every implementation shares (one implementation, ``engine.LogStore``,
over DynamoDB+S3 or their in-memory twins; checked by one contract suite):

* Every change of an account (append, flags, expunge, mailbox create/rename/
  delete, subscriptions) is one item in the account's change log, numbered by
  the account-wide change sequence. A change becomes visible exactly when its
  log item is written, and log items are written in number order (a change
  numbered n+1 is written only after n exists), so a reader that has seen n
  never later finds a change below n. The number of a change is the MODSEQ of
  the messages it touches (RFC 7162: strictly increasing per mailbox, gaps are
  allowed) and the JMAP state of the account.
* Mailboxes are keyed by name but own a stable ``mailbox_id`` (RFC 8474
  MAILBOXID); messages hang off the id, so RENAME moves no messages. Names use
  ``/`` as hierarchy delimiter.
* Each message has a stable ``email_id`` (RFC 8474 EMAILID, kept by COPY and
  MOVE) and a ``thread_id`` assigned at append from its Message-ID and
  References; ``blob_id`` names its bytes (JMAP).
* ``append`` allocates the UID (UIDNEXT only grows), counts bytes against the
  user's quota and, given a ``dedup`` key, creates at most one message for that
  key however often it is retried.
* Message bytes are immutable blobs, shared by COPY and released when their last
  index entry goes. The logical message a client sees is ``prefix + raw`` where
  the prefix is the per-recipient trace block (Return-Path, Delivered-To, ...).
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from ..verdicts import SpamVerdict

if TYPE_CHECKING:
    from .counts import Counts

DELIMITER = "/"
SEEN = "\\Seen"
DELETED = "\\Deleted"
SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
MAX_KEYWORDS = 250  # per mailbox; more is KeywordLimit (NO [LIMIT])


def is_keyword(flag: str) -> bool:
    return not flag.startswith("\\")


def normalize_mailbox_name(name: str) -> str:
    """INBOX in any case is INBOX, also as the first level of a hierarchy (RFC 3501 §5.1)."""
    if name.upper() == "INBOX":
        return "INBOX"
    if name[:6].upper() == "INBOX" + DELIMITER:
        return "INBOX" + name[5:]
    return name


@dataclass(frozen=True)
class MailboxInfo:
    user: str
    name: str
    mailbox_id: str
    uidvalidity: int
    uidnext: int = 1
    highestmodseq: int = 0
    exists: int = 0
    size: int = 0
    unseen: int = 0
    special_use: str | None = None
    keywords: frozenset[str] = frozenset()  # the mailbox's keyword set (FLAGS / PERMANENTFLAGS)
    recent_uid: int = 0  # \Recent has been claimed for every UID up to here (claim_recent)
    pos: int = 0  # account change number this view is exact at: follow(user, pos) brings it up to date
    # Every live message with a UID above ``sorted_above`` has an INTERNALDATE strictly later than every
    # message of lower UID (``records.order_fields``): newest-first by date is newest-first by UID there.
    sorted_above: int = 0
    self_copied: bool = False  # a COPY/MOVE into this same mailbox happened: one Email may hold two UIDs here


@dataclass(frozen=True)
class MessageMeta:
    uid: int
    modseq: int
    flags: frozenset[str] = frozenset()
    internaldate: float = 0.0  # epoch seconds
    size: int = 0  # logical size: len(prefix) + raw_size (RFC822.SIZE)
    blob_key: str = ""
    raw_size: int = 0
    prefix: bytes = b""
    header: bytes | None = None  # logical header block if small enough (see summary.py)
    header_len: int = 0
    expunged: bool = False  # a tombstone (changes_since, follow)
    light: bool = False  # loaded without prefix/header
    email_id: str = ""  # RFC 8474 EMAILID / JMAP Email id: survives COPY and MOVE
    thread_id: str = ""  # RFC 8474 THREADID / JMAP Thread id, assigned at append
    spam: SpamVerdict | None = None  # the MX's verdict for this delivery (None: IMAP APPEND, JMAP import)

    @property
    def seen(self) -> bool:
        return SEEN in self.flags

    @property
    def blob_id(self) -> str:
        """JMAP blobId of the logical message (prefix + raw): immutable, so derived from the email id."""
        return "B" + self.email_id[1:] if self.email_id else ""


@dataclass(frozen=True)
class Change:
    """One entry of an account's change log, as the watcher and JMAP see it.

    ``kind``: ``append`` (messages are the new ones, light), ``flags`` (uid,
    modseq, resulting flags), ``expunge`` (tombstones with their email and thread ids), ``create``, ``rename``
    (``names``: (mailbox id, old name, new name) triples), ``destroy``,
    ``subscribe``, ``unsubscribe``. ``keywords``: keywords this change added to
    the mailbox's keyword set (the IMAP server announces them with FLAGS first).
    """

    modseq: int
    kind: str
    mailbox_id: str = ""
    messages: tuple[MessageMeta, ...] = ()
    keywords: frozenset[str] = frozenset()
    names: tuple[tuple[str, str, str], ...] = ()
    at: float = 0.0


@dataclass(frozen=True)
class AppendResult:
    uid: int
    uidvalidity: int
    modseq: int
    mailbox_id: str
    duplicate: bool = False  # the dedup key had been delivered before: nothing new was written
    email_id: str = ""
    thread_id: str = ""


@dataclass(frozen=True)
class FlagChange:
    uid: int
    flags: frozenset[str]
    modseq: int


@dataclass
class StoreResult:
    changed: list[FlagChange] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)  # UNCHANGEDSINCE failures (RFC 7162 §3.2 MODIFIED)
    keywords: frozenset[str] = frozenset()  # keywords this STORE added to the mailbox's set


class MailStore(abc.ABC):
    """The storage primitives. Every method may block; none knows about sessions."""

    # --- mailboxes --------------------------------------------------------
    @abc.abstractmethod
    def list_mailboxes(self, user: str) -> list[MailboxInfo]:
        """Names, ids, UIDVALIDITY and SPECIAL-USE of every mailbox (counters are not read)."""

    @abc.abstractmethod
    def get_mailbox(self, user: str, name: str) -> MailboxInfo:
        """Exact counters of one mailbox at ``pos``. MailboxNotFound if absent."""

    @abc.abstractmethod
    def get_mailbox_by_id(self, user: str, mailbox_id: str) -> MailboxInfo:
        """The same, by stable id (whatever its name now). MailboxNotFound once deleted."""

    @abc.abstractmethod
    def mailbox_counts(self, user: str, mailbox_ids: Iterable[str]) -> dict[str, Counts]:
        """JMAP's four counts of each mailbox (``counts``: Emails, unread Emails, Threads, unread Threads),
        exact; one BatchGetItem of the states (a mailbox whose counts are not all kept is read once more,
        its own entries only). A deleted mailbox is absent."""

    @abc.abstractmethod
    def thread_messages(self, user: str, mailbox_ids: Iterable[str], thread_ids: Iterable[str],
                        light: bool = True) -> dict[str, list[tuple[str, MessageMeta]]] | None:
        """Where each thread's messages are, in these mailboxes: (mailbox id, metadata) per live
        message, from the threads' members items (``counts``: one BatchGetItem of the states, one per 100
        (thread, mailbox) keys, or one Query per thread when that is fewer requests, and one per 100
        entries); a thread with none is absent. None when one of the
        mailboxes does not count threads yet (mail stored before: the caller reads the account)."""

    @abc.abstractmethod
    def create_mailboxes(self, user: str, boxes: Iterable[tuple[str, str | None]],
                         subscribe: Iterable[str] = ()) -> list[MailboxInfo]:
        """Create all (name, special_use) pairs in one change (MailboxExists if any exists)."""

    @abc.abstractmethod
    def rename_mailboxes(self, user: str, moves: Iterable[tuple[str, str]],
                         creates: Iterable[tuple[str, str | None]] = ()) -> None:
        """Rename every (old, new) pair and create ``creates``, in one change: all or nothing."""

    @abc.abstractmethod
    def delete_mailbox(self, user: str, name: str) -> None:
        """The name goes at once and the quota is freed; the messages are released by :meth:`sweep`."""

    @abc.abstractmethod
    def subscribe(self, user: str, name: str) -> None: ...

    @abc.abstractmethod
    def unsubscribe(self, user: str, name: str) -> None: ...

    @abc.abstractmethod
    def list_subscriptions(self, user: str) -> list[str]: ...

    @abc.abstractmethod
    def read_spool(self, spool_key: str) -> bytes: ...

    # --- messages ---------------------------------------------------------
    @abc.abstractmethod
    def append(
        self,
        user: str,
        mailbox: str,
        raw: bytes | None,
        *,
        spool_key: str | None = None,
        prefix: bytes = b"",
        flags: Iterable[str] = (),
        internaldate: float | None = None,
        dedup: str | None = None,
        quota: int = 0,
        header: bytes | None = None,
        raw_size: int | None = None,
        spam: SpamVerdict | None = None,
    ) -> AppendResult:
        """The one ingest path (SMTP delivery and IMAP APPEND).

        ``raw`` is the message as received; ``spool_key`` names it when it is
        already in the spool (the store Lambda): ``raw`` may then be None if the
        caller gives its raw ``header`` section and ``raw_size``. ``quota`` in
        bytes, 0 = unlimited. A missing mailbox is MailboxNotFound (the rules
        layer creates the default mailboxes on first delivery). ``spam``: the
        MX's verdict (store function), kept in the message's entry and its
        copies (:attr:`MessageMeta.spam`).
        """

    @abc.abstractmethod
    def list_messages(self, mb: MailboxInfo, since_uid: int = 0, light: bool = False) -> Iterator[MessageMeta]:
        """Live messages with UID > since_uid in UID order (paginated Query)."""

    @abc.abstractmethod
    def list_messages_desc(self, mb: MailboxInfo, light: bool = True) -> Iterator[MessageMeta]:
        """Live messages below ``mb.uidnext`` newest UID first, read in growing pages (a caller that stops early reads
        only what it used: the first page is one Query with Limit and ScanIndexForward=False)."""

    @abc.abstractmethod
    def get_messages(self, mb: MailboxInfo, uids: Iterable[int]) -> list[MessageMeta]:
        """Full metadata of the given live UIDs (missing ones are skipped)."""

    @abc.abstractmethod
    def find_emails(self, user: str, email_ids: Iterable[str]) -> dict[str, list[tuple[str, MessageMeta]]]:
        """Where each email id lives: (mailbox id, full metadata) of each live message holding it, in
        mailbox-id then UID order; an id nothing holds is absent. Reads the email-id index, not the
        account's entries (JMAP Email/get by id)."""

    @abc.abstractmethod
    def changes_since(self, mb: MailboxInfo, modseq: int) -> list[MessageMeta]:
        """Messages and tombstones of this mailbox changed after ``modseq``, in modseq order."""

    @abc.abstractmethod
    def follow(self, user: str, after: int, limit: int | None = None) -> list[Change]:
        """The account's changes numbered above ``after``, in order (what a watcher reads)."""

    @abc.abstractmethod
    def read(self, meta: MessageMeta, start: int = 0, end: int | None = None) -> bytes:
        """Bytes [start, end) of the logical message (prefix + raw), S3 ranged where possible."""

    @abc.abstractmethod
    def store_flags(
        self,
        mb: MailboxInfo,
        metas: Iterable[MessageMeta],
        flags: Iterable[str],
        mode: str,
        unchanged_since: int | None = None,
    ) -> StoreResult:
        """mode: 'add' | 'remove' | 'replace'. The changed messages get a new modseq."""

    @abc.abstractmethod
    def expunge(self, mb: MailboxInfo, metas: Iterable[MessageMeta]) -> list[int]:
        """Remove these messages (leaving tombstones); returns the UIDs actually expunged."""

    @abc.abstractmethod
    def copy(self, mb: MailboxInfo, metas: Iterable[MessageMeta], dest: str, quota: int = 0,
             by_user: bool = False) -> tuple[MailboxInfo, list[tuple[int, int]]]:
        """Copy into ``dest`` sharing blobs and email ids; returns (dest info, [(src uid, dest uid)]) for COPYUID.

        ``by_user``: the user's own copy or move (IMAP COPY/MOVE, JMAP Email/set), never one the server
        makes: a copy into Junk gets ``$Junk`` and loses ``$NotJunk``, one out of Junk (not into Trash)
        the reverse, in the same change (:mod:`postern.junk`: the one rule, which also says the lesson)."""

    @abc.abstractmethod
    def claim_recent(self, mb: MailboxInfo, upto_uid: int) -> int:
        """Claim \\Recent for UIDs up to ``upto_uid``; returns the UID claimed before (the caller owns the rest).

        Arbitrated by the store, so across gateway tasks exactly one session is
        the first to be told of a message (RFC 3501 §2.3.2)."""

    @abc.abstractmethod
    def usage(self, user: str) -> int:
        """Bytes counted against the user's quota."""

    @abc.abstractmethod
    def sweep(self, user: str) -> int:
        """Finish pending work (messages of deleted mailboxes); returns the messages released."""


def apply_flags(current: frozenset[str], flags: Iterable[str], mode: str) -> frozenset[str]:
    f = frozenset(flags)
    if mode == "add":
        return current | f
    if mode == "remove":
        return current - f
    if mode == "replace":
        return f
    raise ValueError(f"bad flag mode {mode!r}")
