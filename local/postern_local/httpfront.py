"""CloudFront + API Gateway's HTTP API, played on 127.0.0.1 in front of the real HTTPS function.

In:   HTTP/1.1 requests on ``127.0.0.1:POSTERN_LOCAL_HTTP_PORT`` (8080; plain HTTP: the function
      refuses credentials over it unless POSTERN_ALLOW_PLAINTEXT_AUTH, which the local stack sets,
      as it does for the gateway), the function's handler (its worker processes, signing as its
      own role: :mod:`postern_local.worker`), the origin secret, and template.yaml's response
      headers policy.
Out:  :class:`HttpFront`: each request becomes the event API Gateway's HTTP API gives a Lambda
      function (payload format 2.0: ``version``, ``routeKey`` ``$default``, ``rawPath``,
      ``rawQueryString``, ``cookies``, lower-case ``headers`` with repeated ones joined by commas,
      ``queryStringParameters``, ``requestContext.http`` with ``sourceIp``, ``body`` base64-encoded
      unless it is text), after the distribution's part: the client's own ``x-postern-*`` headers
      dropped, the viewer's host and IP and the origin secret added (:mod:`postern.edge`), and
      ``x-postern-viewer-proto: http``. The function's answer (``statusCode``, ``headers``,
      ``cookies``, ``body``, ``isBase64Encoded``) is written back with the security headers of the
      template's ``AWS::CloudFront::ResponseHeadersPolicy`` added as CloudFront adds them (a header
      whose ``Override`` is false only when the function did not set it): they are defined once,
      in the template, and read from there (:func:`security_headers`; the CSP's ``Fn::Sub``
      variables, the push socket's and the mail bucket's origins, get the local endpoints).
      Which paths reach the function and which the webmail's files is the distribution's cache
      behaviours, read from the template too (:func:`routing`): a path no behaviour's pattern
      matches is the default behaviour's, the app bucket; locally the app's files are the built
      ``webmail/dist`` (:class:`AppFiles`), served as S3 serves what `make deploy` uploaded:
      Content-Type and Cache-Control from :mod:`postern.webassets`, an ETag, ``/`` as the
      DefaultRootObject, 404 for a missing file, 403 for a method the behaviour does not allow.
Fails: as the AWS services would, with their bodies: a request body over 10 MB (HTTP API) or an
      event over 6 MB (Lambda's synchronous payload) -> 413; a response over 6 MB or a handler
      that raised or crashed -> 500 ``{"message":"Internal Server Error"}``; a handler past its
      Timeout -> 503 ``{"message":"Service Unavailable"}``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import threading
import time
import uuid
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, unquote

from postern import webassets
from postern.edge import ORIGIN_HEADER, VIEWER_HOST, VIEWER_IP, VIEWER_PROTO

from .template import load_template, resources_of_type

log = logging.getLogger("postern.local")

MAX_REQUEST_BODY = 10 * 1024 * 1024  # HTTP API payload quota
MAX_LAMBDA_PAYLOAD = 6 * 1024 * 1024  # Lambda synchronous invocation, request and response
MAX_DRAIN = 4 * MAX_REQUEST_BODY  # a larger body is not read at all: the connection closes
TEXT_TYPES = ("text/", "application/json", "application/xml", "application/x-www-form-urlencoded",
              "application/javascript")
ACCOUNT = "123456789012"
_QUERY = re.compile(r"\?[^ \"]*")


def _substitute(value, variables: dict[str, str]) -> str:
    """A header value: a string, or ``Fn::Sub`` [format, {name: ...}] with every name given locally
    (a variable the local front has no value for is an error: the policy must never point at AWS)."""
    if isinstance(value, str):
        return value
    fmt, names = value["Fn::Sub"] if isinstance(value["Fn::Sub"], list) else (value["Fn::Sub"], {})
    missing = sorted(set(re.findall(r"\$\{([^}!]+)\}", fmt)) - set(variables))
    if missing:
        raise ValueError(f"the response headers policy needs local values for {', '.join(missing)}")
    return re.sub(r"\$\{([^}!]+)\}", lambda m: variables[m.group(1)], fmt)


def security_headers(template: dict | None = None, local: dict[str, str] | None = None) -> list[tuple[str, str, bool]]:
    """(header, value, override) for every header the template's response headers policy adds;
    ``local`` gives the values of the policy's ``Fn::Sub`` variables (the local endpoints)."""
    t = template or load_template()
    local = local or {}
    policies = resources_of_type(t, "AWS::CloudFront::ResponseHeadersPolicy")
    out: list[tuple[str, str, bool]] = []
    for policy in policies.values():
        cfg = policy["Properties"]["ResponseHeadersPolicyConfig"]
        sec = cfg.get("SecurityHeadersConfig") or {}
        if "StrictTransportSecurity" in sec:
            h = sec["StrictTransportSecurity"]
            value = f"max-age={int(h['AccessControlMaxAgeSec'])}"
            value += "; includeSubDomains" if h.get("IncludeSubdomains") else ""
            value += "; preload" if h.get("Preload") else ""
            out.append(("Strict-Transport-Security", value, bool(h.get("Override"))))
        if "ContentTypeOptions" in sec:
            out.append(("X-Content-Type-Options", "nosniff", bool(sec["ContentTypeOptions"].get("Override"))))
        if "FrameOptions" in sec:
            out.append(("X-Frame-Options", sec["FrameOptions"]["FrameOption"], bool(sec["FrameOptions"].get("Override"))))
        if "ReferrerPolicy" in sec:
            out.append(("Referrer-Policy", sec["ReferrerPolicy"]["ReferrerPolicy"],
                        bool(sec["ReferrerPolicy"].get("Override"))))
        if "ContentSecurityPolicy" in sec:
            out.append(("Content-Security-Policy", _substitute(sec["ContentSecurityPolicy"]["ContentSecurityPolicy"], local),
                        bool(sec["ContentSecurityPolicy"].get("Override"))))
        if "XSSProtection" in sec:
            h = sec["XSSProtection"]
            value = "1" if h.get("Protection") else "0"
            value += "; mode=block" if h.get("Protection") and h.get("ModeBlock") else ""
            out.append(("X-XSS-Protection", value, bool(h.get("Override"))))
        for item in (cfg.get("CustomHeadersConfig") or {}).get("Items", []):
            out.append((item["Header"], item["Value"], bool(item.get("Override"))))
    return out


