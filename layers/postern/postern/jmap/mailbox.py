"""Mailbox/get, /changes, /query, /set (RFC 8621 §2) over the mailbox rules.

In:   method arguments; the account view (``index``); names go through
      ``postern.mailboxes`` (validate_name, create, rename, delete, subscribe:
      the rules IMAP uses, written once).
Out:  the method responses.
Fails: MethodError for bad arguments; per-object SetErrors in /set
      (``invalidProperties``, ``notFound``, ``forbidden``, ``mailboxHasChild``,
      ``mailboxHasEmail``).

A Mailbox's ``name`` is the last level of its store name and ``parentId`` the
mailbox one level up (``/`` is the store's delimiter, so a JMAP name may not
contain it). INBOX cannot be renamed or destroyed from JMAP (RFC 3501's
"RENAME INBOX moves its messages" is not what a JMAP client means).
"""

from __future__ import annotations

from .. import mailboxes as rules
from ..errors import KeywordLimit, MailboxExists, MailboxInvalid, MailboxNotFound, QuotaExceeded
from ..store.base import DELIMITER, MailboxInfo
from . import args as A
from .changes import Delta, compute
from .errors import MethodError, invalid_arguments, set_error

PROPERTIES = ("id", "name", "parentId", "role", "sortOrder", "totalEmails", "unreadEmails", "totalThreads",
              "unreadThreads", "myRights", "isSubscribed")
COUNTS = ["totalEmails", "unreadEmails", "totalThreads", "unreadThreads"]


def role(mb: MailboxInfo) -> str | None:
    if mb.name == "INBOX":
        return "inbox"
    return mb.special_use[1:].lower() if mb.special_use else None  # RFC 8621 §2: the IANA role of RFC 6154


def _name(view, mb: MailboxInfo) -> str:
    """The last level, or the whole path below the nearest existing ancestor."""
    names = view.by_name()
    parts = mb.name.split(DELIMITER)
    for i in range(len(parts) - 1, 0, -1):
        if DELIMITER.join(parts[:i]) in names:
            return DELIMITER.join(parts[i:])
    return mb.name


def _parent_id(view, mb: MailboxInfo) -> str | None:
    names = view.by_name()
    parts = mb.name.split(DELIMITER)
    for i in range(len(parts) - 1, 0, -1):
        up = names.get(DELIMITER.join(parts[:i]))
        if up is not None:
            return up.mailbox_id
    return None


def to_object(view, mb: MailboxInfo, props) -> dict:
    total, unread, threads, unread_threads = view.counts(mb.mailbox_id)
    inbox = mb.name == "INBOX"
    full = {
        "id": mb.mailbox_id,
        "name": _name(view, mb),
        "parentId": _parent_id(view, mb),
        "role": role(mb),
        "sortOrder": 0 if not inbox else -1,
        "totalEmails": total,
        "unreadEmails": unread,
        "totalThreads": threads,
        "unreadThreads": unread_threads,
        "myRights": {"mayReadItems": True, "mayAddItems": True, "mayRemoveItems": True, "maySetSeen": True,
                     "maySetKeywords": True, "mayCreateChild": True, "mayRename": not inbox,
                     "mayDelete": not inbox, "maySubmit": True},
        "isSubscribed": mb.name in view.subscribed,
    }
    return {p: full[p] for p in props}


def _props(args: dict, allowed) -> list[str]:
    props = A.strings(args, "properties")
    if props is None:
        return list(allowed)
    bad = [p for p in props if p not in allowed]
    if bad:
        raise invalid_arguments(f"unknown property {bad[0][:60]!r}")
    return list(dict.fromkeys(["id", *props]))


def get(call, args: dict) -> dict:
    A.known(args, {"accountId", "ids", "properties"})
    ids = A.ids(args)
    props = _props(args, PROPERTIES)
    view = call.view()
    wanted = list(view.mailboxes) if ids is None else ids
    found, missing = [], []
    for i in wanted:
        mb = view.mailboxes.get(call.resolve_id(i) or "")
        (found.append(to_object(view, mb, props)) if mb else missing.append(i))
    return {"accountId": call.account.id, "state": view.state_string, "list": found, "notFound": missing}


def changes(call, args: dict) -> dict:
    view = call.view()

    def read(ch, d: Delta) -> None:
        if ch.kind in ("append", "flags", "expunge"):
            d.updated.add(ch.mailbox_id)
            return
        d.counts_only = False
        names = view.by_name()
        for mbid, old, new in ch.names:
            if ch.kind == "destroy":
                d.destroyed.add(mbid)
            elif ch.kind in ("subscribe", "unsubscribe"):
                if (mb := names.get(old or new)) is not None:
                    d.updated.add(mb.mailbox_id)
            elif old:
                d.updated.add(mbid)
            else:
                d.created.add(mbid)

    out, delta = compute(call, args, read, lambda i: i in view.mailboxes)
    out["updatedProperties"] = COUNTS if delta.counts_only and out["updated"] else None
    return out


