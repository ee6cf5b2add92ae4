"""The mailbox rules, written once, above the store primitives.

In:   a :class:`~postern.store.base.MailStore` and mailbox names as a protocol
      decoded them (IMAP's modified UTF-7 already undone; JMAP will pass its own).
Out:  :func:`validate_name` (the one validator every name path goes through:
      CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, SELECT, APPEND, COPY...),
      the hierarchy rules of :func:`create`, :func:`rename` and :func:`delete`,
      the default SPECIAL-USE mailboxes (:func:`ensure_defaults`), the ingest
      path that creates them on first delivery (:func:`append`), and what LIST
      shows (:func:`listing`).
Fails: :class:`~postern.errors.MailboxInvalid` (NO [CANNOT]) for a name no
      mailbox may have, :class:`~postern.errors.MailboxLimit` (NO [LIMIT]) past
      MAX_MAILBOXES mailboxes (or subscriptions) per account, and the store's
      domain errors.

Rules (RFC 3501 §5.1, §6.3.3-6.3.6; RFC 6154): ``/`` is the hierarchy delimiter;
``INBOX`` is case-insensitive, always exists, cannot be deleted, and renaming it
moves its messages to the new name and leaves it empty; CREATE and RENAME create
missing superiors; a RENAME takes the inferiors along, all in one store change
(atomic: a crash shows either the old names or the new ones).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import MailboxExists, MailboxInvalid, MailboxLimit, MailboxNotFound
from .store.base import DELIMITER, AppendResult, MailboxInfo, MailStore, normalize_mailbox_name

# SPECIAL-USE attributes (RFC 6154 §2) and the mailboxes created with them for every user.
SENT, DRAFTS, TRASH, JUNK, ARCHIVE = "\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive"
DEFAULT_MAILBOXES: dict[str, str | None] = {
    "INBOX": None,
    "Sent": SENT,
    "Drafts": DRAFTS,
    "Trash": TRASH,
    "Junk": JUNK,
    "Archive": ARCHIVE,
}
_DEFAULT_NAME = {use: name for name, use in DEFAULT_MAILBOXES.items() if use}

MAX_NAME_BYTES = 512  # UTF-8; keeps every key built from a name far below DynamoDB's 1024-byte sort key
MAX_DEPTH = 32
# Mailboxes per account: every LIST reads them all, and a RENAME of a superior moves its inferiors in one
# change record (at most 400 KB on DynamoDB). Thunderbird users with very many folders have hundreds.
MAX_MAILBOXES = 1000
_FORBIDDEN = frozenset("*%")  # LIST wildcards (RFC 3501 §6.3.8) can never be part of a name


def validate_name(name: str) -> str:
    """The canonical name, or MailboxInvalid: empty levels, controls, NUL, wildcards, too long or deep."""
    n = normalize_mailbox_name(name)
    try:
        size = len(n.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate from a malformed modified UTF-7 name
        raise MailboxInvalid("Invalid mailbox name") from None
    if not n or size > MAX_NAME_BYTES:
        raise MailboxInvalid("Invalid mailbox name")
    parts = n.split(DELIMITER)
    if len(parts) > MAX_DEPTH or any(p == "" for p in parts):
        raise MailboxInvalid("Invalid mailbox name")
    if any(ord(c) < 0x20 or ord(c) == 0x7F or c in _FORBIDDEN for c in n):
        raise MailboxInvalid("Invalid mailbox name")
    return n


def has_role(mb: MailboxInfo, special_use: str) -> bool:
    """``mb`` is the account's ``special_use`` mailbox: it has the attribute, or the default's name."""
    return mb.special_use == special_use or mb.name == _DEFAULT_NAME.get(special_use)


def superiors(name: str) -> list[str]:
    parts = name.split(DELIMITER)
    return [DELIMITER.join(parts[:i]) for i in range(1, len(parts))]


def ensure_defaults(store: MailStore, user: str) -> None:
    """INBOX and the SPECIAL-USE defaults where missing, subscribed (idempotent)."""
    have = {mb.name for mb in store.list_mailboxes(user)}
    missing = [(n, use) for n, use in DEFAULT_MAILBOXES.items() if n not in have]
    if missing:
        try:
            store.create_mailboxes(user, missing, subscribe=[n for n, _ in missing])
        except MailboxExists:
            pass  # created by someone else meanwhile


def append(store: MailStore, user: str, mailbox: str, raw: bytes | None, **kw) -> AppendResult:
    """The ingest path with the first-delivery rule: the default mailboxes appear when first needed."""
    try:
        return store.append(user, mailbox, raw, **kw)
    except MailboxNotFound:
        if normalize_mailbox_name(mailbox) not in DEFAULT_MAILBOXES:
            raise
    ensure_defaults(store, user)
    return store.append(user, mailbox, raw, **kw)


def create(store: MailStore, user: str, name: str) -> MailboxInfo:
    """Create ``name`` (and its missing superiors); returns the new mailbox."""
    n = validate_name(name.rstrip(DELIMITER) or name)  # RFC 3501 §6.3.3: a trailing delimiter is intent only
    if n == "INBOX":
        raise MailboxExists("INBOX already exists")
    have = {mb.name for mb in store.list_mailboxes(user)}
    if n in have:
        raise MailboxExists()
    # RFC 3501 §6.3.3: create the superiors needed, in the same change
    boxes = [(s, None) for s in superiors(n) if s not in have and s != "INBOX"] + [(n, None)]
    _within_limit(have, len(boxes))
    return store.create_mailboxes(user, boxes)[-1]


def _within_limit(have: set[str], more: int) -> None:
    if more and len(have) + more > MAX_MAILBOXES:
        raise MailboxLimit(f"Too many mailboxes (at most {MAX_MAILBOXES})")


def delete(store: MailStore, user: str, name: str) -> None:
    n = validate_name(name)
    if n == "INBOX":
        raise MailboxInvalid("INBOX cannot be deleted")  # RFC 3501 §6.3.4
    store.delete_mailbox(user, n)


def rename(store: MailStore, user: str, old: str, new: str) -> list[tuple[str, str]]:
    """Rename with inferiors; returns the (old, new) pairs moved."""
    o = validate_name(old)
    n = validate_name(new.rstrip(DELIMITER) or new)
    if n == "INBOX":
        raise MailboxExists("Cannot rename to INBOX")
    if n == o:
        raise MailboxExists()
    if n.startswith(o + DELIMITER):
        raise MailboxInvalid("Cannot move a mailbox into itself")
    have = {mb.name for mb in store.list_mailboxes(user)}
    if o not in have:
        raise MailboxNotFound()
    if n in have:
        raise MailboxExists()
    creates: list[tuple[str, str | None]] = []
    if o == "INBOX":
        # RFC 3501 §6.3.5: the messages move to the new name, INBOX stays (empty), its inferiors stay
        moves = [("INBOX", n)]
        creates.append(("INBOX", None))
    else:
        moves = [(x, n + x[len(o):]) for x in sorted(have) if x == o or x.startswith(o + DELIMITER)]
        if any(dst in have for _, dst in moves):
            raise MailboxExists()
    targets = {dst for _, dst in moves}
    creates += [(s, None) for s in superiors(n) if s not in have and s not in targets and s != "INBOX"]
    _within_limit(have, len(creates))
    store.rename_mailboxes(user, moves, creates)
    return moves


def subscribe(store: MailStore, user: str, name: str) -> None:
    n = validate_name(name)  # RFC 3501 §6.3.6: the mailbox need not exist, so the count is bounded apart
    subs = store.list_subscriptions(user)
    if n not in subs and len(subs) >= MAX_MAILBOXES:
        raise MailboxLimit(f"Too many subscriptions (at most {MAX_MAILBOXES})")
    store.subscribe(user, n)


def unsubscribe(store: MailStore, user: str, name: str) -> None:
    store.unsubscribe(user, validate_name(name))


@dataclass
class Listing:
    """What LIST and LSUB show, before pattern matching: real mailboxes, implied parents, subscriptions."""

    boxes: dict[str, MailboxInfo] = field(default_factory=dict)
    implied: set[str] = field(default_factory=set)  # superiors that are no mailbox (\Noselect)
    children: set[str] = field(default_factory=set)  # names with inferiors (\HasChildren, RFC 3348)
    subscribed: set[str] = field(default_factory=set)

    @property
    def names(self) -> set[str]:
        return set(self.boxes) | self.implied


def listing(store: MailStore, user: str, subscriptions: bool = False) -> Listing:
    boxes = {mb.name: mb for mb in store.list_mailboxes(user)}
    implied = {s for n in boxes for s in superiors(n)} - set(boxes)
    children = {s for n in set(boxes) | implied for s in superiors(n)}
    subs = set(store.list_subscriptions(user)) if subscriptions else set()
    return Listing(boxes, implied, children, subs)
