"""IMAP protocol errors that carry their response (pymap ``exceptions.py``).

In:   raised by the parser and the ops modules.
Out:  ``ImapError.response(tag)`` -> the tagged line (BAD for syntax/state,
      NO with an RFC 5530 response code for refusals). Domain errors from
      :mod:`postern.errors` already know theirs (``.imap_response(tag)``); the
      session calls whichever the exception offers.
"""

from __future__ import annotations


class ImapError(Exception):
    kind = "NO"
    code: str | None = None

    def __init__(self, text: str, code: str | None = None):
        super().__init__(text)
        self.text = text
        if code is not None:
            self.code = code

    def response(self, tag: str) -> bytes:
        code = f"[{self.code}] " if self.code else ""
        return f"{tag} {self.kind} {code}{self.text}\r\n".encode()

    # the domain errors' method name, so the session treats both alike
    def imap_response(self, tag: str) -> bytes:
        return self.response(tag)


class BadCommand(ImapError, ValueError):
    """Syntax error, unknown command or command not valid in this state (tagged BAD)."""

    kind = "BAD"


class ParseError(BadCommand):
    """The parser could not read the command; ``tag`` is what it managed to read."""

    def __init__(self, text: str, tag: str = "*"):
        super().__init__(text)
        self.tag = tag


class NoCommand(ImapError):
    """A refusal: tagged NO, optionally with a response code."""

    kind = "NO"


class CannotCommand(NoCommand):
    code = "CANNOT"


class Unavailable(NoCommand):
    code = "UNAVAILABLE"


class ByeError(Exception):
    """Terminate the connection with ``* BYE text`` (autologout, too many errors)."""

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text
