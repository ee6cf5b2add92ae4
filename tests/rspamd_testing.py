"""What the tests that ask the real rspamd share: a TEST-NET client address and a fake clamd.

In:   an rspamd started by ``postern_local.rspamd.LocalRspamd`` (DNS pointed at a stub answering
      NXDOMAIN at once, ``local_addrs`` emptied: ``rspamd/local.d/options.inc``).
Out:  :class:`RspamdFromTestNet` - the gateway's rspamd client, except that every scan tells
      rspamd the SMTP client was ``CLIENT_IP`` (RFC 5737 TEST-NET-3) instead of 127.0.0.1, so
      rspamd scores a message as it would a stranger on the internet, the same on every run;
      ``seen`` lists the facts each scan carried. :class:`FakeClamd` - a clamd on a free loopback
      port speaking the INSTREAM protocol rspamd's clamav scanner uses
      (``/usr/share/rspamd/lualib/lua_scanners/clamav.lua``: ``zINSTREAM\\0``, chunks of a
      4-byte big-endian length and the data, a zero length to end; the answer ``stream: OK\\0``
      or ``stream: <name> FOUND\\0``): it finds the EICAR test string and nothing else; with
      ``hung`` set it takes the stream and never answers.
Fails: FakeClamd drops a connection that sends more than ``MAX_STREAM`` bytes or an unknown
      command (clamd's own ``INSTREAM size limit exceeded`` / ``UNKNOWN COMMAND``).
"""

from __future__ import annotations

import dataclasses
import socket
import socketserver
import struct
import threading

from postern_gateway.spam.rspamd import Rspamd

CLIENT_IP = "203.0.113.25"  # RFC 5737 TEST-NET-3: never routed, never listed
# The EICAR test file (eicar.org), in two pieces so that no scanner flags this source file.
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
EICAR_NAME = "Eicar-Test-Signature"
MAX_STREAM = 26 * 1024 * 1024


class RspamdFromTestNet(Rspamd):
    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.seen: list = []

    async def check(self, prefix, raw, facts):
        facts = dataclasses.replace(facts, client_ip=CLIENT_IP)
        self.seen.append(facts)
        return await super().check(prefix, raw, facts)


def scanner_for(r, *, timeout: float = 10, hostname: str = "mx.example.test") -> RspamdFromTestNet:
    """The client of LocalRspamd ``r`` (scans and learning) from TEST-NET."""
    return RspamdFromTestNet(r.url, r.controller_url, timeout=timeout, hostname=hostname)


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        clamd: FakeClamd = self.server.clamd  # type: ignore[attr-defined]
        sock: socket.socket = self.request
        sock.settimeout(30)
        f = sock.makefile("rb")
        command = _command(f)
        if command == b"PING":
            sock.sendall(b"PONG\0")
            return
        if command != b"INSTREAM":
            sock.sendall(b"UNKNOWN COMMAND\0")
            return
        data = bytearray()
        while True:
            head = f.read(4)
            if len(head) < 4:
                return
            (size,) = struct.unpack(">I", head)
            if size == 0:
                break
            if len(data) + size > MAX_STREAM:
                sock.sendall(b"INSTREAM size limit exceeded. ERROR\0")
                return
            data += f.read(size)
        if clamd.hung:
            clamd.released.wait(60)  # a clamd that takes the stream and never answers
            return
        found = EICAR in data
        with clamd.lock:
            clamd.scans.append(EICAR_NAME if found else "OK")
        sock.sendall(f"stream: {EICAR_NAME} FOUND\0".encode() if found else b"stream: OK\0")


def _command(f) -> bytes:
    """``z<COMMAND>\\0`` or ``n<COMMAND>\\n`` (clamd's two framings), at most 32 bytes."""
    first = f.read(1)
    end = b"\0" if first == b"z" else b"\n"
    out = bytearray()
    while len(out) < 32 and (c := f.read(1)) and c != end:
        out += c
    return bytes(out)


class FakeClamd:
    def __init__(self):
        self.scans: list[str] = []  # "OK" or the virus found, one per INSTREAM
        self.lock = threading.Lock()
        self.hung = False  # True: take each stream and never answer (rspamd's clamav timeout decides)
        self.released = threading.Event()
        self._server: socketserver.ThreadingTCPServer | None = None

    def __enter__(self) -> FakeClamd:
        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.clamd = self  # type: ignore[attr-defined]
        self._server = server
        threading.Thread(target=server.serve_forever, name="fake-clamd", daemon=True).start()
        return self

    @property
    def address(self) -> str:
        host, port = self._server.server_address
        return f"{host}:{port}"

    def __exit__(self, *exc) -> None:
        self.released.set()
        self._server.shutdown()
        self._server.server_close()


class LessonTap:
    """One user's spam lessons read off the stack's learn queue (``LearnQueue``: where the JMAP function, and
    a gateway without rspamd, put them) by the gateway's own reader, as a task with rspamd reads them
    (:class:`postern_gateway.spam.relay.LessonReader`): ``got`` lists (spam, mailbox name, copies) and each
    is handed on to ``learner`` (a Learner teaching a real rspamd) when one is given. The queue is the
    session's: another user's lesson is taken off it and ignored."""

    def __init__(self, stack, user: str, learner=None):
        from postern_gateway.spam.relay import LessonReader

        self.user, self.learner = user.lower(), learner
        self.got: list[tuple[bool, str, int]] = []
        self.reader = LessonReader(stack.gateway.backend, self, stack.resources.queues["LearnQueue"])
        self.reader._loop = stack._loop  # the gateway's loop, as LessonReader.start sets it

    async def teach(self, spam: bool, mb, uids: list[int]) -> None:
        if mb.user != self.user:
            return
        self.got.append((spam, mb.name, len(uids)))
        if self.learner is not None:
            await self.learner.teach(spam, mb, uids)

    def lessons(self, at_least: int, ceiling: float = 60.0) -> list[tuple[bool, str, int]]:
        """Every lesson of the user so far, read until there are ``at_least`` (or the ceiling passed), then
        one more (short) poll so that a lesson too many already sent would be seen too."""
        import time

        deadline = time.monotonic() + ceiling
        while len(self.got) < at_least and time.monotonic() < deadline:
            self.reader.receive_once(1)
        while self.reader.receive_once(0):
            pass
        return list(self.got)
