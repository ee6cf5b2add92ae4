"""JMAP routes: the HTTP side of RFC 8620 §2-3; the JMAP layer (``postern.jmap``) does the rest.

GET  /.well-known/jmap   the Session object (§2.2; served directly, no redirect: clients that
GET  /jmap/session       drop credentials on a redirect still work); authenticated
POST /jmap/api           a Request -> a Response; authenticated
GET  /jmap/download/{accountId}/{blobId}/{name}?accept=TYPE
                         a blob (§6.2): 302 to a presigned S3 GET (``postern.presign``: minutes; S3
                         answers with the type asked and ``Content-Disposition: attachment`` with the
                         name), whatever its size. An upload or a message stored without a trace
                         prefix is its own S3 object; a delivered message (trace prefix + bytes as
                         received) and a decoded MIME part are made into a download object once
                         (``dl/``, kept a day) and redirected to. 404 for another account's id or a
                         blob the account does not hold
POST /jmap/upload/{accountId}
                         a blob (§6.1) of at most ``maxSizeUpload`` (4 MB: the HTTP API -> Lambda path
                         carries 6 MB base64-encoded; 413 past it) -> 201 ``{accountId, blobId, type,
                         size}`` (``postern.uploads``: kept a day, per account)
GET  /jmap/eventsource/  400 with a problem: HTTP APIs cannot stream (push is RFC 8887's WebSocket)

The seam with the JMAP layer (``layers/postern/postern/jmap/``): this module authenticates (Basic
over TLS or a bearer token, :mod:`postern_https.auth`), builds the user's
:class:`postern.jmap.account.Account` (:meth:`~postern_https.services.Services.jmap_account`: the
mail store, the directory's sender rule, EmailSubmission through the same spool as port 587) and
hands it ``session.build(account, base_url)`` or ``api.handle_bytes(account, body)``, which answers
(status, JSON): the Response, or an RFC 7807 problem for a request refused as a whole (RFC 8620
§3.6.1). ``base_url`` is where the client reached us (``https://webmail.<domain>`` deployed,
``http://127.0.0.1:8080`` locally). Responses are ``application/json`` (problems
``application/problem+json``) and never cached.
"""

from __future__ import annotations

import json

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from postern.jmap import api, session

from .. import auth
from ..body import body_bytes
from ..errors import PROBLEM_JSON, HttpError, bad_request, not_found

router = Router()


def _json(status: int, body: dict) -> Response:
    ctype = "application/json" if status < 400 else PROBLEM_JSON
    return Response(status_code=status, content_type=ctype, body=json.dumps(body, separators=(",", ":")),
                    headers={"Cache-Control": "no-store"})


def _account():
    svc, viewer = router.context["services"], router.context["viewer"]
    principal = auth.require(svc, viewer, router.current_event.headers)
    return svc.jmap_account(principal.user, viewer), viewer


@router.get("/.well-known/jmap")
@router.get("/jmap/session")
def session_resource():
    account, viewer = _account()
    return _json(200, session.build(account, viewer.base_url, router.context["services"].settings.push_url))


@router.get("/jmap/download/<account_id>/<blob_id>/<name>")
def download(account_id: str, blob_id: str, name: str):
    from urllib.parse import unquote

    from postern.jmap import blobs
    from postern.jmap.account import Call
    from postern.presign import BlobUrls

    account, _ = _account()
    if account_id != account.id:
        raise not_found("No such blob")  # another account's ids are not even acknowledged
    blob_id = unquote(blob_id)
    found = blobs.source(Call(account), blob_id)
    if found is None:
        raise not_found("No such blob")
    svc = router.context["services"]
    urls = BlobUrls(svc.settings, svc.clients)
    key = found.key or urls.derived(account.user, blob_id, found.build)
    qs = router.current_event.query_string_parameters or {}
    accept = qs.get("accept", "")
    ctype = found.type
    if accept and "/" in accept and "\r" not in accept and "\n" not in accept and len(accept) < 200:
        ctype = accept
    # RFC 8620 §6.2 leaves the transport open: the bytes come from S3, never through this function
    # (the HTTP API -> Lambda path carries 6 MB at most); the URL expires in minutes, so never cache it
    return Response(status_code=302, body="", headers={"Location": urls.download_url(key, unquote(name), ctype),
                                                      "Cache-Control": "no-store"})


@router.post("/jmap/upload/<account_id>")
@router.post("/jmap/upload/<account_id>/")
def upload(account_id: str):
    from postern.jmap.session import CORE_LIMITS
    from postern.uploads import Uploads

    account, _ = _account()
    if account_id != account.id:
        raise not_found("No such account")
    data = body_bytes(router.current_event)
    limit = CORE_LIMITS["maxSizeUpload"]
    if len(data) > limit:
        raise HttpError(413, "Upload too large", f"{len(data)} bytes; maxSizeUpload is {limit}",
                        type="urn:ietf:params:jmap:error:limit", extra={"limit": "maxSizeUpload"})
    ctype = (router.current_event.headers or {}).get("content-type", "") or "application/octet-stream"
    blob_id = Uploads(router.context["services"].settings, router.context["services"].clients).put(account.user, data)
    return _json(201, {"accountId": account.id, "blobId": blob_id, "type": ctype[:200], "size": len(data)})


@router.get("/jmap/eventsource/")
@router.get("/jmap/eventsource")
def eventsource():
    _account()
    raise bad_request("EventSource is not served (API Gateway HTTP APIs cannot stream): use the WebSocket push "
                      "(RFC 8887) or poll /jmap/api")


@router.post("/jmap/api")
def api_endpoint():
    account, _ = _account()
    return _json(*api.handle_bytes(account, body_bytes(router.current_event)))
