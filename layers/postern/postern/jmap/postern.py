"""The Postern capability (``session.POSTERN``, ``https://postern.dev/jmap``): what Postern offers beyond the RFCs.

Methods (the README section "The Postern capability" documents them for client authors):

``Password/change`` ``{accountId, oldPassword, newPassword}`` -> ``{accountId}``
    The user changes their own password: :func:`postern.credentials.change_password`
    (the lockout checked before any hash, the policy ``postern user passwd`` applies,
    and a new credential generation that revokes every bearer token of the account).
    Errors: ``forbidden`` (the old password is wrong), ``invalidArguments`` (the new
    password breaks the policy; the description says why), ``rateLimit`` (locked out
    after failed attempts; try later), ``accountNotSupportedByMethod`` (no password
    change in this deployment).

``Filter/get`` / ``Filter/set`` - the simple filters the webmail offers: a message whose
    ``field`` (``from``, ``to`` - To or Cc - or ``subject``) ``match``-es (``contains``
    or ``is``) ``value`` is filed into ``folder`` (a mailbox name, ``/`` between levels,
    created when missing). They are the managed Sieve script's filter part, written
    through :meth:`postern.sieve.managed.Managed.set_filters` - the CLI's and
    VacationResponse's code - and run before the user's own active script. Order is
    the order created; ids are stored with the filters (immutable, RFC 8620). SetErrors:
    ``invalidProperties`` (what ``check_filter`` refuses), ``notFound``.

``List/unsubscribe`` ``{accountId, emailId}`` -> ``{accountId, emailId, status}`` - the one-click
    unsubscribe of RFC 8058, made by the server for the user (a browser app may not POST to the
    list's origin, and the user's address never leaves with a click): the Email's own
    List-Unsubscribe / List-Unsubscribe-Post fields, read from the stored message (never a URL
    from the client), must offer it and be covered by a valid DKIM signature; then
    :func:`postern.unsubscribe.post` POSTs ``List-Unsubscribe=One-Click`` to its https URI (public
    addresses only, no redirect followed). ``status`` is the list's 2xx answer. Errors:
    ``invalidArguments`` (no such Email, or it offers no one-click unsubscribe), ``forbidden`` (the
    fields are not DKIM-signed), ``serverFail`` (the list's server refused, failed or is not
    public; the description says which), ``accountNotSupportedByMethod``.

``Report/get`` ``{accountId, ids?: ["dmarc", "tls"], domain?, days?}`` -> ``{accountId,
    state, list: [summary], notFound}`` - for accounts with the admin role only
    (``postern user admin ADDRESS``), the summary ``postern report dmarc|tls`` prints
    (:func:`postern.reports.summaries.summary_for`, the same code): reporters, pass/fail
    counts, failing IPs, refused reports. Errors: ``forbidden`` for other accounts,
    ``invalidArguments`` (bad days, a domain that is no name or not served here).
"""

from __future__ import annotations

import hashlib
import json
import secrets

from ..credentials import PasswordRefused, WrongPassword
from ..errors import AuthLocked, InvalidAddress, NoSuchDomain
from ..unsubscribe import UnsubscribeError
from ..sieve.managed import FIELDS, MATCHES, Filter, Managed, ManagedRuleError, check_filter
from . import args as A
from .errors import MethodError, invalid_arguments, set_error

REPORT_KINDS = ("dmarc", "tls")


def account_capability(account) -> dict:
    """What this account may do with the capability (the session's accountCapabilities value)."""
    return {"passwordChange": account.change_password is not None, "filters": account.rules is not None,
            "filterFields": list(FIELDS), "filterMatches": list(MATCHES), "reports": account.reports is not None,
            "unsubscribe": account.unsubscribe is not None}


# --- Password/change ----------------------------------------------------------------------------
def change_password(call, args: dict) -> dict:
    A.known(args, {"accountId", "oldPassword", "newPassword"})
    acct = call.account
    if acct.change_password is None:
        raise MethodError("accountNotSupportedByMethod", "passwords are changed by the administrator here")
    old, new = args.get("oldPassword"), args.get("newPassword")
    if not isinstance(old, str) or not isinstance(new, str):
        raise invalid_arguments("oldPassword and newPassword are strings")
    try:
        acct.change_password(old, new)
    except WrongPassword:
        raise MethodError("forbidden", "the current password is wrong") from None
    except PasswordRefused as exc:
        raise invalid_arguments(f"newPassword: {exc.text}") from None
    except AuthLocked as exc:
        raise MethodError("rateLimit", exc.text) from None
    return {"accountId": acct.id}


# --- List/unsubscribe ------------------------------------------------------------------------------
def list_unsubscribe(call, args: dict) -> dict:
    A.known(args, {"accountId", "emailId"})
    acct = call.account
    if acct.unsubscribe is None:
        raise MethodError("accountNotSupportedByMethod", "one-click unsubscribe is not offered here")
    given = args.get("emailId")
    if not isinstance(given, str):
        raise invalid_arguments("emailId is an Email id")
    email_id = call.resolve_id(given) or ""
    view = call.view()
    entry = view.entries([email_id]).get(email_id)
    if entry is None:
        raise invalid_arguments("no such Email")
    raw = acct.store.read(view.full(entry))  # the stored fields: the URL is never the client's
    try:
        status = acct.unsubscribe(raw)
    except UnsubscribeError as exc:
        raise MethodError(exc.jmap_type, exc.text) from None
    return {"accountId": acct.id, "emailId": email_id, "status": status}


# --- Filter/get, Filter/set ------------------------------------------------------------------------
FILTER_PROPS = ("id", "field", "match", "value", "folder")


