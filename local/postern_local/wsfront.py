"""API Gateway's WebSocket API (the JMAP push socket, PushApi) played on the local front's port.

In:   from :class:`postern_local.httpfront.HttpFront`: an HTTP/1.1 request already read by
      ``http.server`` that asks to upgrade to WebSocket at ``/<stage>`` (the stage of the
      template's ``AWS::ApiGatewayV2::Stage``, ``push``), or a request of the ``@connections``
      management API at ``/<stage>/@connections/<id>`` (what boto3's ``apigatewaymanagementapi``
      client sends to the callback URL POSTERN_PUSH_ENDPOINT). The push function's handler (its
      worker processes, :mod:`postern_local.worker`) and a callable that says whether a
      component's access key may do ``execute-api:ManageConnections`` on a resource ARN (the
      template's IAM policies, :mod:`postern_local.rules`).
Out:  :class:`WebSocketApi`. ``upgrade(h)`` runs one connection in the calling thread, as API
      Gateway does: no ``ticket`` in the query string (the authorizer's identity source) -> 401;
      else the REQUEST authorizer's event (type, methodArn, headers, multiValueHeaders,
      queryStringParameters, requestContext); a Deny -> 403; then the ``$connect`` route's event
      with ``requestContext.authorizer`` = principalId + the authorizer's context; a non-2xx
      answer -> that status; else 101 with the ``Sec-WebSocket-Protocol`` the function answered
      (the websockets library's sans-I/O handshake). Each message becomes a ``$default`` event
      (``MESSAGE``; a binary frame base64 with ``isBase64Encoded``); the function's answer is
      not sent (no route response in the template), a function error sends API Gateway's
      ``{"message": "Internal server error", ...}``. The closed socket becomes ``$disconnect``.
      ``manage(h, method, connection_id)``: POST writes the body to that socket (200), DELETE
      closes it (204), GET describes it; an unknown connection is 410 ``GoneException``; a caller
      whose role lacks ``execute-api:ManageConnections`` on that connection's ARN is 403
      ``AccessDeniedException`` (the SigV4 signature itself is not checked).
Fails: a message over API Gateway's 128 KB closes the socket with 1009 (websockets' max_size);
      a handler that failed or timed out on ``$connect`` -> 500; a client that vanishes is a
      ``$disconnect``. Nothing here raises into the HTTP server.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import secrets
import threading
import time
import uuid
from urllib.parse import parse_qsl

log = logging.getLogger("postern.local")

MAX_MESSAGE = 128 * 1024  # API Gateway WebSocket API: message payload size
_CREDENTIAL = re.compile(r"Credential=([A-Z0-9]+)/")


def push_stage(template: dict) -> str:
    """The stage name of the template's WebSocket API (PushApi), "" when it has none."""
    resources = template.get("Resources", {})
    apis = {k for k, r in resources.items() if r.get("Type") == "AWS::ApiGatewayV2::Api"
            and (r.get("Properties") or {}).get("ProtocolType") == "WEBSOCKET"}
    for r in resources.values():
        props = r.get("Properties") or {}
        if r.get("Type") == "AWS::ApiGatewayV2::Stage" and (props.get("ApiId") or {}).get("Ref") in apis:
            return str(props.get("StageName", ""))
    return ""


def _now_ms() -> int:
    return int(time.time() * 1000)