FUNCTION, APP = "function", "app"


@dataclass(frozen=True)
class Behaviour:
    """One cache behaviour: its path pattern (None for the default), where it goes, its methods."""

    pattern: str | None
    origin: str  # FUNCTION (a custom origin: the HTTP API) or APP (an S3 origin: the app bucket)
    methods: frozenset[str]

    def matches(self, path: str) -> bool:
        # CloudFront: case-sensitive, * any run of characters (/ included), ? exactly one
        if self.pattern is None:
            return True
        rx = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in self.pattern)
        return re.fullmatch(rx, path if self.pattern.startswith("/") else path.lstrip("/"), re.S) is not None


@dataclass(frozen=True)
class Routing:
    behaviours: tuple[Behaviour, ...]  # in CloudFront's order of evaluation, the default last
    root_object: str  # DefaultRootObject: what "/" is

    def route(self, path: str) -> Behaviour:
        return next(b for b in self.behaviours if b.matches(path))


def routing(template: dict | None = None) -> Routing:
    """The distribution's cache behaviours (path pattern -> origin), as CloudFront evaluates them."""
    t = template or load_template()
    (dist,) = resources_of_type(t, "AWS::CloudFront::Distribution").values()
    cfg = dist["Properties"]["DistributionConfig"]
    kinds = {o["Id"]: APP if "S3OriginConfig" in o else FUNCTION for o in cfg["Origins"]}

    def behaviour(b: dict, pattern: str | None) -> Behaviour:
        return Behaviour(pattern, kinds[b["TargetOriginId"]], frozenset(b.get("AllowedMethods") or ["GET", "HEAD"]))

    found = [behaviour(b, b["PathPattern"]) for b in cfg.get("CacheBehaviors") or []]
    return Routing((*found, behaviour(cfg["DefaultCacheBehavior"], None)), cfg.get("DefaultRootObject", ""))


class AppFiles:
    """The built webmail (``webmail/dist``) as the app bucket holds it after `make deploy`."""

    def __init__(self, root: Path | str, root_object: str = "index.html"):
        self.root = Path(root).resolve()
        self.root_object = root_object

    def find(self, path: str) -> Path | None:
        """The file for a request path (query already gone), or None: S3 keys are the decoded path
        without its leading slash; "/" is the root object; no key has a . or .. segment or a NUL."""
        key = unquote(path)[1:] if path != "/" else self.root_object
        parts = key.split("/")
        if not key or "\0" in key or "\\" in key or any(p in ("", ".", "..") for p in parts):
            return None
        if not webassets.publishable(key):  # never uploaded, so never served
            return None
        file = self.root.joinpath(*parts)
        try:
            file.resolve().relative_to(self.root)
        except ValueError:
            return None
        return file if file.is_file() else None


def _is_text(content_type: str, encoding: str) -> bool:
    ct = content_type.split(";", 1)[0].strip().lower()
    return not encoding and (ct.startswith(TEXT_TYPES) or ct.endswith(("+json", "+xml")))


