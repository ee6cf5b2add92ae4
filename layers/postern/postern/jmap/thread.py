"""Thread/get (RFC 8621 §3): the Emails of a thread in receivedAt order.

Threads are the store's thread ids (assigned at append from Message-ID,
In-Reply-To and References; ``postern.store.threads``)."""

from __future__ import annotations

from . import args as A


def get(call, args: dict) -> dict:
    A.known(args, {"accountId", "ids", "properties"})
    ids = A.ids(args)
    view = call.view()
    threads = view.threads if ids is None else view.thread_emails(ids)  # by id: the members items, not the account
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


def changes(call, args: dict) -> dict:
    """Thread/changes: a Thread changes when an Email joins or leaves it (keywords are not the Thread's).

    A thread all of whose Emails arrived since the state is ``created``; one that lost its last Email
    ``destroyed`` (``changes.compute`` asks whether it still exists); any other touched thread
    ``updated``. An expunge written before the change log carried thread ids cannot be read: the
    client resynchronises (cannotCalculateChanges)."""
    from .changes import Delta, Skip, compute

    view = call.view()
    arrived: dict[str, set[str]] = {}

    def read(ch, d: Delta) -> None:
        if ch.kind == "append":
            for m in ch.messages:
                d.updated.add(m.thread_id)
                arrived.setdefault(m.thread_id, set()).add(m.email_id)
        elif ch.kind == "expunge":
            for m in ch.messages:
                if not m.thread_id:
                    raise Skip()
                d.updated.add(m.thread_id)
        elif ch.kind == "destroy":
            raise Skip()  # the messages of a deleted mailbox leave without a change of their own

    threads = view.threads
    out, _ = compute(call, args, read, lambda t: t in threads)
    born = [t for t in out["updated"] if t in arrived and set(threads.get(t, ())) <= arrived[t]]
    if born:
        out["created"] = sorted(set(out["created"]) | set(born))
        out["updated"] = [t for t in out["updated"] if t not in born]
    return out
