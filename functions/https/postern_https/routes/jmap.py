"""JMAP routes: the HTTP side of RFC 8620 §2-3; the JMAP layer (``postern.jmap``) does the rest.

GET  /.well-known/jmap   the Session object (§2.2; served directly, no redirect: clients that
GET  /jmap/session       drop credentials on a redirect still work); authenticated
POST /jmap/api           a Request -> a Response; authenticated

The seam with the JMAP layer (``layers/postern/postern/jmap/``, built apart from this function):
``postern.jmap.session.session_resource(user, base_url) -> dict`` and
``postern.jmap.api.handle(user, request_json: bytes, session: dict) -> dict``, where ``user`` is the
authenticated :class:`postern.directory.User` and ``base_url`` where the client reached us
(``https://webmail.<domain>`` deployed, ``http://127.0.0.1:8080`` locally). This module owns only
authentication (Basic over TLS or a bearer token, :mod:`postern_https.auth`), the body as bytes and
the JSON answer; the JMAP layer owns everything JMAP says, request-level errors included (RFC
8620 §3.6.1). Until that layer is part of the build (``postern.jmap`` not importable) these routes
answer 404 with a problem saying so: never a fake session.
"""

from __future__ import annotations

import importlib
import importlib.util
import json

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from .. import auth
from ..body import body_bytes
from ..errors import not_found

router = Router()


def _layer(module: str):
    if importlib.util.find_spec("postern.jmap") is None:
        raise not_found("JMAP is not part of this build")
    return importlib.import_module(f"postern.jmap.{module}")


def _json(body: dict) -> Response:
    return Response(status_code=200, content_type="application/json", body=json.dumps(body, separators=(",", ":")),
                    headers={"Cache-Control": "no-store"})


def _session():
    svc, viewer = router.context["services"], router.context["viewer"]
    principal = auth.require(svc, viewer, router.current_event.headers)
    return principal, _layer("session").session_resource(principal.user, viewer.base_url)


@router.get("/.well-known/jmap")
@router.get("/jmap/session")
def session_resource():
    return _json(_session()[1])


@router.post("/jmap/api")
def api_endpoint():
    principal, session = _session()
    return _json(_layer("api").handle(principal.user, body_bytes(router.current_event), session))
