"""Email/copy (RFC 8620 §5.4, RFC 8621 §4.7): Emails from another account into this one.

In:   ``fromAccountId``, ``ifFromInState``, ``accountId``, ``ifInState``, ``create`` (creation id ->
      ``{id: the source Email, mailboxIds, keywords?, receivedAt?}``), ``onSuccessDestroyOriginal``,
      ``destroyFromIfInState``. The source account comes from :attr:`Account.peers` (accounts this
      login may read besides its own).
Out:  ``Email/copy`` with ``created`` (``{id, blobId, threadId, size}``) / ``notCreated``; with
      ``onSuccessDestroyOriginal``, an implicit ``Email/set`` destroying the copied originals in
      the source account (§5.4), as that method answers it.
Fails: ``invalidArguments`` when ``fromAccountId`` is this account (§5.4: it MUST differ: within
      one account an Email changes mailboxes with Email/set, keeping its id, as IMAP COPY keeps
      the EMAILID); ``fromAccountNotFound`` for an account this login cannot read (in Postern a
      login holds one account, so every other id is not found); ``stateMismatch``; SetErrors
      ``notFound`` (no such source Email), ``invalidProperties``, ``overQuota``, ``tooManyKeywords``.

The copy is a new message in this account with the source's bytes (trace prefix included: the
logical message), stored by ``ingest.store_new``: the one ingest path, then COPY into further
mailboxes, as Email/import and Email/set create store theirs. Keywords and receivedAt default
to the source's (§5.4: properties not given are copied).
"""

from __future__ import annotations


from . import args as A
from .errors import MethodError, invalid_arguments, set_error
from .ingest import Invalid, keyword_flags, placement, received_at, store_new_or_set_error

ALLOWED = {"id", "mailboxIds", "keywords", "receivedAt"}


def _invalid(prop: str, description: str = "invalid value") -> dict:
    return set_error("invalidProperties", description, properties=[prop])


def _one(call, view, source, src_view, obj) -> dict:
    if not isinstance(obj, dict):
        return _invalid("", "not an object")
    bad = sorted(set(obj) - ALLOWED)
    if bad:
        return _invalid(bad[0], "only mailboxIds, keywords and receivedAt can be set on a copy")
    src_id = obj.get("id")
    entry = src_view.entries([src_id]).get(src_id) if isinstance(src_id, str) else None
    if entry is None:
        return set_error("notFound", "no such Email in fromAccountId")
    try:
        ids = placement(call, view, obj)
        flags = keyword_flags(obj) if "keywords" in obj else entry.flags - {"\\Deleted"}
        when = received_at(obj)
    except Invalid as exc:
        return _invalid(exc.prop, str(exc))
    if when is None:
        when = entry.received
    raw = source.store.read(src_view.full(entry))
    return store_new_or_set_error(call, view, raw, ids, flags, when)


def copy(call, args: dict) -> list[tuple[str, dict]]:
    from .account import Call

    A.known(args, {"fromAccountId", "ifFromInState", "accountId", "ifInState", "create",
                   "onSuccessDestroyOriginal", "destroyFromIfInState"})
    from_id = args.get("fromAccountId")
    if not isinstance(from_id, str):
        raise invalid_arguments("fromAccountId is required")
    if from_id == call.account.id:
        raise invalid_arguments("fromAccountId must differ from accountId (RFC 8620 §5.4): within one account "
                                "use Email/set mailboxIds")
    source = call.account.peers(from_id) if call.account.peers else None
    if source is None:
        raise MethodError("fromAccountNotFound")
    create = A.obj(args, "create") or {}
    A.set_limit(create, None, None)
    destroy_original = A.boolean(args, "onSuccessDestroyOriginal")
    src_call = Call(source)
    src_view = src_call.view()
    if args.get("ifFromInState") is not None and args["ifFromInState"] != src_view.state_string:
        raise MethodError("stateMismatch", "ifFromInState")
    view = call.view()
    if args.get("ifInState") is not None and args["ifInState"] != view.state_string:
        raise MethodError("stateMismatch")
    out = {"fromAccountId": from_id, "accountId": call.account.id, "oldState": view.state_string,
           "created": {}, "notCreated": {}}
    copied: list[str] = []
    for cid, obj in create.items():
        made = _one(call, call.view(), source, src_view, obj)
        if "type" in made:
            out["notCreated"][cid] = made
        else:
            out["created"][cid] = made
            call.created_ids[cid] = made["id"]
            copied.append(obj["id"])
    out["newState"] = call.view().state_string
    responses = [("Email/copy", out)]
    if destroy_original and copied:
        from .email import set_

        destroy = {"accountId": source.id, "destroy": copied}
        if args.get("destroyFromIfInState") is not None:
            destroy["ifInState"] = args["destroyFromIfInState"]
        try:
            responses.append(("Email/set", set_(src_call, destroy)))
        except MethodError as exc:
            responses.append(("error", exc.response()))
    return responses
