"""The change feed's notices: what FeedFunction publishes and each gateway task reads (written once).

In:   DynamoDB stream records of the mail table (Lambda's event shape, attribute
      values in DynamoDB JSON), for :func:`notice_of`; notices, for :func:`encode`;
      an SNS message body (raw delivery to SQS), for :func:`decode`.
Out:  :class:`Notice` (account, the mailbox ids the change touched, the change
      number), and message bodies of at most :data:`MAX_BODY` bytes, each
      ``{"v": 1, "c": [{"u": account, "n": change number, "mb": [mailbox ids]}, ...]}``.
Fails: :func:`notice_of` returns None for a record that is not a new change-log
      record (the Lambda event filter already drops those; a second check costs
      nothing); :func:`decode` returns [] for a body it cannot read (a notice is a
      hint to read the log, never the data: dropping one delays a client to the
      safety-net poll, it loses nothing).

A notice carries no content and no flags: a reader learns *that* account A has
change n, and reads the changes after its own last number from the log
(``MailStore.follow``), in order, exactly once (postern_gateway/imap/watcher.py).
Several changes of one account in one batch become one notice with the highest
number. Record format: postern/store/records.py ("Change log record").
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from . import keys

VERSION = 1
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


def coalesce(notices: list[Notice]) -> list[Notice]:
    """One notice per account (the highest number, every mailbox), in order of first appearance."""
    out: dict[str, Notice] = {}
    for n in notices:
        out[n.user] = out[n.user].merge(n) if n.user in out else n
    return list(out.values())


def encode(notices: list[Notice]) -> list[tuple[str, int]]:
    """Message bodies of at most MAX_BODY bytes carrying ``notices`` in order, each with its count."""
    bodies, chunk, size = [], [], 0
    for n in notices:
        item = {"u": n.user, "n": n.modseq, "mb": list(n.mailboxes)}
        length = len(json.dumps(item, separators=(",", ":"))) + 1
        if chunk and size + length > MAX_BODY - 32:
            bodies.append((_body(chunk), len(chunk)))
            chunk, size = [], 0
        chunk.append(item)
        size += length
    if chunk:
        bodies.append((_body(chunk), len(chunk)))
    return bodies


def _body(items: list[dict]) -> str:
    return json.dumps({"v": VERSION, "c": items}, separators=(",", ":"))


def decode(body: str) -> list[Notice]:
    """The notices of one message body ([] when it is not one of ours)."""
    try:
        doc = json.loads(body)
    except (TypeError, ValueError):
        return []
    if not isinstance(doc, dict) or doc.get("v") != VERSION or not isinstance(doc.get("c"), list):
        return []
    out = []
    for item in doc["c"]:
        if not isinstance(item, dict):
            continue
        user, n = item.get("u"), item.get("n")
        mbs = item.get("mb") if isinstance(item.get("mb"), list) else []
        if isinstance(user, str) and user and isinstance(n, int) and n > 0:
            out.append(Notice(user, n, tuple(str(m) for m in mbs)))
    return out