def _matches(view, mb: MailboxInfo, f: dict) -> bool:
    if "operator" in f:
        conds = f.get("conditions")
        if not isinstance(conds, list) or f["operator"] not in ("AND", "OR", "NOT"):
            raise MethodError("unsupportedFilter", "bad FilterOperator")
        results = [_matches(view, mb, c) for c in conds]
        return {"AND": all, "OR": any, "NOT": lambda r: not any(r)}[f["operator"]](results)
    for k, v in f.items():
        if k == "parentId":
            if _parent_id(view, mb) != v:
                return False
        elif k == "name":
            if not isinstance(v, str) or v.lower() not in _name(view, mb).lower():
                return False
        elif k == "role":
            if role(mb) != v:
                return False
        elif k == "hasAnyRole":
            if (role(mb) is not None) != bool(v):
                return False
        elif k == "isSubscribed":
            if (mb.name in view.subscribed) != bool(v):
                return False
        else:
            raise MethodError("unsupportedFilter", f"unknown filter {str(k)[:60]!r}")
    return True


def query(call, args: dict) -> dict:
    A.known(args, {"accountId", "filter", "sort", "position", "anchor", "anchorOffset", "limit", "calculateTotal",
                   "sortAsTree", "filterAsTree"})
    view = call.view()
    flt = A.obj(args, "filter") or {}
    boxes = [mb for mb in view.mailboxes.values() if _matches(view, mb, flt)]
    sort = args.get("sort") or [{"property": "sortOrder"}, {"property": "name"}]
    if not isinstance(sort, list):
        raise invalid_arguments("sort must be a list")
    for c in reversed(sort):
        prop = c.get("property") if isinstance(c, dict) else None
        if prop not in ("sortOrder", "name"):
            raise MethodError("unsupportedSort", f"cannot sort by {str(prop)[:60]!r}")
        key = (lambda mb: to_object(view, mb, ["sortOrder"])["sortOrder"]) if prop == "sortOrder" else \
              (lambda mb: _name(view, mb).lower())
        boxes.sort(key=key, reverse=c.get("isAscending", True) is False)
    ids = [mb.mailbox_id for mb in boxes]
    return window(call, args, ids, view.state_string)


def window(call, args: dict, ids: list[str], state: str) -> dict:
    """position / anchor / anchorOffset / limit (RFC 8620 §5.5), shared by every /query."""
    position = A.integer(args, "position", 0, minimum=None)
    limit = A.integer(args, "limit", None)
    anchor = args.get("anchor")
    if anchor is not None:
        if anchor not in ids:
            raise MethodError("anchorNotFound")
        position = max(0, ids.index(anchor) + A.integer(args, "anchorOffset", 0, minimum=None))
    elif position < 0:
        position = max(0, len(ids) + position)
    page = ids[position:] if limit is None else ids[position:position + limit]
    out = {"accountId": call.account.id, "queryState": state, "canCalculateChanges": False,
           "position": position, "ids": page}
    if A.boolean(args, "calculateTotal"):
        out["total"] = len(ids)
    if limit is not None:
        out["limit"] = limit
    return out


# --- /set -----------------------------------------------------------------------------------
def _full_name(call, view, name, parent_id) -> str:
    if not isinstance(name, str) or not name or DELIMITER in name:
        raise _Invalid(["name"], f"a name is text without {DELIMITER!r}")
    if parent_id is None:
        return rules.validate_name(name)
    parent = view.mailboxes.get(call.resolve_id(parent_id) or "") if isinstance(parent_id, str) else None
    if parent is None:
        raise _Invalid(["parentId"], "no such parent")
    return rules.validate_name(parent.name + DELIMITER + name)


class _Invalid(Exception):
    def __init__(self, props: list[str], description: str):
        super().__init__(description)
        self.props = props


def _error(exc: Exception) -> dict:
    if isinstance(exc, _Invalid):
        return set_error("invalidProperties", str(exc), properties=exc.props)
    if isinstance(exc, MailboxInvalid):
        return set_error("invalidProperties", "invalid mailbox name", properties=["name"])
    if isinstance(exc, MailboxExists):
        return set_error("invalidProperties", "a mailbox of that name exists", properties=["name"])
    if isinstance(exc, MailboxNotFound):
        return set_error("notFound")
    if isinstance(exc, (QuotaExceeded, KeywordLimit)):
        return set_error("overQuota")
    raise exc


def _check_state(view, args: dict) -> None:
    want = args.get("ifInState")
    if want is not None and want != view.state_string:
        raise MethodError("stateMismatch")  # RFC 8620 §5.3


