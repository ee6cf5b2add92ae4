"""ManageSieve responses as bytes (RFC 5804 §1.2, §4), and the errors that carry them.

In:   values from the ops modules; exceptions raised by them or by the layer below.
Out:  :func:`string` (a quoted string when it can be one, else a literal), :func:`ok`,
      :func:`no`, :func:`bye`, :func:`capability_line`; :class:`SieveProtocolError` and
      :func:`error_response`, which turns any error that knows its ManageSieve response
      code (``managesieve_code``: this module's errors, the script repository's,
      :mod:`postern.errors`' StoreUnavailable / AuthLocked / TooManySessions) into its
      ``NO (CODE) "text"`` line.
Fails: never.

Server strings (§4 ``string``): a quoted string holds at most 1024 characters and no CR, LF or
NUL; anything else is sent as a literal ``{n}`` CRLF bytes (the server's literals are
synchronising by form but need no continuation).
"""

from __future__ import annotations

MAX_QUOTED = 1024
CRLF = b"\r\n"


def string(value: str | bytes) -> bytes:
    """§4 ``string``: quoted when possible, else a literal."""
    raw = value.encode("utf-8") if isinstance(value, str) else value
    if len(raw) <= MAX_QUOTED and not any(c in raw for c in b"\r\n\x00"):
        return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d}\r\n" % len(raw) + raw


def _code(code: str | None, arg: str | None = None) -> bytes:
    if not code:
        return b""
    inner = code.encode("ascii")
    if arg is not None:
        inner += b" " + string(arg)
    return b"(" + inner + b") "


def _status(kind: bytes, text: str | None, code: str | None, arg: str | None) -> bytes:
    line = kind + b" " + _code(code, arg)
    if text:
        line += string(text)
    return line.rstrip(b" ") + CRLF


def ok(text: str | None = None, code: str | None = None, arg: str | None = None) -> bytes:
    return _status(b"OK", text, code, arg)


def no(text: str, code: str | None = None, arg: str | None = None) -> bytes:
    return _status(b"NO", text, code, arg)


def bye(text: str, code: str | None = None) -> bytes:
    return _status(b"BYE", text, code, None)


def capability_line(name: str, value: str | None = None) -> bytes:
    """§1.7: ``"NAME"`` or ``"NAME" "value"``."""
    line = string(name)
    if value is not None:
        line += b" " + string(value)
    return line + CRLF


class SieveProtocolError(Exception):
    """A refusal of this protocol layer: ``NO`` (or ``BYE`` when ``close``) with an optional code."""

    managesieve_code: str | None = None

    def __init__(self, text: str, code: str | None = None, *, close: bool = False, bad: bool = False):
        super().__init__(text)
        self.text = text
        if code is not None:
            self.managesieve_code = code
        self.close = close
        self.bad = bad  # a malformed command: counts towards the session's limit of bad commands

    @property
    def public_text(self) -> str:
        return self.text


def Bad(text: str) -> SieveProtocolError:  # noqa: N802 - reads as the error kind it builds
    """A command the server cannot read: wrong arguments, unknown name, wrong state."""
    return SieveProtocolError(text, bad=True)


def error_response(exc: Exception) -> bytes:
    """``NO (CODE) "text"`` for an error that knows its ManageSieve code (§1.3)."""
    code = getattr(exc, "managesieve_code", None)
    text = getattr(exc, "public_text", None) or str(exc) or "Failed"
    if getattr(exc, "close", False):
        return bye(text, code)
    return no(text, code)
