"""The change feed's notices: what FeedFunction publishes and each gateway task reads (written once).

In:   DynamoDB stream records (Lambda's event shape, attribute values in DynamoDB
      JSON): the mail table's, for :func:`notice_of`, and the directory table's
      (KEYS_ONLY), for :func:`credentials_of`; notices and accounts, for
      :func:`encode`; an SNS message body (raw delivery to SQS), for :func:`read`.
Out:  :class:`Notice` (account, the mailbox ids the change touched, the change
      number); the account whose credentials changed (its user item modified or
      removed: a new password, a removed user); message bodies of at most
      :data:`MAX_BODY` bytes, each ``{"v": 1, "c": [{"u": account, "n": change
      number, "mb": [mailbox ids]}, ...], "cr": [account, ...]}`` ("cr" only when
      there are credential changes), and each body's SNS message attributes
      (:func:`attributes`: which of the two it carries, so a task that serves no
      mailbox subscribes to credential changes only); :class:`Batch` (both lists) from a body.
Fails: :func:`notice_of` / :func:`credentials_of` return None for a record that is
      not theirs (the Lambda event filters already drop those; a second check costs
      nothing); :func:`read` returns an empty Batch for a body it cannot read (a
      notice is a hint to read the log, never the data: dropping one delays a client
      to the safety-net poll, it loses nothing; a dropped credential change leaves a
      cached login valid until the gateway's safety-net check, at most
      ``POSTERN_CHANGE_FEED_POLL_INTERVAL`` after its last confirmation).

A notice carries no content and no flags: a reader learns *that* account A has
change n, and reads the changes after its own last number from the log
(``MailStore.follow``), in order, exactly once (postern_gateway/imap/watcher.py).
Several changes of one account in one batch become one notice with the highest
number. Record format: postern/store/records.py ("Change log record").
A credential change carries the account only (the directory stream is KEYS_ONLY:
no password hash ever leaves the table): each gateway task drops what it verified
for that account (postern_gateway/auth.py :func:`revoke`), so its next login checks
the password against the directory again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from . import keys

VERSION = 1
KINDS = "kinds"  # the SNS message attribute naming what a body carries: "c" change notices, "cr" credential changes
# The filter policy of a task that serves no mailbox (the ha profile's mail-in service: its IMAP, POP3 and
# ManageSieve listeners get no traffic): it takes the credential changes only, not a notice per change.
CREDENTIALS_ONLY = {KINDS: ["cr"]}
MAX_BODY = 200 * 1024  # SNS and SQS take 256 KiB; room for the envelope SNS adds without raw delivery
LOG_PREFIX = keys.log_pk("x")[: -len("x")]  # "L#": the change log's partition keys


@dataclass(frozen=True)
class Notice:
    user: str
    modseq: int  # the account's change number
    mailboxes: tuple[str, ...] = ()

    def merge(self, other: Notice) -> Notice:
        mbs = tuple(dict.fromkeys((*self.mailboxes, *other.mailboxes)))
        return Notice(self.user, max(self.modseq, other.modseq), mbs)


@dataclass(frozen=True)
class Batch:
    """What one message body carries: change notices, and accounts whose credentials changed."""

    notices: tuple[Notice, ...] = ()
    credentials: tuple[str, ...] = ()


def _s(av: dict | None) -> str:
    return str((av or {}).get("S", ""))


def _n(av: dict | None) -> int:
    try:
        return int((av or {}).get("N", "0"))
    except ValueError:
        return 0


def notice_of(record: dict) -> Notice | None:
    """The notice of one stream record (an INSERT of an ``L#<account>`` item), else None."""
    if record.get("eventName") != "INSERT":
        return None
    ddb = record.get("dynamodb") or {}
    if not _s((ddb.get("Keys") or {}).get("pk")).startswith(LOG_PREFIX):
        return None
    image = ddb.get("NewImage") or {}
    user, modseq = _s(image.get("u")), _n(image.get("ms"))
    if not user or modseq <= 0:
        return None
    mbs = [_s(image.get("mb"))]
    for field in ("b", "mv"):  # create (and rename's creates), rename: the mailboxes it names
        for entry in (image.get(field) or {}).get("L", []):
            mbs.append(_s((entry.get("M") or {}).get("mb")))
    return Notice(user, modseq, tuple(dict.fromkeys(m for m in mbs if m)))


CREDENTIAL_EVENTS = ("MODIFY", "REMOVE")  # a user item changed (password, generation) or went away


def credentials_of(record: dict) -> str | None:
    """The account whose credentials a directory stream record may have changed (a MODIFY or
    REMOVE of a user item: ``keys.user_key``), else None. Any change of the item counts (a quota
    change too): dropping a cached login costs one password check, missing a revocation is unsafe."""
    if record.get("eventName") not in CREDENTIAL_EVENTS:
        return None
    k = (record.get("dynamodb") or {}).get("Keys") or {}
    return keys.user_of_key(_s(k.get("pk")), _s(k.get("sk")))


def coalesce(notices: list[Notice]) -> list[Notice]:
    """One notice per account (the highest number, every mailbox), in order of first appearance."""
    out: dict[str, Notice] = {}
    for n in notices:
        out[n.user] = out[n.user].merge(n) if n.user in out else n
    return list(out.values())


def encode(notices: list[Notice], credentials: list[str] | tuple[str, ...] = ()) -> list[tuple[str, int]]:
    """Message bodies of at most MAX_BODY bytes carrying ``notices`` then ``credentials`` in order,
    each with how many of those items it carries."""
    items = [("c", {"u": n.user, "n": n.modseq, "mb": list(n.mailboxes)}) for n in notices]
    items += [("cr", account) for account in credentials]
    bodies, chunk, size = [], [], 0
    for item in items:
        length = len(json.dumps(item[1], separators=(",", ":"))) + 1
        if chunk and size + length > MAX_BODY - 32:
            bodies.append((_body(chunk), len(chunk)))
            chunk, size = [], 0
        chunk.append(item)
        size += length
    if chunk:
        bodies.append((_body(chunk), len(chunk)))
    return bodies


def _body(items: list[tuple[str, object]]) -> str:
    doc: dict = {"v": VERSION, "c": [v for kind, v in items if kind == "c"]}
    credentials = [v for kind, v in items if kind == "cr"]
    if credentials:
        doc["cr"] = credentials
    return json.dumps(doc, separators=(",", ":"))


def attributes(body: str) -> dict:
    """The SNS MessageAttributes of a body from :func:`encode`: what it carries, for subscription filters
    (a String.Array matches a policy naming any of its elements)."""
    batch = read(body)
    kinds = (["c"] if batch.notices else []) + (["cr"] if batch.credentials else [])
    return {KINDS: {"DataType": "String.Array", "StringValue": json.dumps(kinds)}}


def read(body: str) -> Batch:
    """The notices and credential changes of one message body (an empty Batch when it is not one of ours)."""
    try:
        doc = json.loads(body)
    except (TypeError, ValueError):
        return Batch()
    if not isinstance(doc, dict) or doc.get("v") != VERSION or not isinstance(doc.get("c"), list):
        return Batch()
    notices = []
    for item in doc["c"]:
        if not isinstance(item, dict):
            continue
        user, n = item.get("u"), item.get("n")
        mbs = item.get("mb") if isinstance(item.get("mb"), list) else []
        if isinstance(user, str) and user and isinstance(n, int) and n > 0:
            notices.append(Notice(user, n, tuple(str(m) for m in mbs)))
    cr = doc.get("cr") if isinstance(doc.get("cr"), list) else []
    return Batch(tuple(notices), tuple(a for a in cr if isinstance(a, str) and a))
