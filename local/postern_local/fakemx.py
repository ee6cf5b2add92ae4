"""A scriptable remote MX for tests and benchmarks: aiosmtpd on 127.0.0.1, port 0.

In:   a :class:`Script` saying, per recipient, what RCPT answers on each
      successive transaction (``"451 4.3.0 try later"``, or None to accept),
      what DATA answers, and how long DATA stalls (timeouts).
Out:  :class:`FakeMX` (``start(port=0)`` -> port, ``stop()``) running its own
      event loop on a thread; ``messages``: every accepted transaction as
      :class:`Received` (mail_from, rcpt_tos, data bytes exactly as sent);
      with ``spool_dir`` each is also written there as ``<n>.eml`` (the
      local stack's outbound sink, so ``make run`` shows what left).
Fails: never on purpose; a script error shows up as a 451 to the client.

aiosmtpd's ``Controller`` cannot bind port 0, hence the small listener here.
Loopback only.
"""

from __future__ import annotations

import asyncio
import threading
import warnings
from collections import defaultdict, deque
from dataclasses import dataclass, field

from aiosmtpd.smtp import SMTP


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes


@dataclass
class Script:
    rcpt: dict[str, deque] = field(default_factory=lambda: defaultdict(deque))  # addr -> replies per transaction
    data: deque = field(default_factory=deque)  # replies for successive DATA commands (None = 250)
    data_delay: float = 0.0  # seconds DATA stalls before answering (client timeouts)
    mail: deque = field(default_factory=deque)  # replies for successive MAIL commands (None = 250)

    def on_rcpt(self, addr: str, *replies) -> Script:
        self.rcpt[addr.lower()].extend(replies)
        return self

    def on_data(self, *replies) -> Script:
        self.data.extend(replies)
        return self


class _Handler:
    def __init__(self, mx: FakeMX):
        self.mx = mx

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        reply = self.mx.script.mail.popleft() if self.mx.script.mail else None
        if reply:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        q = self.mx.script.rcpt.get(address.lower())
        reply = q.popleft() if q else None
        if reply:
            self.mx.rejections.append((address, reply))
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.mx.script.data_delay:
            await asyncio.sleep(self.mx.script.data_delay)
        reply = self.mx.script.data.popleft() if self.mx.script.data else None
        if reply:
            return reply
        got = Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content))
        with self.mx.lock:
            self.mx.messages.append(got)
            n = len(self.mx.messages)
        if self.mx.spool_dir is not None:
            head = f"X-Postern-Local-Envelope: from <{got.mail_from}> to {', '.join(got.rcpt_tos)}\r\n"
            (self.mx.spool_dir / f"{n:05d}.eml").write_bytes(head.encode("utf-8", "replace") + got.data)
        return f"250 2.0.0 queued as fake{n}"


class FakeMX:
    def __init__(self, hostname: str = "mx.fake.test", script: Script | None = None, ssl_context=None,
                 credentials: tuple[str, str] | None = None, smtputf8: bool = True, spool_dir=None):
        self.hostname = hostname
        self.spool_dir = spool_dir  # pathlib.Path: keep a copy of each accepted message there
        self.script = script or Script()
        self.messages: list[Received] = []
        self.rejections: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.ssl_context = ssl_context
        self.credentials = credentials  # (user, password): AUTH required, like a smarthost
        self.smtputf8 = smtputf8  # advertise SMTPUTF8 (RFC 6531)
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server = None
        self._thread: threading.Thread | None = None

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        from aiosmtpd.smtp import AuthResult, LoginPassword

        ok = (isinstance(auth_data, LoginPassword) and self.credentials is not None
              and (auth_data.login.decode(), auth_data.password.decode()) == self.credentials)
        return AuthResult(success=ok)

    def _factory(self):
        auth = {}
        if self.credentials is not None:
            auth = {"authenticator": self._authenticate, "auth_required": True, "auth_require_tls": False}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # AUTH without TLS: deliberate, loopback only
            return SMTP(_Handler(self), hostname=self.hostname, decode_data=False, enable_SMTPUTF8=self.smtputf8,
                        tls_context=self.ssl_context, require_starttls=False, data_size_limit=None, **auth)

    def start(self, port: int = 0) -> int:
        ready = threading.Event()
        failed: list[BaseException] = []
        if self.spool_dir is not None:
            self.spool_dir.mkdir(parents=True, exist_ok=True)

        def run():
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            try:
                self._server = self._loop.run_until_complete(self._loop.create_server(self._factory, "127.0.0.1", port))
            except OSError as exc:  # port in use: start() raises it
                failed.append(exc)
                ready.set()
                self._loop.close()
                return
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()
            self._server.close()
            self._loop.run_until_complete(self._server.wait_closed())
            self._loop.close()

        self._thread = threading.Thread(target=run, name="fake-mx", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failed:
            self._thread.join(5)
            self._thread = None
            self._loop = None
            raise failed[0]
        return self.port

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def reset(self) -> None:
        with self.lock:
            self.messages.clear()
            self.rejections.clear()
        self.script = Script()

    def __enter__(self) -> FakeMX:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
