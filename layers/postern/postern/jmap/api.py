"""The JMAP API endpoint without its transport (RFC 8620 §3): a request in, a response out.

In:   the authenticated :class:`~.account.Account` and the request, either as
      the POST body bytes (:func:`handle_bytes`: size and JSON checked here) or
      already decoded (:func:`handle`).
Out:  the Response object (``methodResponses``, ``sessionState``,
      ``createdIds``), or for a refused request an RFC 7807 problem with its
      HTTP status (:class:`~.errors.RequestError`).
Fails: never raises for anything a client sends. A request that is not JSON,
      not a Request, names an unknown capability or exceeds a session limit is
      refused as a whole (§3.6.1); a method call that fails answers
      ``["error", {type}, callId]`` (§3.6.2) and the next call runs; a backend
      fault inside a method is ``serverUnavailable`` (transient) or
      ``serverFail`` (logged), never an exception out of here.

The method table maps each method name to its handler and the capability a
request must have in ``using`` for it (the surface of the API in one place,
as the IMAP state table is for IMAP).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from ..errors import PosternError
from . import (copy, core, email, emailquery, identity, importer, mailbox, postern, quota, sievescript, snippet, submission,
               thread, upload, vacation)
from .account import Account, Call
from .errors import LIMIT, NOT_JSON, NOT_REQUEST, UNKNOWN_CAPABILITY, MethodError, RequestError
from .refs import resolve_references
from .session import CORE, CORE_LIMITS, MAIL, POSTERN, QUOTA, SIEVE, SUBMISSION, VACATION, capabilities, state

log = logging.getLogger("postern.jmap")

Handler = Callable[[Call, dict], dict]

METHODS: dict[str, tuple[str, Handler]] = {
    "Core/echo": (CORE, core.echo),
    "Mailbox/get": (MAIL, mailbox.get),
    "Mailbox/changes": (MAIL, mailbox.changes),
    "Mailbox/query": (MAIL, mailbox.query),
    "Mailbox/set": (MAIL, mailbox.set_),
    "Mailbox/queryChanges": (MAIL, emailquery.query_changes),
    "Thread/get": (MAIL, thread.get),
    "Thread/changes": (MAIL, thread.changes),
    "Email/get": (MAIL, email.get),
    "Email/query": (MAIL, emailquery.query),
    "Email/changes": (MAIL, email.changes),
    "Email/queryChanges": (MAIL, emailquery.query_changes),
    "Email/set": (MAIL, email.set_),
    "Email/import": (MAIL, importer.import_),
    "Email/copy": (MAIL, copy.copy),
    "Email/parse": (MAIL, email.parse),
    "SearchSnippet/get": (MAIL, snippet.get),
    "Identity/get": (SUBMISSION, identity.get),
    "Identity/changes": (SUBMISSION, identity.changes),
    "Identity/set": (SUBMISSION, identity.set_),
    "EmailSubmission/set": (SUBMISSION, submission.set_),
    "Quota/get": (QUOTA, quota.get),
    "VacationResponse/get": (VACATION, vacation.get),
    "VacationResponse/set": (VACATION, vacation.set_),
    "Upload/create": (upload.UPLOAD, upload.create),
    "SieveScript/get": (SIEVE, sievescript.get),
    "SieveScript/changes": (SIEVE, sievescript.changes),
    "SieveScript/query": (SIEVE, sievescript.query),
    "SieveScript/queryChanges": (SIEVE, sievescript.query_changes),
    "SieveScript/set": (SIEVE, sievescript.set_),
    "SieveScript/validate": (SIEVE, sievescript.validate),
    "Password/change": (POSTERN, postern.change_password),
    "Filter/get": (POSTERN, postern.filter_get),
    "Filter/set": (POSTERN, postern.filter_set),
    "Report/get": (POSTERN, postern.report_get),
    "List/unsubscribe": (POSTERN, postern.list_unsubscribe),
}

MAX_DEPTH = 64  # JSON nesting a request may have: far beyond any real request, far below Python's recursion limit


def handle_bytes(account: Account, body: bytes) -> tuple[int, dict]:
    """(HTTP status, JSON object) for a POST to the API URL."""
    try:
        if len(body) > CORE_LIMITS["maxSizeRequest"]:
            raise RequestError(LIMIT, "request too large", limit="maxSizeRequest")
        try:
            request = json.loads(body)
        except (ValueError, RecursionError):  # RecursionError: hostile nesting (RFC 8620 §3.6.1 notJSON)
            raise RequestError(NOT_JSON, "the request is not valid I-JSON") from None
        _check_depth(request)
        return 200, handle(account, request)
    except RequestError as exc:
        return exc.status, exc.problem()


def _check_depth(value, depth: int = 0) -> None:
    stack = [(value, 0)]
    while stack:
        v, d = stack.pop()
        if d > MAX_DEPTH:
            raise RequestError(NOT_REQUEST, f"the request is nested more than {MAX_DEPTH} levels deep")
        if isinstance(v, dict):
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, d + 1) for x in v)


def _validate(request) -> tuple[list[str], list, dict | None]:
    """RFC 8620 §3.3: using, methodCalls (Invocation triples), createdIds."""
    if not isinstance(request, dict):
        raise RequestError(NOT_REQUEST, "the request is not a JSON object")
    using = request.get("using")
    calls = request.get("methodCalls")
    created = request.get("createdIds")
    if not isinstance(using, list) or not all(isinstance(u, str) for u in using):
        raise RequestError(NOT_REQUEST, "using must be a list of capability strings")
    if not isinstance(calls, list):
        raise RequestError(NOT_REQUEST, "methodCalls must be a list")
    for c in calls:
        if not (isinstance(c, list) and len(c) == 3 and isinstance(c[0], str) and isinstance(c[1], dict)
                and isinstance(c[2], str)):
            raise RequestError(NOT_REQUEST, "each method call is [name, arguments, callId]")
    if created is not None and not (isinstance(created, dict) and all(isinstance(v, str) for v in created.values())):
        raise RequestError(NOT_REQUEST, "createdIds must map creation ids to ids")
    unknown = [u for u in using if u not in capabilities()]
    if unknown:
        raise RequestError(UNKNOWN_CAPABILITY, f"unknown capability {unknown[0][:200]!r}")
    if len(calls) > CORE_LIMITS["maxCallsInRequest"]:
        raise RequestError(LIMIT, "too many method calls", limit="maxCallsInRequest")
    return using, calls, created


def handle(account: Account, request) -> dict:
    """The Response object for a decoded request (RequestError when refused as a whole)."""
    using, calls, created = _validate(request)
    call = Call(account, dict(created or {}))
    responses: list[list] = []
    for name, args, call_id in calls:
        for out_name, out_args in _invoke(call, set(using), name, args, responses):
            responses.append([out_name, out_args, call_id])
    out = {"methodResponses": responses, "sessionState": state(account)}
    if created is not None:
        out["createdIds"] = dict(call.created_ids)  # RFC 8620 §3.4: only when the request gave createdIds
    return out


def _invoke(call: Call, using: set[str], name: str, args: dict, responses: list) -> list[tuple[str, dict]]:
    entry = METHODS.get(name)
    if entry is None or entry[0] not in using:
        return [("error", MethodError("unknownMethod", f"{name[:100]} is not a method here").response())]
    try:
        args = resolve_references(args, responses)
        if "accountId" in args and args["accountId"] != call.account.id:
            raise MethodError("accountNotFound")
        result = entry[1](call, args)
    except MethodError as exc:
        return [("error", exc.response())]
    except PosternError as exc:
        call.changed()
        if exc.permanent:
            log.warning("JMAP %s: %s", name, exc.text)
            return [("error", MethodError("serverFail", "the mail store refused the change").response())]
        return [("error", MethodError("serverUnavailable", "the mail store is busy; try again").response())]
    except Exception:  # noqa: BLE001 - a bug must cost one method call, never the request
        call.changed()
        log.exception("JMAP %s failed", name)
        return [("error", MethodError("serverFail", "internal error").response())]
    if isinstance(result, list):  # a method answering with several responses (/set + implicit calls)
        return result
    return [(name, result)]
