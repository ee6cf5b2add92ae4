"""Raw loopback sinks that record the exact bytes an outbound transport puts on the wire.

``SmtpSink``: a deliberately minimal and deliberately lenient SMTP server on
127.0.0.1:0 (no aiosmtpd: its parser would normalise what we want to see).
It reads as the receivers fooled by SMTP smuggling did: a line ends at CRLF,
a bare CR or a bare LF, and DATA ends at the first "." line so delimited.
Every byte the client sends is kept in ``transcript``; the DATA section as
sent (still dot-stuffed) in ``payloads``; whatever follows is read as
commands again, so a smuggled second transaction shows up in ``commands``.
On canonical input (every CR and LF in a CRLF) this reading and the strict
one of RFC 5321 are the same.

``HttpSink``: an HTTP server on 127.0.0.1:0 answering every POST with
``{"MessageId": ...}`` (SESv2 SendEmail's reply) and keeping each request
body, so the raw bytes SES would be handed can be decoded from the JSON.
"""

from __future__ import annotations

import http.server
import json
import re
import socket
import socketserver
import threading


_EOL = re.compile(rb"\r\n|\r|\n")
_END = re.compile(rb"(?:\r\n|\r|\n)\.(?:\r\n|\r|\n)")


class _SmtpHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        try:
            self._handle()
        except OSError:
            return  # the client went away (the smuggling control test's confused client does)

    def _handle(self) -> None:
        sink: SmtpSink = self.server.sink  # type: ignore[attr-defined]
        conn: socket.socket = self.request
        conn.settimeout(10)
        conn.sendall(b"220 sink.test ESMTP raw sink\r\n")
        buf = b""
        in_data = False
        while True:
            try:
                chunk = conn.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            with sink.lock:
                sink.transcript += chunk
            buf += chunk
            while True:
                if in_data:
                    # DATA starts right after 354: a leading "." line ends it too (empty message).
                    probe = b"\r\n" + buf
                    m = _END.search(probe)
                    if m is None or (m.end() == len(probe) and probe.endswith(b"\r")):
                        break  # not there yet (or a CR whose LF may follow)
                    with sink.lock:
                        sink.payloads.append(probe[2:m.end()])
                    buf = probe[m.end():]
                    in_data = False
                    conn.sendall(b"250 2.0.0 queued\r\n")
                    continue
                m = _EOL.search(buf)
                if m is None or (m.end() == len(buf) and buf.endswith(b"\r")):
                    break
                line, buf = buf[:m.start()], buf[m.end():]
                with sink.lock:
                    sink.commands.append(line)
                verb = line[:4].upper()
                if verb == b"EHLO":
                    conn.sendall(b"250-sink.test\r\n250-SIZE 100000000\r\n250 8BITMIME\r\n")
                elif verb == b"DATA":
                    conn.sendall(b"354 go ahead\r\n")
                    in_data = True
                elif verb == b"QUIT":
                    conn.sendall(b"221 2.0.0 bye\r\n")
                    return
                else:
                    conn.sendall(b"250 2.0.0 ok\r\n")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class SmtpSink:
    def __init__(self):
        self.lock = threading.Lock()
        self.transcript = b""
        self.commands: list[bytes] = []
        self.payloads: list[bytes] = []
        self._server = _Server(("127.0.0.1", 0), _SmtpHandler)
        self._server.sink = self  # type: ignore[attr-defined]
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="smtp-sink", daemon=True)

    def __enter__(self) -> SmtpSink:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def transactions(self) -> list[bytes]:
        """The MAIL commands the sink saw (one per transaction)."""
        return [c for c in self.commands if c[:10].upper() == b"MAIL FROM:"]


class HttpSink:
    def __init__(self, reply: dict | None = None):
        self.bodies: list[bytes] = []
        sink = self
        body = json.dumps(reply or {"MessageId": "sink-0001"}).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                n = int(self.headers.get("Content-Length", "0"))
                sink.bodies.append(self.rfile.read(n))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):  # quiet
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="http-sink", daemon=True)

    def __enter__(self) -> HttpSink:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
