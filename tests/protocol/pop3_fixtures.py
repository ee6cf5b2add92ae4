"""Shared data and helpers for the POP3 protocol tests (poplib over 127.0.0.1:0)."""

from __future__ import annotations

import socket

from helpers import wait_for  # noqa: F401 - the one condition wait, re-exported for the POP3 tests

USER = "alice@example.test"
PASSWORD = "correct horse battery"
OTHER = "bob@example.test"
PREFIX = b"Return-Path: <carol@remote.test>\r\nDelivered-To: alice@example.test\r\n"

MSG1 = (
    b"From: carol@remote.test\r\nTo: alice@example.test\r\nSubject: dots\r\n\r\n"
    b"Hello\r\n.starts with a dot\r\n..two dots\r\n.\r\nmiddle . dot\r\nlast\r\n"
)
MSG2 = b"From: dave@remote.test\r\nSubject: short\r\n\r\nline 1\r\nline 2\r\nline 3\r\nline 4\r\n"
MSG3 = b"Subject: no final newline\r\n\r\nbody without CRLF"
MESSAGES = [MSG1, MSG2, MSG3]


def populate(backend, messages=MESSAGES, *, user=USER, password=PASSWORD):
    """Domain, user and INBOX contents through the one ingest path (first delivery creates INBOX)."""
    from postern import mailboxes

    d = backend.directory
    if d.get_domain("example.test") is None:
        d.add_domain("example.test")
    d.add_user(user, password)
    results = [mailboxes.append(backend.store, user, "INBOX", raw, prefix=PREFIX) for raw in messages]
    return results


def logical(raw: bytes) -> bytes:
    return PREFIX + raw


def lines_of(data: bytes) -> list[bytes]:
    """What poplib returns for a RETR of ``data``: its CRLF lines, terminators stripped."""
    out = data.split(b"\r\n")
    if out and out[-1] == b"":
        out.pop()
    return out


class Raw:
    """A byte-level client for what poplib cannot send (pipelining, junk, oversize lines)."""

    def __init__(self, port: int, sock: socket.socket | None = None):
        self.sock = sock or socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(self.buf)
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line + b"\r\n"

    def until_terminator(self) -> bytes:
        """A whole multi-line response, status line to ``.CRLF`` inclusive, as on the wire."""
        out = self.line()
        while True:
            ln = self.line()
            out += ln
            if ln == b".\r\n":
                return out

    def closed(self) -> bool:
        """True when the server has closed the connection (EOF after any buffered bytes)."""
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()



