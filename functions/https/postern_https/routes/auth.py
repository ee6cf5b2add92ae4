"""``/auth/*``: bearer tokens and WebSocket tickets.

POST   /auth/token    credentials (HTTP Basic, or a JSON body ``{"username", "password"}``) ->
                      ``{"access_token", "token_type": "Bearer", "expires_in", "username"}``
                      (``POSTERN_TOKEN_TTL``, 1 h; stored hashed, revoked by a password change).
DELETE /auth/token    sign-out: revokes the bearer token presented (204).
POST   /auth/ticket   an authenticated client -> a one-time ticket for the JMAP WebSocket
                      (``{"ticket", "expires_in"}``, ``POSTERN_TICKET_TTL``), redeemed by
                      :meth:`postern.tokens.Tokens.redeem_ticket` when the socket connects.

Credentials are never accepted in the URL: a query string naming a password is refused (400)
before anything else happens.
"""

from __future__ import annotations

import json

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from .. import auth
from ..body import body_bytes
from ..errors import bad_request, unauthorized
from ..validation import validator

router = Router()

TOKEN_BODY = {
    "type": "object",
    "properties": {"username": {"type": "string", "minLength": 1, "maxLength": auth.MAX_USER},
                   "password": {"type": "string", "maxLength": auth.MAX_PASSWORD}},
    "required": ["username", "password"],
    "additionalProperties": False,
}
MAX_BODY = 4096
check_token_body = validator(TOKEN_BODY)


def _no_secrets_in_url() -> None:
    qs = router.current_event.query_string_parameters or {}
    if any(k.lower() in ("password", "pass", "passwd", "pw", "token", "access_token") for k in qs):
        raise bad_request("Credentials are never accepted in a URL: send them in the Authorization header or body")


def _json(status: int, body: dict) -> Response:
    return Response(status_code=status, content_type="application/json", body=json.dumps(body),
                    headers={"Cache-Control": "no-store"})


@router.post("/auth/token")
def issue_token():
    _no_secrets_in_url()
    ctx = router.context
    svc, viewer = ctx["services"], ctx["viewer"]
    headers = router.current_event.headers or {}
    if headers.get("authorization"):
        user = auth.require(svc, viewer, headers).user
    else:
        body = body_bytes(router.current_event)
        if not body:
            raise unauthorized()
        if len(body) > MAX_BODY:
            raise bad_request("Body too large")
        try:
            creds = check_token_body(json.loads(body))
        except (ValueError, RecursionError):  # not JSON, not UTF-8 (json.loads takes bytes), not the schema
            raise bad_request('Expected {"username": ..., "password": ...}') from None
        user = auth.password_login(svc, viewer, creds["username"], creds["password"])
    issued = svc.tokens.issue(user)
    return _json(200, {"access_token": issued.value, "token_type": "Bearer", "expires_in": svc.settings.token_ttl,
                       "username": user.address})


@router.delete("/auth/token")
def revoke_token():
    ctx = router.context
    headers = router.current_event.headers or {}
    scheme, _, value = (headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "bearer":
        raise unauthorized("Sign-out takes the bearer token to revoke")
    auth.require(ctx["services"], ctx["viewer"], headers)  # a valid token of a current user
    ctx["services"].tokens.revoke(value.strip())
    return Response(status_code=204, content_type=None, body="", headers={"Cache-Control": "no-store"})


@router.post("/auth/ticket")
def issue_ticket():
    _no_secrets_in_url()
    ctx = router.context
    principal = auth.require(ctx["services"], ctx["viewer"], router.current_event.headers)
    issued = ctx["services"].tokens.issue_ticket(principal.user)
    return _json(200, {"ticket": issued.value, "expires_in": ctx["services"].settings.ticket_ttl})



