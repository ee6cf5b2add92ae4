"""The rules proxy: a WSGI application in front of moto, and the server that runs both.

In:   HTTP requests from every local process (``AWS_ENDPOINT_URL``), signed
      with SigV4 by boto3.
Out:  :class:`RulesApp` (WSGI): for each AWS call, who is calling
      (:class:`~postern_local.rules.identities.Identities`; an unknown key is
      refused as AWS refuses one), whether their role allows it
      (:mod:`~postern_local.rules.actions`, :mod:`~postern_local.rules.policy`),
      then the service limits (:mod:`~postern_local.rules.sqs`,
      :mod:`~postern_local.rules.ses`, :mod:`~postern_local.rules.dynamodb`);
      a call that passes goes to moto unchanged (a batch minus its refused
      entries). ``refusals`` keeps the last refusals (component, action,
      resource or limit, error code, message) and each one is logged at
      WARNING on ``postern.local.rules``: in local mode a refusal means the
      code or the template would fail on AWS.
      :class:`RulesServer`: moto's WSGI app wrapped by :class:`RulesApp`,
      served on a loopback port by a threaded werkzeug server (as moto's own
      ThreadedMotoServer does): ``start()``, ``endpoint``, ``stop()``.
Fails: ``RulesServer.start()`` raises OSError for a port in use. A request the
      proxy cannot parse goes to moto unchecked (AWS would reject it anyway).

moto is called in-process (no second HTTP hop); the proxy's own look-ups
(queue attributes, SES identities) go to moto directly as the administrator.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import threading
from collections import deque
from dataclasses import dataclass

from . import Answer, Rewrite, RulesConfig, presigned
from .actions import NO_PERMISSION_NEEDED, required
from .acm import AcmRules
from .dynamodb import DynamoRules
from .identities import Identities, Principal
from .roles import ACCOUNT
from .ses import SesRules
from .sqs import SqsRules
from .upstream import Upstream
from .wire import AwsError, Call, error_response, parse

log = logging.getLogger("postern.local.rules")

INVALID_KEY = {"s3": ("InvalidAccessKeyId", 403), "dynamodb": ("UnrecognizedClientException", 400)}


@dataclass(frozen=True)
class Refusal:
    component: str
    target: str  # service:Operation
    code: str
    message: str


class RulesApp:
    def __init__(self, app, identities: Identities, region: str, config: RulesConfig | None = None):
        self.app = app
        self.identities = identities
        self.region = region
        self.config = config or RulesConfig()
        self.upstream = Upstream(app, region)
        self.sqs = SqsRules(self.upstream)
        self.ses = SesRules(self.upstream, region, sandbox=self.config.ses_sandbox)
        self.dynamodb = DynamoRules()
        self.acm = AcmRules()
        self.refusals: deque[Refusal] = deque(maxlen=1000)
        self._lock = threading.Lock()

    # --- WSGI ---------------------------------------------------------------
    def __call__(self, environ, start_response):
        if not self.config.enabled:
            return self.app(environ, start_response)
        body = _read_body(environ)
        _set_body(environ, body)
        if presigned.is_post_upload(environ):
            return self._post_upload(environ, body, start_response)
        call = parse(environ, body)
        if call is None:
            return self.app(environ, start_response)
        try:
            if call.service == "s3":
                presigned.check_query(call.query, call.headers)
            principal = self._principal(call)
            self._authorize(principal, call)
            rewrite = self._limits(call)
        except AwsError as err:
            return self._refuse(call, getattr(err, "component", "?"), err, environ, start_response)
        if isinstance(rewrite, Answer):
            out = json.dumps(rewrite.body).encode()
            ctype = "application/json" if call.protocol == "rest-json" else f"application/x-amz-json-{call.json_version}"
            start_response("200 OK", [("Content-Type", ctype), ("Content-Length", str(len(out)))])
            return [out]
        if rewrite is not None:
            return self._rewritten(call, rewrite, environ, start_response)
        if call.service != "sqs":
            return self.app(environ, start_response)
        status, headers, out = self.upstream.call(environ)
        code = int(status.split()[0])
        self.sqs.after(call, code, _loads(out) if self.sqs.wants_response(call) and code == 200 else None)
        start_response(status, headers)
        return [out]

    def _post_upload(self, environ, body: bytes, start_response):
        """A browser-based upload (presigned POST): S3's policy checks, then the signer's permission."""
        bucket = environ.get("PATH_INFO", "/").strip("/")
        call = Call(service="s3", operation="PostObject", protocol="rest-xml", access_key="", region=self.region,
                    method="POST", path=f"/{bucket}", query={}, headers={}, body=b"", params={"Bucket": bucket})

        def secret_of(key: str) -> str | None:
            p = self.identities.lookup(key)
            return p.secret_key if p is not None else None

        try:
            upload = presigned.post_upload(environ, body, secret_of)
            call = Call(service="s3", operation="PutObject", protocol="rest-xml", access_key=upload.access_key,
                        region=upload.region, method="POST", path=f"/{bucket}/{upload.key}", query={}, headers={},
                        body=b"", params={"Bucket": upload.bucket, "Key": upload.key})
            self._authorize(self._principal(call), call)
        except AwsError as err:
            p = self.identities.lookup(call.access_key) if call.access_key else None
            return self._refuse(call, getattr(err, "component", p.component if p else "?"), err, environ,
                                start_response)
        _set_body(environ, body)
        return self.app(environ, start_response)

    # --- checks -------------------------------------------------------------
    def _principal(self, call: Call) -> Principal:
        p = self.identities.lookup(call.access_key)
        if p is None:
            code, status = INVALID_KEY.get(call.service, ("InvalidClientTokenId", 403))
            err = AwsError(code, "The security token included in the request is invalid.", status)
            err.component = f"unknown key {call.access_key[:8]}..."
            raise err
        return p

    def _authorize(self, principal: Principal, call: Call) -> None:
        if principal.is_admin:
            return
        policy = principal.role.policy
        for action, resource in required(call, self.region, ACCOUNT):
            if action in NO_PERMISSION_NEEDED:
                continue
            decision = policy.decide(action, resource)
            if decision:
                continue
            why = ("with an explicit deny in an identity-based policy" if decision.denied_by is not None
                   else f"because no identity-based policy allows the {action} action")
            if resource == "*" and not decision:
                why += " (postern_local.rules.actions cannot name this call's resource: add it there)"
            json_service = call.protocol in ("json", "rest-json") and call.service != "sqs"
            err = AwsError("AccessDeniedException" if json_service else "AccessDenied",
                           f"User: {principal.arn} is not authorized to perform: {action} on resource: "
                           f"{resource} {why}", 400 if call.service == "dynamodb" else 403)
            err.component = principal.component
            raise err

    def _limits(self, call: Call) -> Rewrite | Answer | None:
        rules = {"sqs": self.sqs, "ses": self.ses, "dynamodb": self.dynamodb, "acm": self.acm}.get(call.service)
        if rules is None:
            return None
        try:
            return rules.before(call)
        except AwsError as err:
            p = self.identities.lookup(call.access_key)
            err.component = p.component if p else "?"
            raise

    # --- answers ------------------------------------------------------------
    def _refuse(self, call: Call, component: str, err: AwsError, environ, start_response):
        self.refusals.append(Refusal(component, call.target, err.code, err.message))
        log.warning("refused %s by %s: %s %s", call.target, component, err.code, err.message)
        status, headers, body = error_response(call, err)
        if environ.get("REQUEST_METHOD") == "HEAD":
            body = b""
            headers = [(k, "0" if k == "Content-Length" else v) for k, v in headers]
        start_response(status, headers)
        return [body]

    def _rewritten(self, call: Call, rewrite: Rewrite, environ, start_response):
        for f in rewrite.failed:
            p = self.identities.lookup(call.access_key)
            self.refusals.append(Refusal(p.component if p else "?", call.target, f["Code"], f["Message"]))
            log.warning("refused an entry of %s: %s %s", call.target, f["Code"], f["Message"])
        if not rewrite.params.get("Entries"):
            out = json.dumps({"Successful": [], "Failed": rewrite.failed}).encode()
            start_response("200 OK", [("Content-Type", f"application/x-amz-json-{call.json_version}"),
                                      ("Content-Length", str(len(out)))])
            return [out]
        _set_body(environ, json.dumps(rewrite.params).encode())
        status, headers, out = self.upstream.call(environ)
        if status.startswith("200"):
            response = _loads(out)
            response["Failed"] = list(response.get("Failed") or []) + rewrite.failed
            out = json.dumps(response).encode()
            headers = [(k, str(len(out)) if k.lower() == "content-length" else v) for k, v in headers
                       if k.lower() != "x-amz-crc32"]
        start_response(status, headers)
        return [out]


def _read_body(environ) -> bytes:
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    length = environ.get("CONTENT_LENGTH")
    if length:
        try:
            return stream.read(int(length))
        except ValueError:
            return b""
    if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower() or environ.get("wsgi.input_terminated"):
        return stream.read()
    return b""


def _set_body(environ, body: bytes) -> None:
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    environ.pop("HTTP_TRANSFER_ENCODING", None)


def _loads(body: bytes) -> dict:
    try:
        out = json.loads(body or b"{}")
    except ValueError:
        return {}
    return out if isinstance(out, dict) else {}


# ---------------------------------------------------------------- the server
class RulesServer:
    """moto behind the rules proxy on one loopback port."""

    def __init__(self, identities: Identities, region: str, config: RulesConfig | None = None, port: int = 0,
                 host: str = "127.0.0.1"):
        self.host = host
        self._requested_port = port
        self.identities = identities
        self.region = region
        self.config = config or RulesConfig()
        self.app: RulesApp | None = None
        self._server = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def start(self) -> RulesServer:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one INFO line per AWS request otherwise
        if self._requested_port:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind((self.host, self._requested_port))
                except OSError as exc:
                    raise OSError(exc.errno, f"moto port {self.host}:{self._requested_port} is in use") from None
        from .. import moto_speed
        from ..moto_atomic import install

        install()  # DynamoDB writes are atomic per item; moto's are not across request threads
        moto_speed.install()  # SQS and Query costs independent of the backlog (moto's grow with it)
        self.app = RulesApp(DomainDispatcherApplication(create_backend_app), self.identities, self.region,
                            self.config)
        self._server = make_server(self.host, self._requested_port, self.app, threaded=True,
                                   request_handler=MotoRequestHandler)
        self.port = self._server.server_address[1]
        self.app.upstream.host = f"{self.host}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="postern-rules-proxy", daemon=True)
        self._thread.start()
        return self

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
