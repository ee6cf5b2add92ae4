"""POP3 wire format, sans-I/O: command lines in, response bytes out.

In:   bytes from the client (fed to :class:`LineBuffer`), one command line
      at a time (:func:`parse_command`), and message bytes to send
      (:class:`DotStuffer`, :func:`take_lines`).
Out:  :class:`Command` (keyword upper-cased, arguments), and the bytes of
      ``+OK`` / ``-ERR`` / multi-line responses (:func:`ok`, :func:`err`,
      :func:`multiline`).
Fails: :class:`LineTooLong` when a line exceeds its bound (the caller
      answers ``-ERR`` and drops the connection); :class:`BadCommand` for a
      line that is not a POP3 command (the caller answers ``-ERR`` with its
      text); :class:`Pop3Error` is how the session refuses a command
      (``-ERR [code] text``). Nothing here touches a socket, a clock or the
      mail store.

RFC 1939 §3: commands are a case-insensitive keyword, optionally followed by
arguments separated by a single space, ending in CRLF; responses are a
status indicator, text, CRLF; multi-line responses end with ``.CRLF`` and
every line starting with ``.`` is byte-stuffed.
"""

from __future__ import annotations

from dataclasses import dataclass

# RFC 2449 §4 allows 255 octets for a command line; we are generous but bounded.
MAX_LINE = 1000
# RFC 5034 §4: SASL client responses are not held to the command-line limit.
MAX_SASL_LINE = 8192
MAX_NUMBER_DIGITS = 10

OK = b"+OK"
ERR = b"-ERR"
CRLF = b"\r\n"
TERMINATOR = b".\r\n"

# RFC 2449 §8 / RFC 3206 extended response codes.
CODE_AUTH = "AUTH"  # credentials or mechanism problem, RFC 3206 §4
CODE_SYS_TEMP = "SYS/TEMP"  # transient system problem, RFC 3206 §4
CODE_SYS_PERM = "SYS/PERM"
CODE_IN_USE = "IN-USE"  # maildrop already locked, RFC 2449 §8.1.1


class LineTooLong(ValueError):
    """A line exceeded the bound; the connection is dropped after ``-ERR``."""


class BadCommand(ValueError):
    """Not a POP3 command line; ``str(exc)`` is the ``-ERR`` text."""


class Pop3Error(Exception):
    """A refused command: ``-ERR [code] text``.

    ``bad`` says whether it counts towards the consecutive-bad-command cap
    (client mistakes do; temporary backend failures do not).
    """

    def __init__(self, text: str, code: str | None = None, *, bad: bool = True):
        super().__init__(text)
        self.text = text
        self.code = code
        self.bad = bad

    def response(self) -> bytes:
        return err(self.text, self.code)


@dataclass(frozen=True)
class Command:
    keyword: str  # upper-case, e.g. "RETR"
    args: tuple[str, ...]  # whitespace-separated arguments
    rest: str  # everything after the keyword and one space (PASS keeps spaces)


