"""Calls from the rules proxy to the backend behind it (moto's WSGI app), as the administrator.

In:   the backend WSGI application and the region.
Out:  :class:`Upstream`: ``call(environ)`` forwards a client's request and
      returns ``(status, headers, body iterable)``; ``json(service, target,
      payload)`` and ``rest(service, method, path)`` make the proxy's own small
      look-ups (a queue's MaximumMessageSize, whether an SES identity exists)
      without going through the rules again.
Fails: ``json``/``rest`` return ``(status code, parsed body or {})``; they
      never raise for an AWS error (the caller decides what a 404 means).
"""

from __future__ import annotations

import io
import json
import sys
from datetime import datetime, timezone

from .identities import ADMIN_KEY


class Upstream:
    def __init__(self, app, region: str, host: str = "127.0.0.1:0"):
        self.app = app
        self.region = region
        self.host = host

    def call(self, environ: dict):
        captured = {}

        def start_response(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, list(headers)
            return lambda data: None

        result = self.app(environ, start_response)
        try:
            body = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        return captured.get("status", "500 Internal Server Error"), captured.get("headers", []), body

    def _environ(self, service: str, method: str, path: str, body: bytes, headers: dict[str, str]) -> dict:
        date = datetime.now(timezone.utc).strftime("%Y%m%d")
        env = {
            "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "", "SCRIPT_NAME": "",
            "SERVER_NAME": "127.0.0.1", "SERVER_PORT": self.host.rsplit(":", 1)[-1], "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False,
            "CONTENT_LENGTH": str(len(body)), "HTTP_HOST": self.host,
            "HTTP_AUTHORIZATION": (f"AWS4-HMAC-SHA256 Credential={ADMIN_KEY}/{date}/{self.region}/{service}/"
                                   f"aws4_request, SignedHeaders=host, Signature=0"),
        }
        for k, v in headers.items():
            if k.lower() == "content-type":
                env["CONTENT_TYPE"] = v
            else:
                env["HTTP_" + k.upper().replace("-", "_")] = v
        return env

    def json(self, service: str, target: str, payload: dict, version: str = "1.0") -> tuple[int, dict]:
        env = self._environ(service, "POST", "/", json.dumps(payload).encode(),
                            {"Content-Type": f"application/x-amz-json-{version}", "X-Amz-Target": target})
        status, _headers, body = self.call(env)
        return int(status.split()[0]), _loads(body)

    def rest(self, service: str, method: str, path: str) -> tuple[int, dict]:
        status, _headers, body = self.call(self._environ(service, method, path, b"", {}))
        return int(status.split()[0]), _loads(body)


def _loads(body: bytes) -> dict:
    try:
        out = json.loads(body or b"{}")
    except ValueError:
        return {}
    return out if isinstance(out, dict) else {}
