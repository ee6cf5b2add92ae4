"""Email/import (RFC 8621 §4.8): a message the client uploaded becomes an Email, bytes unchanged.

In:   ``emails``: creation id -> ``{blobId, mailboxIds, keywords, receivedAt}``;
      the blob through ``blobs.read`` (an upload, or a message this account
      already holds).
Out:  the created Emails (id, blobId, threadId, size), stored by
      ``ingest.store_new`` with the keywords as flags and receivedAt as
      INTERNALDATE.
Fails: SetErrors ``blobNotFound``, ``invalidProperties``, ``overQuota``,
      ``tooLarge`` (more than ``Account.max_size``, the SMTP size limit); ``stateMismatch`` for ``ifInState``.
"""

from __future__ import annotations


from . import args as A
from . import blobs
from .errors import MethodError, set_error
from .ingest import Invalid, keyword_flags, placement, received_at, store_new_or_set_error



def _invalid(prop: str, description: str = "invalid value") -> dict:
    return set_error("invalidProperties", description, properties=[prop])


def _one(call, view, obj) -> dict:
    if not isinstance(obj, dict):
        return _invalid("", "not an object")
    try:
        ids, flags, when = placement(call, view, obj), keyword_flags(obj), received_at(obj)
    except Invalid as exc:
        return _invalid(exc.prop, str(exc))
    got = blobs.read(call, obj.get("blobId"))
    if got is None:
        return set_error("blobNotFound", notFound=[str(obj.get("blobId"))[:255]])
    raw = got[0]
    if len(raw) > call.account.max_size:  # the SMTP size limit (Account.max_size)
        return set_error("tooLarge", maxSize=call.account.max_size)
    return store_new_or_set_error(call, view, raw, ids, flags, when)


def import_(call, args: dict) -> dict:
    A.known(args, {"accountId", "ifInState", "emails"})
    emails = A.obj(args, "emails") or {}
    A.set_limit(emails, None, None)
    view = call.view()
    if args.get("ifInState") is not None and args["ifInState"] != view.state_string:
        raise MethodError("stateMismatch")
    out = {"accountId": call.account.id, "oldState": view.state_string, "created": {}, "notCreated": {}}
    for cid, obj in emails.items():
        made = _one(call, view, obj)
        if "type" in made:
            out["notCreated"][cid] = made
        else:
            out["created"][cid] = made
            call.created_ids[cid] = made["id"]
    call.changed()
    out["newState"] = call.view().state_string
    return out