class LineBuffer:
    """Accumulates received bytes and hands out complete lines, bounded."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def __len__(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        self._buf += data

    def clear(self) -> None:
        """Forget everything buffered (RFC 2595 §4: nothing sent before TLS survives STLS)."""
        self._buf.clear()

    def next_line(self, limit: int = MAX_LINE) -> bytes | None:
        """One line including its LF, or None if incomplete. LineTooLong beyond ``limit`` octets."""
        idx = self._buf.find(b"\n", 0, limit)
        if idx < 0:
            if len(self._buf) >= limit:
                raise LineTooLong(f"line longer than {limit} octets")
            return None
        line = bytes(self._buf[: idx + 1])
        del self._buf[: idx + 1]
        return line


def parse_command(line: bytes) -> Command:
    """Parse one command line (with or without its CRLF). BadCommand if it is not one."""
    if line.endswith(b"\n"):
        line = line[:-1]
    if line.endswith(b"\r"):
        line = line[:-1]
    if not line.strip():
        raise BadCommand("Empty command")
    if b"\x00" in line or b"\r" in line or b"\n" in line:
        raise BadCommand("Invalid characters in command")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise BadCommand("Command is not valid UTF-8") from None
    keyword, sep, rest = text.partition(" ")
    # RFC 1939 §3: keywords are three or four printable characters; RFC 2449 §4 allows more for extensions.
    if not keyword or len(keyword) > 16 or not keyword.isascii() or not keyword.isalnum():
        raise BadCommand("Unknown command")
    return Command(keyword.upper(), tuple(rest.split()), rest if sep else "")


def parse_number(text: str, *, allow_zero: bool = False) -> int | None:
    """A decimal argument (RFC 1939 msg or n): digits only, bounded; None if invalid."""
    if not text or len(text) > MAX_NUMBER_DIGITS or not text.isascii() or not text.isdigit():
        return None
    n = int(text)
    if n == 0 and not allow_zero:
        return None
    return n


def _status(indicator: bytes, text: str, code: str | None) -> bytes:
    parts = [indicator]
    if code:
        parts.append(f"[{code}]".encode())
    if text:
        parts.append(text.encode("utf-8", "replace").replace(b"\r", b" ").replace(b"\n", b" "))
    return b" ".join(parts) + CRLF


def ok(text: str = "", code: str | None = None) -> bytes:
    return _status(OK, text, code)


def err(text: str, code: str | None = None) -> bytes:
    """``-ERR [CODE] text`` (RFC 2449 §8: the code in brackets directly after the indicator)."""
    return _status(ERR, text, code)


def continuation(challenge: str = "") -> bytes:
    """SASL server challenge (RFC 5034 §4): ``+`` SP base64 CRLF; empty for PLAIN."""
    return b"+ " + challenge.encode("ascii") + CRLF


def multiline(first: bytes, lines: list[str] | list[bytes] = ()) -> bytes:
    """A multi-line response: status line, each line byte-stuffed, then the terminator."""
    out = bytearray(first)
    for ln in lines:
        b = ln.encode("utf-8") if isinstance(ln, str) else ln
        if b.startswith(b"."):
            out += b"."  # RFC 1939 §3
        out += b + CRLF
    out += TERMINATOR
    return bytes(out)


class DotStuffer:
    """Incremental RFC 1939 §3 encoder for message bytes sent by RETR and TOP.

    Feed the message in chunks of any size; every line ending goes out as
    CRLF (bare LF becomes CRLF), a line starting with ``.`` gets another
    ``.`` in front, and :meth:`finish` closes the last line if needed and
    appends the ``.CRLF`` terminator. Memory use is one chunk.
    """

    def __init__(self) -> None:
        self._bol = True  # at the beginning of a line
        self._carry = b""  # a CR withheld at a chunk end: it may be half of a CRLF

    def feed(self, data: bytes) -> bytes:
        if not data:
            return b""
        data = self._carry + data
        self._carry = b""
        if data.endswith(b"\r"):
            self._carry = b"\r"
            data = data[:-1]
        out = bytearray()
        pieces = data.split(b"\n")
        last = len(pieces) - 1
        for i, piece in enumerate(pieces):
            if self._bol and piece.startswith(b"."):
                out += b"."  # RFC 1939 §3: byte-stuff the termination octet
            if i < last:
                out += (piece[:-1] if piece.endswith(b"\r") else piece) + CRLF
                self._bol = True
            elif piece:
                out += piece
                self._bol = False
        return bytes(out)

    def finish(self) -> bytes:
        out = bytearray()
        if self._carry:  # a bare CR ending the message: part of the last line
            out += self._carry
            self._carry = b""
            self._bol = False
        if not self._bol:
            out += CRLF
        out += TERMINATOR
        self._bol = True
        return bytes(out)


def dot_stuff(data: bytes) -> bytes:
    """One-shot :class:`DotStuffer`: the stuffed body and the terminator."""
    s = DotStuffer()
    return s.feed(data) + s.finish()


def take_lines(data: bytes, n: int) -> int | None:
    """Octets making up the first ``n`` complete lines of ``data``, or None if it holds fewer.

    Used by TOP (RFC 1939 §7) to cut the body after ``n`` lines.
    """
    if n <= 0:
        return 0
    pos = 0
    for _ in range(n):
        idx = data.find(b"\n", pos)
        if idx < 0:
            return None
        pos = idx + 1
    return pos
