"""Sans-I/O IMAP command receiver (Stalwart ``imap-proto/src/receiver.rs``).

In:   bytes from the connection, fed in any chunking with :meth:`Receiver.feed`.
Out:  :meth:`Receiver.next` returns one event:
        * :class:`NeedMore`        - nothing complete yet, read more bytes;
        * :class:`Continue`        - a synchronising literal ``{n}`` was announced and
                                     accepted: send ``+`` (RFC 3501 §7.5), then call again;
        * :class:`Complete`        - one whole command: its lines and literals, verbatim;
        * :class:`Reject`          - a limit was hit: send ``response`` (tagged BAD or
                                     NO [TOOBIG]); the receiver has already arranged to
                                     skip the rest of that command (or asks to ``close``).
      Literal+ ``{n+}`` (RFC 7888) gets no continuation.
Fails: never raises on input; every limit becomes a Reject.

Limits: ``max_line`` per line, ``max_literal`` per literal (``max_append_literal``
for APPEND, i.e. APPENDLIMIT), ``max_command`` for the whole command.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..counted import take_counted

LITERAL_RE = re.compile(rb"\{(\d{1,20})(\+?)\}\r?\n\Z")
TAG_RE = re.compile(rb"[^\s(){%*\"\\+]+")


@dataclass(frozen=True)
class NeedMore:
    pass


@dataclass(frozen=True)
class Continue:
    size: int


@dataclass(frozen=True)
class Complete:
    data: bytes


@dataclass(frozen=True)
class Reject:
    response: bytes
    close: bool = False


NEED_MORE = NeedMore()


def _in_open_quote(line: bytes, end: int) -> bool:
    """Is ``line[end]`` inside a quoted string that opened earlier on the line? (RFC 3501 §4.3:
    a quoted string cannot span lines or literals, so one line is the whole context.) Linear:
    ``bytes.find`` per quote, each backslash run counted once."""
    i = 0
    while True:
        q = line.find(b'"', i, end)
        if q < 0:
            return False
        j = q + 1
        while True:
            k = line.find(b'"', j, end)
            if k < 0:
                return True
            b = k
            while b > j and line[b - 1] == 0x5C:  # an odd run of backslashes escapes the quote
                b -= 1
            if (k - b) % 2 == 0:
                break
            j = k + 1
        i = k + 1


def _literal(line: bytes):
    """The ``{n}`` / ``{n+}`` announcement that ends ``line``, unless it is inside a quoted string
    (``"foo {5}`` CRLF is a syntax error to answer BAD, not a literal to wait for)."""
    m = LITERAL_RE.search(line)
    if m is None or _in_open_quote(line, m.start()):
        return None
    return m


def _tag_of(data: bytes) -> bytes:
    m = TAG_RE.match(data)
    return m.group(0)[:64] if m else b"*"


def _command_of(data: bytes) -> bytes:
    parts = data.split(b" ", 3)
    name = parts[1].upper() if len(parts) > 1 else b""
    if name == b"UID" and len(parts) > 2:
        name = parts[2].upper()
    return name.strip()


class Receiver:
    def __init__(self, *, max_line: int = 64 * 1024, max_literal: int = 256 * 1024,
                 max_append_literal: int = 25 * 1024 * 1024, max_command: int | None = None):
        self.max_line = max_line
        self.max_literal = max_literal
        self.max_append_literal = max_append_literal
        self.max_command = max_command or max_append_literal + max_line * 4
        self._buf = bytearray()
        self._cur = bytearray()  # the command so far
        self._need = 0  # literal bytes still to come
        self._skip = 0  # bytes of a rejected non-synchronising literal to discard
        self._skip_rest = False  # discard lines until the end of the rejected command
        self._skip_line = False  # discard until the end of an over-long line

    def feed(self, data: bytes) -> None:
        self._buf += data

    def discard_buffer(self) -> None:
        """Drop everything buffered (after STARTTLS: RFC 3501 §6.2.1, no plaintext injection)."""
        self._buf.clear()
        self._cur.clear()
        self._need = self._skip = 0
        self._skip_rest = self._skip_line = False

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def _reject(self, response: bytes, close: bool = False) -> Reject:
        return Reject(response, close)

    def next(self):
        while True:
            if self._skip:
                self._skip = take_counted(self._buf, self._skip)
                if self._skip:
                    return NEED_MORE
            if self._need:
                self._need = take_counted(self._buf, self._need, self._cur)
                if self._need:
                    return NEED_MORE
            nl = self._buf.find(b"\n")
            if nl < 0:
                if len(self._buf) > self.max_line:
                    if self._skip_line or self._skip_rest:
                        self._buf.clear()
                        return NEED_MORE
                    tag = _tag_of(bytes(self._cur or self._buf))
                    self._buf.clear()
                    self._cur.clear()
                    self._skip_line = True
                    return self._reject(tag + b" BAD Command line too long\r\n")
                return NEED_MORE
            line = bytes(self._buf[: nl + 1])
            del self._buf[: nl + 1]
            if self._skip_line:
                self._skip_line = False
                continue
            if self._skip_rest:
                m = _literal(line)
                if m and m.group(2):
                    self._skip = int(m.group(1))
                elif not m:
                    self._skip_rest = False
                # a synchronising literal in a rejected command: the client waits for "+", we
                # never send it; it reads our tagged reply instead (RFC 3501 §7.5).
                continue
            if len(line) > self.max_line:
                tag = _tag_of(bytes(self._cur or line))
                self._cur.clear()
                return self._reject(tag + b" BAD Command line too long\r\n")
            self._cur += line
            m = _literal(line)
            if not m:
                data = bytes(self._cur)
                self._cur.clear()
                if not data.strip():
                    continue  # empty lines between commands are ignored
                return Complete(data)
            size, plus = int(m.group(1)), bool(m.group(2))
            head = bytes(self._cur)
            limit = self.max_append_literal if _command_of(head) == b"APPEND" else self.max_literal
            too_big = size > limit or len(self._cur) + size > self.max_command
            if too_big:
                tag = _tag_of(head)
                self._cur.clear()
                if plus:
                    # RFC 7888 §4: the bytes come anyway; swallow them and the rest of the command.
                    self._skip = size
                    self._skip_rest = True
                if _command_of(head) == b"APPEND":
                    return self._reject(tag + b" NO [TOOBIG] Message exceeds APPENDLIMIT\r\n")
                return self._reject(tag + b" BAD Literal too large\r\n")
            self._need = size
            if not plus:
                return Continue(size)