def build_event(method: str, target: str, headers: list[tuple[str, str]], body: bytes, source_ip: str,
                api_id: str = "local", region: str = "us-east-1") -> dict:
    """API Gateway HTTP API's Lambda event, payload format 2.0 (API Gateway Developer Guide,
    "Create AWS Lambda proxy integrations for HTTP APIs")."""
    path, _, query = target.partition("?")
    merged: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        n = name.lower()
        if n == "cookie":
            cookies += [c.strip() for c in value.split(";") if c.strip()]
            continue
        merged[n] = f"{merged[n]},{value}" if n in merged else value
    params: dict[str, str] = {}
    for k, v in parse_qsl(query, keep_blank_values=True):
        params[k] = f"{params[k]},{v}" if k in params else v
    now = time.time()
    domain = f"{api_id}.execute-api.{region}.amazonaws.com"
    event = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path or "/",
        "rawQueryString": query,
        "headers": {**merged, "host": domain, "x-forwarded-for": source_ip, "x-forwarded-proto": "https",
                    "x-forwarded-port": "443"},
        "requestContext": {
            "accountId": ACCOUNT, "apiId": api_id, "domainName": domain, "domainPrefix": api_id,
            "http": {"method": method, "path": path or "/", "protocol": "HTTP/1.1", "sourceIp": source_ip,
                     "userAgent": merged.get("user-agent", "")},
            "requestId": uuid.uuid4().hex[:16], "routeKey": "$default", "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)), "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if params:
        event["queryStringParameters"] = params
    if body:
        if _is_text(merged.get("content-type", ""), merged.get("content-encoding", "")):
            try:
                event["body"] = body.decode("utf-8")
            except UnicodeDecodeError:
                event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
        else:
            event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
    return event


class HttpFront:
    def __init__(self, handler, context, origin_secret: str, headers: list[tuple[str, str, bool]],
                 region: str = "us-east-1", port: int = 8080, bind: str = "127.0.0.1",
                 routes: Routing | None = None, app: AppFiles | None = None):
        self.handler = handler  # postern_local.worker.RemoteHandler: the function in its worker processes
        self.routes = routes  # None: every path goes to the function
        self.app = app  # None: the app's paths are 404 (no webmail/dist built)
        self.context = context  # region -> a Lambda context object (LocalFunction.context)
        self.origin_secret = origin_secret
        self.headers = headers
        self.region = region
        self.requested_port = port
        self.bind_address = bind
        self.port = 0
        self.ws = None  # postern_local.wsfront.WebSocketApi: the push socket at /<stage> on this same port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.bind_address}:{self.port}"

    def bind(self) -> int:
        """Listen (serving starts with :meth:`start`): the port is known before the functions'
        environments are made (the push URLs name it)."""
        if self._server is None:
            front = self

            class Handler(BaseHTTPRequestHandler):
                protocol_version = "HTTP/1.1"
                server_version = "postern-local-front"

                def log_message(self, fmt, *args):  # noqa: D102 - quiet; the function logs what matters
                    log.debug("http %s", _QUERY.sub("?...", fmt % args))  # never a ticket from a query string

                def _serve(self):
                    front.handle(self)

                do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _serve

            self._server = ThreadingHTTPServer((self.bind_address, self.requested_port), Handler)
            self._server.daemon_threads = True
            self.port = self._server.server_address[1]
        return self.port

    def start(self) -> int:
        self.bind()
        self._thread = threading.Thread(target=self._server.serve_forever, name="postern-https-front", daemon=True)
        self._thread.start()
        return self.port

    def stop(self) -> None:
        if self._server is not None:
            if self._thread is not None:  # serve_forever running (shutdown() would wait for it forever)
                self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    # --- one request ----------------------------------------------------------------
    def _reply(self, h: BaseHTTPRequestHandler, status: int, headers: list[tuple[str, str]], body: bytes,
               edge: bool = True, empty: bool = False) -> None:
        names = {n.lower() for n, _ in headers}
        for name, value, override in self.headers if edge else ():  # the response headers policy (CloudFront)
            if override or name.lower() not in names:
                headers = [(n, v) for n, v in headers if n.lower() != name.lower()] + [(name, value)]
        h.send_response(status)
        for name, value in headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                h.send_header(name, value)
        if not empty:  # a 304 has no body and no Content-Length of its own (RFC 9110 §15.4.5)
            h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)

    def _aws_error(self, h, status: int, message: str) -> None:
        self._reply(h, status, [("Content-Type", "application/json")], json.dumps({"message": message}).encode())

    def _ws_route(self, h: BaseHTTPRequestHandler) -> bool:
        """The WebSocket API's part of this port (postern_local.wsfront): True when it answered."""
        path = h.path.partition("?")[0]
        stage = f"/{self.ws.stage}"
        if path == stage and "websocket" in h.headers.get("Upgrade", "").lower():
            self.ws.upgrade(h, lambda hh, status, message: self._reply(
                hh, status, [("Content-Type", "application/json")], json.dumps({"message": message}).encode(),
                edge=False))
            return True
        if path.startswith(stage + "/@connections/"):
            try:
                length = min(int(h.headers.get("Content-Length") or 0), MAX_REQUEST_BODY)
            except ValueError:
                length = 0
            body = h.rfile.read(length) if length > 0 else b""
            self.ws.manage(h, h.command, unquote(path[len(stage + "/@connections/"):]), body,
                           lambda hh, status, headers, data: self._reply(hh, status, headers, data, edge=False))
            return True
        return False

    def _serve_app(self, h: BaseHTTPRequestHandler, behaviour: Behaviour) -> None:
        """The app bucket's part, as CloudFront in front of S3 answers it."""
        h.close_connection = bool(h.headers.get("Content-Length") or h.headers.get("Transfer-Encoding"))
        if h.command not in behaviour.methods:  # CloudFront refuses it before any origin
            return self._reply(h, 403, [("Content-Type", "text/plain; charset=utf-8")],
                               b"This distribution is not configured to allow the HTTP request method.\n")
        path = h.path.partition("?")[0]
        file = self.app.find(path) if self.app is not None else None
        if file is None:
            return self._reply(h, 404, [("Content-Type", "text/plain; charset=utf-8")], b"Not Found\n")
        data = file.read_bytes()
        key = file.relative_to(self.app.root).as_posix()
        etag = '"%s"' % hashlib.md5(data, usedforsecurity=False).hexdigest()  # S3's ETag of a one-part object
        headers = [("Content-Type", webassets.content_type(key)), ("Cache-Control", webassets.cache_control(key)),
                   ("ETag", etag), ("Last-Modified", formatdate(file.stat().st_mtime, usegmt=True))]
        if etag in [t.strip() for t in h.headers.get("If-None-Match", "").split(",")]:
            return self._reply(h, 304, headers, b"", empty=True)
        return self._reply(h, 200, headers, data)

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        if self.ws is not None and self._ws_route(h):
            return None
        if self.routes is not None:
            behaviour = self.routes.route(h.path.partition("?")[0])
            if behaviour.origin == APP:
                return self._serve_app(h, behaviour)
        try:
            length = int(h.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            h.close_connection = True
            return self._aws_error(h, 400, "Bad Request")
        if length > MAX_REQUEST_BODY:
            h.close_connection = True
            if length <= MAX_DRAIN:  # read (and drop) it, so the client hears the answer, not a reset
                while length > 0:
                    length -= len(h.rfile.read(min(length, 64 * 1024)) or b"\0" * length)
            return self._aws_error(h, 413, "Request Entity Too Large")
        body = h.rfile.read(length) if length else b""
        # CloudFront's part: the viewer cannot set the edge headers; the viewer-request function sets them.
        headers = [(n, v) for n, v in h.headers.items() if not n.lower().startswith("x-postern-")]
        headers += [(VIEWER_HOST, h.headers.get("Host", "")), (VIEWER_IP, h.client_address[0]),
                    (VIEWER_PROTO, "http"), (ORIGIN_HEADER, self.origin_secret)]
        event = build_event(h.command, h.path, [(n, v) for n, v in headers if n.lower() != "host"], body,
                            h.client_address[0], region=self.region)
        if len(json.dumps(event)) > MAX_LAMBDA_PAYLOAD:
            return self._aws_error(h, 413, "Request Entity Too Large")
        outcome = self.handler.invoke(event, self.context(self.region))
        if outcome.error is not None:
            from .worker import HandlerTimeout

            if isinstance(outcome.error, HandlerTimeout):
                return self._aws_error(h, 503, "Service Unavailable")
            log.warning("https function failed: %s: %s\n%s", outcome.error.type_name, outcome.error,
                        getattr(outcome.error, "trace", ""))
            return self._aws_error(h, 500, "Internal Server Error")
        r = outcome.response
        if len(json.dumps(r)) > MAX_LAMBDA_PAYLOAD:
            return self._aws_error(h, 500, "Internal Server Error")
        if not isinstance(r, dict) or "statusCode" not in r:  # payload 2.0: anything else is a 200 JSON body
            return self._reply(h, 200, [("Content-Type", "application/json")], json.dumps(r).encode())
        out_headers = [(k, str(v)) for k, v in (r.get("headers") or {}).items()]
        for k, values in (r.get("multiValueHeaders") or {}).items():
            out_headers += [(k, str(v)) for v in values]
        out_headers += [("Set-Cookie", c) for c in r.get("cookies") or []]
        raw = r.get("body") or ""
        data = base64.b64decode(raw) if r.get("isBase64Encoded") else raw.encode("utf-8")
        return self._reply(h, int(r["statusCode"]), out_headers, data)
