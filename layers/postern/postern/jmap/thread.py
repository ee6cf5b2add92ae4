"""Thread/get (RFC 8621 §3): the Emails of a thread in receivedAt order.

Threads are the store's thread ids (assigned at append from Message-ID,
In-Reply-To and References; ``postern.store.threads``)."""

from __future__ import annotations

from . import args as A


def get(call, args: dict) -> dict:
    A.known(args, {"accountId", "ids", "properties"})
    ids = A.ids(args)
    view = call.view()
    threads = view.threads
    wanted = list(threads) if ids is None else ids
    if ids is None and len(wanted) > A.CORE_LIMITS["maxObjectsInGet"]:
        from .errors import MethodError

        raise MethodError("requestTooLarge", "too many Threads to return them all: give ids")
    found, missing = [], []
    for i in wanted:
        if i in threads:
            found.append({"id": i, "emailIds": threads[i]})
        else:
            missing.append(i)
    return {"accountId": call.account.id, "state": view.state_string, "list": found, "notFound": missing}
