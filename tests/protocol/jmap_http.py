"""A test-only HTTPS seam for the JMAP layer, so a real client library can drive it over loopback.

It does what the HTTPS function's JMAP routes do and nothing more: HTTP Basic
against the directory, ``GET /.well-known/jmap`` -> ``session.build``,
``POST /jmap/api`` -> ``api.handle_bytes`` (status and body as the layer says).
TLS from a trustme CA (``ca_file`` for the client). Not the product's front:
the client-library tests move to the Lambda's local adapter when it lands.
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from postern.jmap import api, session
from postern.jmap.account import Account


class JmapHttps:
    def __init__(self, store, directory, tmp_path, submit=None):
        import trustme

        self.store, self.directory, self.submit = store, directory, submit
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1")
        self.ca_file = str(tmp_path / "ca.pem")
        ca.cert_pem.write_to_path(self.ca_file)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert.configure_cert(ctx)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _account(self):
                h = self.headers.get("Authorization", "")
                if not h.startswith("Basic "):
                    return None
                user, _, pw = base64.b64decode(h[6:]).decode().partition(":")
                u = outer.directory.authenticate(user, pw)
                return None if u is None else Account.for_user(u, outer.store, outer.directory, outer.submit)

            def _send(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json" if status == 200 else "application/problem+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                acct = self._account()
                if acct is None:
                    return self._send(401, {"type": "about:blank", "status": 401})
                if self.path != "/.well-known/jmap":
                    return self._send(404, {"type": "about:blank", "status": 404})
                self._send(200, session.build(acct, f"https://127.0.0.1:{outer.port}"))

            def do_POST(self):
                acct = self._account()
                if acct is None:
                    return self._send(401, {"type": "about:blank", "status": 401})
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self._send(*api.handle_bytes(acct, body))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)
