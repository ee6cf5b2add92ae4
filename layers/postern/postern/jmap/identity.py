"""Identity/get, /changes, /set (RFC 8621 §6): who the user sends as, and how they sign.

In:   ``Account.senders`` (``Directory.addresses_of``: the user's own address and the
      aliases naming it - the submission sender rule's addresses) and
      ``Account.identity_store`` (:class:`postern.identities.IdentityStore`: names,
      reply-to, bcc and signatures the user set, and the identities they created).
Out:  one identity per sender address (id derived from the address, ``mayDelete``
      false: it exists because the address does), plus every identity the user created
      (``mayDelete`` true); :func:`identities` is what EmailSubmission checks an
      ``identityId`` against.
Fails: SetErrors: ``forbiddenFrom`` (creating an identity for an address the user does not
      own: :meth:`postern.directory.Directory.owns`, the rule SMTP submission and
      EmailSubmission apply - written once), ``invalidProperties`` (a bad value, a change
      of the immutable ``email``), ``forbidden`` (destroying an address's own identity),
      ``notFound``, ``overQuota`` (more than ``MAX_IDENTITIES``); ``accountReadOnly``-like
      ``forbidden`` for every write when the deployment gives no identity store.
      ``Identity/changes`` answers ``cannotCalculateChanges`` for a state older than the
      log the store keeps (``MAX_LOG`` changes).

The state is the store's change number for the user's identities. The default identities
follow the directory's aliases; adding or removing an alias does not move the state (a
client sees the new identity on its next Identity/get).
"""

from __future__ import annotations

import hashlib
import secrets

from ..address import parse_address
from ..directory import Directory
from ..errors import AlreadyExists, InvalidAddress, StoreUnavailable
from ..identities import MAX_IDENTITIES, Stored
from ..items import ConditionFailed
from . import args as A
from .errors import MethodError, invalid_arguments, set_error

PROPERTIES = ("id", "name", "email", "replyTo", "bcc", "textSignature", "htmlSignature", "mayDelete")
WRITABLE = ("name", "replyTo", "bcc", "textSignature", "htmlSignature")
MAX_NAME = 256
MAX_SIGNATURE = 64 * 1024
MAX_ADDRESSES = 50


def identity_id(address: str) -> str:
    return "i" + hashlib.sha256(address.lower().encode("utf-8")).hexdigest()[:16]


def _stored(account) -> Stored:
    return account.identity_store.load(account.user) if account.identity_store is not None else Stored()


def identities(account, stored: Stored | None = None) -> dict[str, dict]:
    """Every identity of the account by id (the defaults first, in address order)."""
    stored = _stored(account) if stored is None else stored
    out: dict[str, dict] = {}
    for a in sorted({account.user, *account.senders}):
        iid = identity_id(a)
        base = {"id": iid, "name": account.name or "", "email": a, "replyTo": None, "bcc": None,
                "textSignature": "", "htmlSignature": "", "mayDelete": False}
        out[iid] = {**base, **{k: v for k, v in stored.identities.get(iid, {}).items() if k in WRITABLE}}
    for iid, props in stored.identities.items():
        if iid not in out and props.get("email"):
            out[iid] = {"id": iid, "name": "", "email": props["email"], "replyTo": None, "bcc": None,
                        "textSignature": "", "htmlSignature": "", "mayDelete": True,
                        **{k: v for k, v in props.items() if k in WRITABLE}}
    return out


def get(call, args: dict) -> dict:
    A.known(args, {"accountId", "ids", "properties"})
    ids = A.ids(args)
    props = A.strings(args, "properties")
    if props is not None and any(p not in PROPERTIES for p in props):
        raise invalid_arguments("unknown property")
    stored = _stored(call.account)
    every = identities(call.account, stored)
    wanted = list(every) if ids is None else ids
    keep = list(dict.fromkeys(["id", *props])) if props is not None else list(PROPERTIES)
    return {"accountId": call.account.id, "state": str(stored.state),
            "list": [{p: every[i][p] for p in keep} for i in wanted if i in every],
            "notFound": [i for i in wanted if i not in every]}


def changes(call, args: dict) -> dict:
    A.known(args, {"accountId", "sinceState", "maxChanges"})
    since = A.state(args)
    max_changes = A.integer(args, "maxChanges", None, minimum=1)
    stored = _stored(call.account)
    if since > stored.state:
        raise MethodError("cannotCalculateChanges", "sinceState is newer than this server's state")
    entries = [e for e in stored.log if int(e[0]) > since]
    if since < stored.state and (not entries or int(entries[0][0]) != since + 1):
        raise MethodError("cannotCalculateChanges", "that state is older than the changes kept")
    kinds: dict[str, str] = {}
    reached, more = since, False
    for state, iid, kind in entries:
        if max_changes is not None and iid not in kinds and len(kinds) >= max_changes:
            more = True
            break
        first = kinds.get(iid)
        if kind == "destroyed":
            kinds[iid] = "gone" if first == "created" else "destroyed"
        elif first is None:
            kinds[iid] = kind
        reached = int(state)
    return {"accountId": call.account.id, "oldState": str(since), "newState": str(reached), "hasMoreChanges": more,
            "created": sorted(i for i, k in kinds.items() if k == "created"),
            "updated": sorted(i for i, k in kinds.items() if k == "updated"),
            "destroyed": sorted(i for i, k in kinds.items() if k == "destroyed")}


# --- /set -----------------------------------------------------------------------------------------
class _Invalid(Exception):
    def __init__(self, error: dict):
        super().__init__(error["type"])
        self.error = error


def _bad(prop: str, why: str) -> _Invalid:
    return _Invalid(set_error("invalidProperties", why, properties=[prop]))