class WebSocketApi:
    def __init__(self, handler, context, api_id: str, stage: str, region: str, account: str,
                 may_manage=lambda access_key, action, resource: True):
        self.handler = handler  # postern_local.worker.RemoteHandler of PushFunction
        self.context = context  # region -> a Lambda context object
        self.api_id = api_id
        self.stage = stage
        self.region = region
        self.account = account
        self.may_manage = may_manage
        self._conns: dict[str, object] = {}  # connection id -> websockets.sync.connection.Connection
        self._lock = threading.Lock()

    @property
    def domain(self) -> str:
        return f"{self.api_id}.execute-api.{self.region}.amazonaws.com"

    def connections(self) -> list[str]:
        with self._lock:
            return list(self._conns)

    # --- events (API Gateway Developer Guide, "WebSocket API" Lambda integration input) ----------
    def _context(self, route: str, kind: str, connection_id: str, ip: str, connected_at: int,
                 authorizer: dict | None = None) -> dict:
        now = _now_ms()
        ctx = {"routeKey": route, "eventType": kind, "extendedRequestId": uuid.uuid4().hex[:16],
               "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now / 1000)),
               "messageDirection": "IN", "stage": self.stage, "connectedAt": connected_at,
               "requestTimeEpoch": now, "identity": {"sourceIp": ip}, "requestId": uuid.uuid4().hex[:16],
               "domainName": self.domain, "connectionId": connection_id, "apiId": self.api_id}
        if kind == "MESSAGE":
            ctx["messageId"] = uuid.uuid4().hex[:16]
        if authorizer is not None:
            ctx["authorizer"] = authorizer
        return ctx

    def _invoke(self, event: dict):
        outcome = self.handler.invoke(event, self.context(self.region))
        if outcome.error is not None:
            log.warning("push function failed on %s: %s: %s", (event.get("requestContext") or {}).get("routeKey"),
                        getattr(outcome.error, "type_name", ""), outcome.error)
            return None
        return outcome.response

    # --- one connection -----------------------------------------------------------------
    def upgrade(self, h, reply) -> None:
        """``reply(h, status, message)`` answers a refused handshake as API Gateway's JSON."""
        from websockets.http11 import Request
        from websockets.server import ServerProtocol
        from websockets.sync.connection import Connection

        h.close_connection = True
        _, _, query = h.path.partition("?")
        params: dict[str, str] = {}
        for k, v in parse_qsl(query, keep_blank_values=True):
            params[k] = f"{params[k]},{v}" if k in params else v
        if not params.get("ticket"):
            return reply(h, 401, "Unauthorized")
        ip = h.client_address[0]
        headers = {**{k: v for k, v in h.headers.items()}, "Host": self.domain, "X-Forwarded-For": ip,
                   "X-Forwarded-Port": "443", "X-Forwarded-Proto": "https"}
        multi = {k: [v] for k, v in headers.items()}
        connection_id = base64.b64encode(secrets.token_bytes(10)).decode().replace("/", "A").replace("+", "B")
        connected_at = _now_ms()
        auth = self._invoke({
            "type": "REQUEST", "methodArn": self._arn("$connect"), "headers": headers, "multiValueHeaders": multi,
            "queryStringParameters": params, "multiValueQueryStringParameters": {k: [v] for k, v in params.items()},
            "stageVariables": {},
            "requestContext": self._context("$connect", "CONNECT", connection_id, ip, connected_at)})
        if auth is None:
            return reply(h, 500, "Internal server error")
        if not self._allowed(auth):
            return reply(h, 403, "Forbidden")
        authorizer = {"principalId": auth.get("principalId", ""), **{k: v for k, v in (auth.get("context") or {}).items()},
                      "integrationLatency": 0}
        connected = self._invoke({
            "headers": headers, "multiValueHeaders": multi, "queryStringParameters": params,
            "multiValueQueryStringParameters": {k: [v] for k, v in params.items()},
            "requestContext": self._context("$connect", "CONNECT", connection_id, ip, connected_at, authorizer),
            "isBase64Encoded": False})
        if connected is None:
            return reply(h, 500, "Internal server error")
        status = int(connected.get("statusCode", 200)) if isinstance(connected, dict) else 200
        if not 200 <= status < 300:
            return reply(h, status, "Forbidden" if status == 403 else "Connection refused")
        chosen = {k.lower(): v for k, v in (connected.get("headers") or {}).items()}.get("sec-websocket-protocol")

        protocol = ServerProtocol(select_subprotocol=lambda _proto, offered: chosen if chosen in offered else None,
                                  max_size=MAX_MESSAGE)
        # The request http.server read, given to the sans-I/O parser (which then reads frames, not a request).
        raw = h.requestline + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.headers.items()) + "\r\n"
        protocol.receive_data(raw.encode("latin-1"))
        request = next((e for e in protocol.events_received() if isinstance(e, Request)), None)
        if request is None:
            self._disconnect(connection_id, ip, connected_at, authorizer)
            return reply(h, 400, "Bad Request")
        response = protocol.accept(request)
        protocol.send_response(response)
        h.wfile.write(b"".join(protocol.data_to_send()))
        h.wfile.flush()
        if response.status_code != 101:
            self._disconnect(connection_id, ip, connected_at, authorizer)
            return None
        conn = Connection(h.connection, protocol, ping_interval=None)  # the handshake is done: frames only
        with self._lock:
            self._conns[connection_id] = conn
        try:
            while True:
                try:
                    data = conn.recv()
                except Exception as exc:  # noqa: BLE001 - closed (cleanly or not), too big: the connection ends
                    log.debug("push socket %s closed: %r", connection_id, exc)
                    break
                log.debug("push socket %s: message of %d", connection_id, len(data))
                body, b64 = (data, False) if isinstance(data, str) else (base64.b64encode(data).decode(), True)
                ctx = self._context("$default", "MESSAGE", connection_id, ip, connected_at, authorizer)
                if self._invoke({"requestContext": ctx, "body": body, "isBase64Encoded": b64}) is None:
                    self._send(conn, json.dumps({"message": "Internal server error", "connectionId": connection_id,
                                                 "requestId": ctx["requestId"]}))
        finally:
            with self._lock:
                self._conns.pop(connection_id, None)
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - already gone
                pass
            self._disconnect(connection_id, ip, connected_at, authorizer)

    def _disconnect(self, connection_id: str, ip: str, connected_at: int, authorizer: dict) -> None:
        self._invoke({"headers": {"Host": self.domain}, "multiValueHeaders": {"Host": [self.domain]},
                      "requestContext": {**self._context("$disconnect", "DISCONNECT", connection_id, ip, connected_at,
                                                         authorizer),
                                         "disconnectStatusCode": 1000, "disconnectReason": ""},
                      "isBase64Encoded": False})

    def _arn(self, route: str) -> str:
        return f"arn:aws:execute-api:{self.region}:{self.account}:{self.api_id}/{self.stage}/{route}"

    def _allowed(self, auth) -> bool:
        """An authorizer answer allowing this $connect (an IAM policy document)."""
        if not isinstance(auth, dict):
            return False
        stmts = ((auth.get("policyDocument") or {}).get("Statement")) or []
        stmts = stmts if isinstance(stmts, list) else [stmts]
        target = self._arn("$connect")
        allowed = False
        for s in stmts:
            resources = s.get("Resource") if isinstance(s.get("Resource"), list) else [s.get("Resource")]
            if not any(r == target or (isinstance(r, str) and r.endswith("*") and target.startswith(r[:-1]))
                       for r in resources):
                continue
            if s.get("Effect") == "Deny":
                return False
            allowed = allowed or s.get("Effect") == "Allow"
        return allowed

    @staticmethod
    def _send(conn, text) -> bool:
        try:
            conn.send(text)
        except Exception:  # noqa: BLE001 - the socket is closing
            return False
        return True

    # --- @connections (API Gateway Developer Guide, "Use @connections commands") ----------
    def manage(self, h, method: str, connection_id: str, body: bytes, answer) -> None:
        """``answer(h, status, headers, body)`` writes the HTTP answer."""
        m = _CREDENTIAL.search(h.headers.get("Authorization", ""))
        action = "execute-api:ManageConnections"
        resource = f"arn:aws:execute-api:{self.region}:{self.account}:{self.api_id}/{self.stage}/{method}/@connections/{connection_id}"
        if m is None or not self.may_manage(m.group(1), action, resource):
            return answer(h, 403, [("x-amzn-ErrorType", "AccessDeniedException")],
                          json.dumps({"message": f"not authorized to perform {action} on {resource}"}).encode())
        with self._lock:
            conn = self._conns.get(connection_id)
        if conn is None:
            return answer(h, 410, [("x-amzn-ErrorType", "GoneException")], b'{"message":null}')
        if method == "POST":
            try:
                payload = body.decode("utf-8")
            except UnicodeDecodeError:
                payload = body
            if not self._send(conn, payload):
                return answer(h, 410, [("x-amzn-ErrorType", "GoneException")], b'{"message":null}')
            return answer(h, 200, [], b"")
        if method == "DELETE":
            threading.Thread(target=conn.close, daemon=True).start()
            return answer(h, 204, [], b"")
        if method == "GET":
            return answer(h, 200, [("Content-Type", "application/json")], json.dumps(
                {"connectedAt": "", "identity": {"sourceIp": "127.0.0.1"}}).encode())
        return answer(h, 400, [("x-amzn-ErrorType", "BadRequestException")], b'{"message":"Bad Request"}')
