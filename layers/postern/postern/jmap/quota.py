"""Quota/get (RFC 9425): the account's mail storage, as the store counts it for delivery.

One Quota object, ``octets`` in ``account`` scope for ``Mail``: ``used`` is
the store's count (``MailStore.usage``, what delivery and APPEND check
against), ``hardLimit`` the directory's quota (``Directory.quota_of``); an
account without a limit reports the largest UnsignedInt, as RFC 9425 §5
requires a hardLimit. The state is the account's change number: ``used``
moves only with a change of the mail store."""

from __future__ import annotations

from . import args as A

ID = "mail-octets"
UNLIMITED = 2**53 - 1  # RFC 8620 §1.3 UnsignedInt maximum


def get(call, args: dict) -> dict:
    A.known(args, {"accountId", "ids", "properties"})
    ids = A.ids(args)
    view = call.view()
    acct = call.account
    obj = {"id": ID, "resourceType": "octets", "used": acct.store.usage(acct.user),
           "hardLimit": acct.quota or UNLIMITED, "scope": "account", "name": f"Mail of {acct.user}",
           "types": ["Mail"], "warnLimit": int(acct.quota * 0.9) if acct.quota else None, "softLimit": None,
           "description": None}
    wanted = [ID] if ids is None else ids
    return {"accountId": acct.id, "state": view.state_string, "list": [obj for i in wanted if i == ID],
            "notFound": [i for i in wanted if i != ID]}
