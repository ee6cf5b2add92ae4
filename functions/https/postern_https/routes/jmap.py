"""JMAP routes: the HTTP side of RFC 8620 §2-3; the JMAP layer (``postern.jmap``) does the rest.

GET  /.well-known/jmap   the Session object (§2.2; served directly, no redirect: clients that
GET  /jmap/session       drop credentials on a redirect still work); authenticated
POST /jmap/api           a Request -> a Response; authenticated

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
from ..errors import PROBLEM_JSON

router = Router()


def _json(status: int, body: dict) -> Response:
    ctype = "application/json" if status < 400 else PROBLEM_JSON
    return Response(status_code=status, content_type=ctype, body=json.dumps(body, separators=(",", ":")),
                    headers={"Cache-Control": "no-store"})


def _account():
    svc, viewer = router.context["services"], router.context["viewer"]
    principal = auth.require(svc, viewer, router.current_event.headers)
    return svc.jmap_account(principal.user), viewer


@router.get("/.well-known/jmap")
@router.get("/jmap/session")
def session_resource():
    account, viewer = _account()
    return _json(200, session.build(account, viewer.base_url))


@router.post("/jmap/api")
def api_endpoint():
    account, _ = _account()
    return _json(*api.handle_bytes(account, body_bytes(router.current_event)))