def _addresses(prop: str, value):
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > MAX_ADDRESSES:
        raise _bad(prop, f"a list of at most {MAX_ADDRESSES} EmailAddress objects, or null")
    out = []
    for a in value:
        if not isinstance(a, dict) or set(a) - {"name", "email"} or not isinstance(a.get("email"), str) or \
                not isinstance(a.get("name"), str | None) or len(a.get("name") or "") > MAX_NAME:
            raise _bad(prop, "an EmailAddress is {name, email}")
        try:
            parse_address(a["email"])
        except InvalidAddress:
            raise _bad(prop, f"not an address: {a['email'][:100]!r}") from None
        out.append({"name": a.get("name"), "email": a["email"]})
    return out


def _values(obj: dict) -> dict:
    """The writable properties of a create or patch, checked."""
    out = {}
    for k, v in obj.items():
        if k == "name":
            if not isinstance(v, str) or len(v) > MAX_NAME or any(c in v for c in "\r\n\x00"):
                raise _bad(k, f"one line of at most {MAX_NAME} characters")
            out[k] = v
        elif k in ("replyTo", "bcc"):
            out[k] = _addresses(k, v)
        elif k in ("textSignature", "htmlSignature"):
            v = "" if v is None else v  # null for "no signature" (jmapc sends it): the default, ""
            if not isinstance(v, str) or len(v) > MAX_SIGNATURE:
                raise _bad(k, f"a string of at most {MAX_SIGNATURE} characters")
            out[k] = v
        else:
            raise _bad(k, "not a property the client may set")
    return out


def set_(call, args: dict) -> dict:
    A.known(args, {"accountId", "ifInState", "create", "update", "destroy"})
    acct = call.account
    create, update = A.obj(args, "create") or {}, A.obj(args, "update") or {}
    destroy = A.ids(args, "destroy") or []
    A.set_limit(create, update, destroy)
    if acct.identity_store is None and (create or update or destroy):
        raise MethodError("forbidden", "identities cannot be changed here")
    stored = _stored(acct)
    if args.get("ifInState") is not None and args["ifInState"] != str(stored.state):
        raise MethodError("stateMismatch")
    owned = set(acct.senders) | {acct.user}
    kept = {k: dict(v) for k, v in stored.identities.items()}
    changed: list[tuple[str, str]] = []
    out = {"accountId": acct.id, "oldState": str(stored.state), "created": {}, "notCreated": {}, "updated": {},
           "notUpdated": {}, "destroyed": [], "notDestroyed": {}}
    for cid, obj in create.items():
        try:
            if not isinstance(obj, dict):
                raise _Invalid(set_error("invalidProperties", "not an object"))
            email = obj.get("email")
            if not isinstance(email, str):
                raise _bad("email", "email is required")
            if not Directory.owns(owned, email):  # the submission sender rule (SMTP and EmailSubmission)
                raise _Invalid(set_error("forbiddenFrom", f"{email[:200]} is not one of your addresses"))
            values = _values({k: v for k, v in obj.items() if k not in ("email", "mayDelete", "id")})
            if obj.get("id") is not None or obj.get("mayDelete") not in (None, True):  # server-set (RFC 8620 §5.3)
                raise _bad("id" if obj.get("id") is not None else "mayDelete", "set by the server")
            if len(kept) >= MAX_IDENTITIES:
                raise _Invalid(set_error("overQuota", f"at most {MAX_IDENTITIES} identities"))
            email = parse_address(email).canonical if "@" in email else email
            iid = "i" + secrets.token_hex(8)
            kept[iid] = {"email": email, **values}
            changed.append((iid, "created"))
            call.created_ids[cid] = iid
            # the whole object (RFC 8620 §5.3 asks for the server-set and defaulted properties at least;
            # clients such as jmapc parse created identities as complete objects)
            out["created"][cid] = {"id": iid, "name": "", "email": email, "replyTo": None, "bcc": None,
                                   "textSignature": "", "htmlSignature": "", **values, "mayDelete": True}
        except _Invalid as exc:
            out["notCreated"][cid] = exc.error
    every = identities(acct, Stored(kept))  # with this request's creations (#creationId updates)
    for iid, patch in update.items():
        iid = call.resolve_id(iid) or iid
        try:
            current = every.get(iid)
            if current is None:
                raise _Invalid(set_error("notFound"))
            if not isinstance(patch, dict):
                raise _Invalid(set_error("invalidProperties", "not an object"))
            for k in ("id", "email", "mayDelete"):
                if k in patch and patch[k] != current[k]:
                    raise _bad(k, f"{k} cannot be changed")
            values = _values({k: v for k, v in patch.items() if k not in ("id", "email", "mayDelete")})
            kept[iid] = {**kept.get(iid, {}), **values}
            changed.append((iid, "updated"))
            out["updated"][iid] = None
        except _Invalid as exc:
            out["notUpdated"][iid] = exc.error
    for iid in destroy:
        iid = call.resolve_id(iid) or iid
        current = every.get(iid)
        if current is None:
            out["notDestroyed"][iid] = set_error("notFound")
        elif not current["mayDelete"]:
            out["notDestroyed"][iid] = set_error("forbidden", "the identity of one of your addresses stays")
        else:
            kept.pop(iid, None)
            changed.append((iid, "destroyed"))
            out["destroyed"].append(iid)
    try:
        saved = acct.identity_store.save(acct.user, Stored(kept, stored.state, stored.log), changed) \
            if changed else stored
    except (ConditionFailed, AlreadyExists):
        raise StoreUnavailable("identities changed meanwhile") from None  # -> serverUnavailable: try again
    out["newState"] = str(saved.state)
    return out
