"""Mail store interface: storage primitives, no IMAP semantics (pymap ``backend/mailbox.py``).

In:   calls from the store Lambda (delivery), the IMAP and POP3 servers
      (through the gateway's executor: every method here blocks), the NDR
      Lambda (local reports) and the CLI.
Out:  small frozen data objects: :class:`MailboxInfo`, :class:`MessageMeta`,
      :class:`AppendResult`.
Fails: :class:`~postern.errors.MailboxNotFound`, :class:`~postern.errors.MailboxExists`,
      :class:`~postern.errors.MailboxInvalid`, :class:`~postern.errors.QuotaExceeded`
      (permanent) and :class:`~postern.errors.StoreUnavailable` (transient).

Semantics every implementation shares (checked by one contract suite):

* Mailboxes are keyed by name but own a stable ``mailbox_id``; messages hang
  off the id, so RENAME moves no messages. Names use ``/`` as hierarchy
  delimiter; ``INBOX`` is case-insensitive (RFC 3501 §5.1).
* ``append`` allocates the UID atomically (UIDNEXT only grows), bumps
  HIGHESTMODSEQ, counts bytes against the user's quota and, given a ``dedup``
  key, creates at most one message for that key however often it is retried.
* Every change (append, flags, expunge) gets a fresh modseq; ``changes_since``
  returns the changed messages *and tombstones of expunged ones* without
  reading the whole mailbox (RFC 7162 CONDSTORE, QRESYNC VANISHED).
* Message bytes are immutable blobs, shared by COPY and refcounted; the
  blob goes when its last index entry does.
* The logical message a client sees is ``prefix + raw`` where the prefix is
  the per-recipient trace block (Return-Path, Delivered-To, Received, ...).
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

# SPECIAL-USE mailboxes created for every user (RFC 6154 §2).
DEFAULT_MAILBOXES: dict[str, str | None] = {
    "INBOX": None,
    "Sent": "\\Sent",
    "Drafts": "\\Drafts",
    "Trash": "\\Trash",
    "Junk": "\\Junk",
    "Archive": "\\Archive",
}

DELIMITER = "/"
SEEN = "\\Seen"
DELETED = "\\Deleted"


def normalize_mailbox_name(name: str) -> str:
    """INBOX in any case is INBOX, also as the first level of a hierarchy (RFC 3501 §5.1)."""
    if name.upper() == "INBOX":
        return "INBOX"
    if name[:6].upper() == "INBOX" + DELIMITER:
        return "INBOX" + name[5:]
    return name


def validate_mailbox_name(name: str) -> str:
    from ..errors import MailboxInvalid

    n = normalize_mailbox_name(name)
    if not n or len(n.encode()) > 512:
        raise MailboxInvalid("Invalid mailbox name")
    parts = n.split(DELIMITER)
    if any(p == "" for p in parts) or any(ch in n for ch in "\r\n\x00*%"):
        raise MailboxInvalid("Invalid mailbox name")
    return n


@dataclass(frozen=True)
class MailboxInfo:
    user: str
    name: str
    mailbox_id: str
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    exists: int = 0
    size: int = 0
    unseen: int = 0
    special_use: str | None = None


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
    structure: dict | None = None  # optional precomputed MIME structure (IMAP BODYSTRUCTURE)
    expunged: bool = False  # a tombstone returned by changes_since
    light: bool = False  # loaded with the light projection (no prefix/header/structure)

    @property
    def seen(self) -> bool:
        return SEEN in self.flags


@dataclass(frozen=True)
class AppendResult:
    uid: int
    uidvalidity: int
    modseq: int
    mailbox_id: str
    duplicate: bool = False  # the dedup key had been delivered before: nothing new was written


@dataclass(frozen=True)
class FlagChange:
    uid: int
    flags: frozenset[str]
    modseq: int


@dataclass
class StoreResult:
    changed: list[FlagChange] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)  # UNCHANGEDSINCE failures (RFC 7162 §3.2 MODIFIED)


class MailStore(abc.ABC):
    """The storage primitives. Every method may block; none knows about sessions."""

    # --- mailboxes --------------------------------------------------------
    @abc.abstractmethod
    def ensure_mailboxes(self, user: str) -> None:
        """Create INBOX and the SPECIAL-USE defaults where missing (idempotent)."""

    @abc.abstractmethod
    def list_mailboxes(self, user: str) -> list[MailboxInfo]: ...

    @abc.abstractmethod
    def get_mailbox(self, user: str, name: str) -> MailboxInfo:
        """Current counters of one mailbox (a consistent read). MailboxNotFound if absent."""

    @abc.abstractmethod
    def create_mailbox(self, user: str, name: str, special_use: str | None = None) -> MailboxInfo: ...

    @abc.abstractmethod
    def delete_mailbox(self, user: str, name: str) -> None:
        """Delete the mailbox and its messages. INBOX cannot be deleted (MailboxInvalid)."""

    @abc.abstractmethod
    def rename_mailbox(self, user: str, old: str, new: str) -> None:
        """Rename with inferiors; renaming INBOX moves its messages and leaves it empty (RFC 3501 §6.3.5)."""

    @abc.abstractmethod
    def subscribe(self, user: str, name: str) -> None: ...

    @abc.abstractmethod
    def unsubscribe(self, user: str, name: str) -> None: ...

    @abc.abstractmethod
    def list_subscriptions(self, user: str) -> list[str]: ...

    # --- blobs ------------------------------------------------------------
    @abc.abstractmethod
    def put_blob(self, raw: bytes) -> str:
        """Store new immutable bytes (IMAP APPEND); returns the blob key."""

    @abc.abstractmethod
    def adopt_spool(self, spool_key: str, queue_id: str) -> str:
        """Make a spooled object a mailbox blob (idempotent per queue id); returns the blob key."""

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
        blob_key: str | None = None,
        prefix: bytes = b"",
        flags: Iterable[str] = (),
        internaldate: float | None = None,
        dedup: str | None = None,
        quota: int = 0,
        header: bytes | None = None,
        raw_size: int | None = None,
    ) -> AppendResult:
        """The one ingest path (SMTP delivery and IMAP APPEND).

        ``raw`` is the message as received; ``blob_key`` names it if already in
        S3 (else it is stored with put_blob). ``raw`` may be None when the blob
        exists and the caller gives its raw ``header`` section and ``raw_size``
        (the store Lambda, from the gateway's inline header). ``quota`` in
        bytes, 0 = unlimited. INBOX (and the other defaults) are created on
        first delivery.
        """

    @abc.abstractmethod
    def list_messages(self, mb: MailboxInfo, since_uid: int = 0, light: bool = False) -> Iterator[MessageMeta]:
        """Live messages with UID > since_uid in UID order (paginated Query)."""

    @abc.abstractmethod
    def get_messages(self, mb: MailboxInfo, uids: Iterable[int]) -> list[MessageMeta]:
        """Full metadata of the given live UIDs (missing ones are skipped)."""

    @abc.abstractmethod
    def changes_since(self, mb: MailboxInfo, modseq: int) -> list[MessageMeta]:
        """Messages and tombstones with modseq > ``modseq``, in modseq order."""

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
        """mode: 'add' | 'remove' | 'replace'. Each changed message gets a new modseq."""

    @abc.abstractmethod
    def expunge(self, mb: MailboxInfo, metas: Iterable[MessageMeta]) -> list[int]:
        """Remove these messages (leaving tombstones); returns the UIDs actually expunged."""

    @abc.abstractmethod
    def copy(self, mb: MailboxInfo, metas: Iterable[MessageMeta], dest: str, quota: int = 0) -> tuple[MailboxInfo, list[tuple[int, int]]]:
        """Copy into ``dest`` sharing blobs; returns (dest info, [(src uid, dest uid)]) for COPYUID."""

    @abc.abstractmethod
    def usage(self, user: str) -> int:
        """Bytes counted against the user's quota."""


def summary_for(prefix: bytes, raw: bytes | None, header: bytes | None, raw_size: int | None, blob_key: str | None):
    """The append summary from the full bytes, or from the header section alone."""
    from .summary import summarize, summarize_header

    if raw is not None:
        return summarize(prefix, raw), len(raw)
    if header is None or raw_size is None or not blob_key:
        raise ValueError("append without raw bytes needs blob_key, header and raw_size")
    return summarize_header(prefix, header, raw_size), raw_size


def apply_flags(current: frozenset[str], flags: Iterable[str], mode: str) -> frozenset[str]:
    f = frozenset(flags)
    if mode == "add":
        return current | f
    if mode == "remove":
        return current - f
    if mode == "replace":
        return f
    raise ValueError(f"bad flag mode {mode!r}")