def set_(call, args: dict) -> dict:
    A.known(args, {"accountId", "ifInState", "create", "update", "destroy", "onDestroyRemoveEmails"})
    create, update = A.obj(args, "create") or {}, A.obj(args, "update") or {}
    destroy = A.ids(args, "destroy", limit=10**9) or []
    A.set_limit(create, update, destroy)
    remove_emails = A.boolean(args, "onDestroyRemoveEmails")
    view = call.view()
    _check_state(view, args)
    old_state = view.state_string
    store, user = call.account.store, call.account.user
    out = {"accountId": call.account.id, "oldState": old_state, "created": {}, "updated": {}, "destroyed": [],
           "notCreated": {}, "notUpdated": {}, "notDestroyed": {}}
    for cid, obj in create.items():
        try:
            if not isinstance(obj, dict):
                raise _Invalid([], "not an object")
            bad = [k for k in obj if k not in ("name", "parentId", "isSubscribed", "role", "sortOrder")]
            if bad or obj.get("role") is not None:
                raise _Invalid(bad or ["role"], "property cannot be set")
            full = _full_name(call, view, obj.get("name"), obj.get("parentId"))
            mb = rules.create(store, user, full)
            if obj.get("isSubscribed", True):
                rules.subscribe(store, user, full)
            call.changed()
            view = call.view()
            call.created_ids[cid] = mb.mailbox_id
            out["created"][cid] = to_object(view, view.mailboxes[mb.mailbox_id],
                                            ["id", "totalEmails", "unreadEmails", "totalThreads", "unreadThreads",
                                             "myRights", "isSubscribed", "sortOrder", "role"])
        except (_Invalid, MailboxInvalid, MailboxExists, MailboxNotFound, QuotaExceeded, KeywordLimit) as exc:
            out["notCreated"][cid] = _error(exc)
    for raw_id, patch in update.items():
        mbid = call.resolve_id(raw_id) or raw_id
        try:
            mb = view.mailboxes.get(mbid)
            if mb is None:
                raise MailboxNotFound()
            if not isinstance(patch, dict):
                raise _Invalid([], "not an object")
            cur = to_object(view, mb, PROPERTIES)
            for k, v in patch.items():
                if k not in ("name", "parentId", "isSubscribed") and cur.get(k, object()) != v:
                    raise _Invalid([k], "property cannot be changed")
            name, parent = patch.get("name", cur["name"]), patch.get("parentId", cur["parentId"])
            current = mb.name
            if name != cur["name"] or parent != cur["parentId"]:
                if mb.name == "INBOX":
                    raise _Forbidden("INBOX cannot be renamed")
                target = view.mailboxes.get(call.resolve_id(parent) or "") if parent is not None else None
                if target is not None and (target.name + DELIMITER).startswith(mb.name + DELIMITER):
                    raise _Invalid(["parentId"], "a mailbox cannot move into itself")
                current = _full_name(call, view, name, parent)
                rules.rename(store, user, mb.name, current)
                if cur["isSubscribed"]:  # IMAP subscriptions are names (RFC 3501 §6.3.6): JMAP's follow the id
                    rules.unsubscribe(store, user, mb.name)
                    rules.subscribe(store, user, current)
            if "isSubscribed" in patch and patch["isSubscribed"] != cur["isSubscribed"]:
                (rules.subscribe if patch["isSubscribed"] else rules.unsubscribe)(store, user, current)
            call.changed()
            view = call.view()
            out["updated"][mbid] = None
        except _Forbidden as exc:
            out["notUpdated"][raw_id] = set_error("forbidden", str(exc))
        except (_Invalid, MailboxInvalid, MailboxExists, MailboxNotFound, QuotaExceeded, KeywordLimit) as exc:
            out["notUpdated"][raw_id] = _error(exc)
    for raw_id in destroy:
        mbid = call.resolve_id(raw_id) or raw_id
        mb = view.mailboxes.get(mbid)
        if mb is None:
            out["notDestroyed"][raw_id] = set_error("notFound")
            continue
        if mb.name == "INBOX":
            out["notDestroyed"][raw_id] = set_error("forbidden", "INBOX cannot be destroyed")
            continue
        if any(other.name.startswith(mb.name + DELIMITER) for other in view.mailboxes.values()):
            out["notDestroyed"][raw_id] = set_error("mailboxHasChild")
            continue
        total = view.counts(mbid)[0]
        if total and not remove_emails:
            out["notDestroyed"][raw_id] = set_error("mailboxHasEmail")
            continue
        try:
            # expunge first (change records Email/changes can read), then the mailbox goes
            live = store.get_mailbox_by_id(user, mbid)
            store.expunge(live, list(store.list_messages(live, light=True)))
            rules.delete(store, user, mb.name)
        except MailboxNotFound:
            out["notDestroyed"][raw_id] = set_error("notFound")
            continue
        finally:
            call.changed()
        view = call.view()
        out["destroyed"].append(mbid)
    out["newState"] = call.view().state_string
    return out


class _Forbidden(Exception):
    pass
