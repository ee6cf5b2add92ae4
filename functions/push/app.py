"""push - the JMAP WebSocket (RFC 8887): API Gateway WebSocket API's authorizer and routes.

READS
    API Gateway WebSocket API events (API Gateway Developer Guide, "WebSocket APIs"): the
    ``$connect`` REQUEST authorizer's event (``type: REQUEST``, the one-time ticket in the
    query string ``?ticket=``: never a password), and the ``$connect``, ``$disconnect`` and
    ``$default`` (message) routes' proxy events, whose ``requestContext.authorizer`` carries
    what the authorizer returned (the account) for the connection's whole life. The state
    table (tickets, the connection registry) and the directory (the ticket's user is current).
WRITES
    Authorizer: an IAM policy allowing ``execute-api:Invoke`` on the ``$connect`` it was asked
    for, with context ``{"user": address}``, or denying it (API Gateway answers 403) for a
    ticket unknown, used, expired or of a user whose password changed since.
    ``$connect``: the registry item of the connection (postern.push.Registry.connect); answers
    the subprotocol ``jmap`` (RFC 8887 §4.1), and 400 to a client that did not offer it.
    ``$default``: ``WebSocketPushEnable`` / ``WebSocketPushDisable`` update the item and
    answer nothing; anything else answers an RFC 8887 RequestError on the socket, posted
    through ``@connections`` (POSTERN_PUSH_ENDPOINT; the routes have no route response).
    ``$disconnect``: the item deleted.
FAILURES
    A state-table or directory fault raises (the authorizer's caller sees 500 and may retry
    with a new ticket; a lost ``$disconnect`` leaves an item the TTL removes, and the feed
    deletes it at the first post that answers 410). Nothing is queued, nothing retried.
    Tickets are never logged.
CODE
    postern.push (registry), postern.jmap.websocket (RFC 8887 messages), postern.tokens (tickets).
"""

from __future__ import annotations

import base64
import json

from aws_lambda_powertools import Logger

from postern.aws import get_clients
from postern.config import get_settings
from postern.errors import StoreUnavailable
from postern.jmap import websocket
from postern.push import Gone, connections_poster, registry_for
from postern.tokens import tokens_for

logger = Logger()


def _policy(effect: str, arn: str, user: str = "") -> dict:
    out = {"principalId": user or "anonymous",
           "policyDocument": {"Version": "2012-10-17",
                              "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": arn}]}}
    if user:
        out["context"] = {"user": user}
    return out


def authorize(event: dict) -> dict:
    """The ``$connect`` REQUEST authorizer: the one-time ticket, redeemed (it works once)."""
    ticket = (event.get("queryStringParameters") or {}).get("ticket", "")
    user = tokens_for().redeem_ticket(ticket) if ticket else None
    if user is None:
        logger.info("websocket ticket refused", ip=_ip(event))
        return _policy("Deny", event.get("methodArn", ""))
    return _policy("Allow", event.get("methodArn", ""), user.address.lower())


def _ip(event: dict) -> str:
    return ((event.get("requestContext") or {}).get("identity") or {}).get("sourceIp", "")


def _offered(event: dict) -> list[str]:
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    return [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",") if p.strip()]


def connect(event: dict, user: str, connection_id: str) -> dict:
    if websocket.SUBPROTOCOL not in _offered(event):
        return {"statusCode": 400, "body": "RFC 8887: ask for the WebSocket subprotocol 'jmap'"}
    registry_for().connect(user, connection_id)
    return {"statusCode": 200, "headers": {"Sec-WebSocket-Protocol": websocket.SUBPROTOCOL}}


def message(event: dict, user: str, connection_id: str) -> dict:
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        body = base64.b64decode(body)
    try:
        msg = websocket.parse(body)
    except websocket.RequestError as err:
        _reply(connection_id, err.reply())
        return {"statusCode": 200}
    registry = registry_for()
    if isinstance(msg, websocket.PushEnable):
        ok = registry.enable(user, connection_id, msg.types)
    else:
        ok = registry.disable(user, connection_id)
    if not ok:  # the item's TTL passed or $connect's write was lost: register again
        registry.connect(user, connection_id)
        if isinstance(msg, websocket.PushEnable):
            registry.enable(user, connection_id, msg.types)
    return {"statusCode": 200}


def _reply(connection_id: str, doc: dict) -> None:
    """A message to the client, through ``@connections`` (the routes have no route response)."""
    settings = get_settings()
    if not settings.push_endpoint:
        return
    post = connections_poster(get_clients().connections(settings.push_endpoint))
    try:
        post(connection_id, json.dumps(doc, separators=(",", ":")).encode())
    except Gone:
        pass  # the client left: nothing to tell it


@logger.inject_lambda_context
def lambda_handler(event, context):
    if event.get("type") == "REQUEST":
        return authorize(event)
    ctx = event.get("requestContext") or {}
    user = str((ctx.get("authorizer") or {}).get("user", ""))
    connection_id = ctx.get("connectionId", "")
    kind = ctx.get("eventType")
    if not user or not connection_id:  # a route reached without the authorizer: a template error
        logger.error("websocket event without an authorized user", route=ctx.get("routeKey"))
        return {"statusCode": 403}
    try:
        if kind == "CONNECT":
            return connect(event, user, connection_id)
        if kind == "DISCONNECT":
            registry_for().disconnect(user, connection_id)
            return {"statusCode": 200}
        return message(event, user, connection_id)
    except StoreUnavailable as exc:
        logger.warning("backend unavailable", error=exc.text, route=ctx.get("routeKey"))
        raise