def filter_id(f: Filter) -> str:
    """The filter's stored id; one derived from its content for a filter stored before ids were."""
    if f.id:
        return f.id
    return "F" + hashlib.sha256(json.dumps([f.field, f.match, f.value, f.folder]).encode()).hexdigest()[:16]


def _managed(call) -> Managed:
    if call.account.rules is None:
        raise MethodError("accountNotSupportedByMethod", "filters are not available here")
    return call.account.rules


def _filter_object(f: Filter) -> dict:
    return {"id": filter_id(f), "field": f.field, "match": f.match, "value": f.value, "folder": f.folder}


def _filters_state(filters) -> str:
    return hashlib.sha256(json.dumps([_filter_object(f) for f in filters]).encode()).hexdigest()[:16]


def filter_get(call, args: dict) -> dict:
    A.known(args, {"accountId", "ids", "properties"})
    ids = A.ids(args)
    filters = _managed(call).rules(call.account.user).filters
    objs = {filter_id(f): _filter_object(f) for f in filters}
    wanted = list(objs) if ids is None else ids
    return {"accountId": call.account.id, "state": _filters_state(filters),
            "list": [objs[i] for i in wanted if i in objs], "notFound": [i for i in wanted if i not in objs]}


def _filter_from(obj: dict, fid: str, base: dict | None = None) -> Filter:
    if not isinstance(obj, dict):
        raise ManagedRuleError("a Filter is an object")
    bad = [k for k in obj if k not in FILTER_PROPS or (k == "id" and base is None)]
    if bad:
        raise ManagedRuleError(f"unknown or server-set property {str(bad[0])[:40]!r}")
    want = {**(base or {"match": "contains"}), **{k: v for k, v in obj.items() if k != "id"}}
    if not all(isinstance(want.get(k), str) for k in ("field", "match", "value", "folder")):
        raise ManagedRuleError("field, match, value and folder are strings")
    return Filter(want["field"], want["value"], want["folder"], want["match"], fid)


def filter_set(call, args: dict) -> dict:
    A.known(args, {"accountId", "ifInState", "create", "update", "destroy"})
    managed, user = _managed(call), call.account.user
    create, update = A.obj(args, "create") or {}, A.obj(args, "update") or {}
    destroy = A.ids(args, "destroy") or []
    A.set_limit(create, update, destroy)
    before = list(managed.rules(user).filters)
    old_state = _filters_state(before)
    if args.get("ifInState") is not None and args["ifInState"] != old_state:
        raise MethodError("stateMismatch")
    # insertion order: the order they run in; a filter stored before ids were gets its derived id stored now
    filters = {filter_id(f): Filter(f.field, f.value, f.folder, f.match, filter_id(f)) for f in before}
    out = {"accountId": call.account.id, "oldState": old_state, "created": {}, "notCreated": {}, "updated": {},
           "notUpdated": {}, "destroyed": [], "notDestroyed": {}}
    for fid in destroy:
        if filters.pop(call.resolve_id(fid) or fid, None) is None:
            out["notDestroyed"][fid] = set_error("notFound")
        else:
            out["destroyed"].append(fid)
    for fid, patch in update.items():
        old = filters.get(fid)
        if old is None:
            out["notUpdated"][fid] = set_error("notFound")
            continue
        try:
            if isinstance(patch, dict) and patch.get("id", fid) != fid:
                raise ManagedRuleError("id is immutable")
            checked = check_filter(_filter_from(patch, fid, _filter_object(old)))
        except ManagedRuleError as exc:
            out["notUpdated"][fid] = set_error("invalidProperties", exc.text)
            continue
        filters[fid] = checked  # same place in the order, same id
        out["updated"][fid] = None
    for cid, obj in create.items():
        try:
            checked = check_filter(_filter_from(obj, "F" + secrets.token_hex(8)))
        except ManagedRuleError as exc:
            out["notCreated"][cid] = set_error("invalidProperties", exc.text)
            continue
        filters[checked.id] = checked
        call.created_ids[cid] = checked.id
        out["created"][cid] = _filter_object(checked)
    if list(filters.values()) != before:
        try:
            managed.set_filters(user, list(filters.values()))
        except ManagedRuleError as exc:  # too many: nothing was written
            raise MethodError("overQuota", exc.text) from None
    out["newState"] = _filters_state(list(filters.values()))
    return out


# --- Report/get --------------------------------------------------------------------------------------
def report_get(call, args: dict) -> dict:
    A.known(args, {"accountId", "ids", "properties", "domain", "days"})
    acct = call.account
    if acct.reports is None:
        raise MethodError("forbidden", "reports are for admins (postern user admin ADDRESS)")
    ids = A.ids(args)
    days = A.integer(args, "days", 7, minimum=1)
    domain = args.get("domain")
    if domain is not None and not isinstance(domain, str):
        raise invalid_arguments("domain is a string")
    wanted = list(REPORT_KINDS) if ids is None else ids
    found = []
    for kind in wanted:
        if kind not in REPORT_KINDS:
            continue
        try:
            found.append({"id": kind, **acct.reports(kind, domain, days)})
        except ValueError as exc:
            raise invalid_arguments(str(exc)) from None
        except InvalidAddress:
            raise invalid_arguments("domain is not a domain name") from None
        except NoSuchDomain:
            raise invalid_arguments("no such mail domain here") from None
    return {"accountId": acct.id, "state": hashlib.sha256(json.dumps(found, sort_keys=True).encode()).hexdigest()[:16],
            "list": found, "notFound": [k for k in wanted if k not in REPORT_KINDS]}
