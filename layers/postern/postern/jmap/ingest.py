"""A new Email from bytes, in one or more mailboxes: the one way JMAP creates messages.

In:   the call (account: store, user, quota), the account view, the logical message bytes, the
      destination mailbox ids (already checked against the view), IMAP flags and INTERNALDATE.
Out:  the created object's server-set properties (RFC 8621 §4.6/§4.7/§4.8): ``id``, ``blobId``,
      ``threadId``, ``size``. The message is appended through the one ingest path
      (``postern.mailboxes.append``: the first-delivery rule) into the first mailbox, then COPYed
      into the others (``MailStore.copy``, as IMAP COPY does: one email id, one blob).
Fails: the store's QuotaExceeded, KeywordLimit, MailboxNotFound (the callers turn them into
      SetErrors).

Email/set create (``compose``), Email/import (``importer``) and Email/copy (``copy``) all call
:func:`store_new`, and read a new Email's ``mailboxIds``, ``keywords`` and ``receivedAt`` with
:func:`placement`, :func:`keyword_flags` and :func:`received_at` (each raises :class:`Invalid`
naming the property).
"""

from __future__ import annotations

import datetime as _dt

from .. import mailboxes as rules
from ..errors import KeywordLimit, QuotaExceeded
from . import keywords as K
from .errors import set_error


class Invalid(Exception):
    """A property of a new Email the client got wrong (a SetError ``invalidProperties``)."""

    def __init__(self, prop: str, description: str = "invalid value"):
        super().__init__(description)
        self.prop = prop


def placement(call, view, obj: dict) -> list[str]:
    """The new Email's mailbox ids (creation ids resolved), each a mailbox of the account."""
    boxes = obj.get("mailboxIds")
    # RFC 8621 §4.1.1: mailboxIds is a set (values true) of at least one mailbox.
    if not isinstance(boxes, dict) or not boxes or not all(v is True for v in boxes.values()):
        raise Invalid("mailboxIds", "an Email is in at least one mailbox")
    ids = [call.resolve_id(b) for b in boxes]
    if not all(i in view.mailboxes for i in ids):
        raise Invalid("mailboxIds", "no such mailbox")
    return ids


def keyword_flags(obj: dict) -> frozenset:
    """The IMAP flags of the new Email's ``keywords`` (absent or null: none)."""
    kws = obj.get("keywords") or {}
    if not isinstance(kws, dict) or not all(K.valid(k) and v is True for k, v in kws.items()):
        raise Invalid("keywords")
    return K.to_flags(frozenset(), kws)


def received_at(obj: dict) -> float | None:
    """``receivedAt`` (RFC 8620 §1.4 UTCDate) as a POSIX time, or None when not given."""
    if obj.get("receivedAt") is None:
        return None
    try:
        return _dt.datetime.strptime(obj["receivedAt"], "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=_dt.timezone.utc).timestamp()
    except (TypeError, ValueError):
        raise Invalid("receivedAt") from None


def store_new(call, view, raw: bytes, mailbox_ids: list[str], flags, internaldate: float | None) -> dict:
    store, user, quota = call.account.store, call.account.user, call.account.quota
    res = rules.append(store, user, view.mailboxes[mailbox_ids[0]].name, raw, flags=flags,
                       internaldate=internaldate, quota=quota)
    if len(mailbox_ids) > 1:
        mb = store.get_mailbox_by_id(user, res.mailbox_id)
        metas = store.get_messages(mb, [res.uid])
        for other in mailbox_ids[1:]:
            store.copy(mb, metas, view.mailboxes[other].name, quota=quota)
    call.changed()
    return {"id": res.email_id, "blobId": "B" + res.email_id[1:], "threadId": res.thread_id, "size": len(raw)}


def store_new_or_set_error(call, view, raw: bytes, mailbox_ids: list[str], flags,
                           internaldate: float | None) -> dict:
    """:func:`store_new`, with the store's refusals as the SetErrors of RFC 8620 §5.3 / RFC 8621 §4.6
    (Email/import and Email/copy answer per object)."""
    try:
        return store_new(call, view, raw, mailbox_ids, flags, internaldate)
    except QuotaExceeded:
        return set_error("overQuota")
    except KeywordLimit:
        return set_error("tooManyKeywords")
