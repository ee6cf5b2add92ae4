"""Sans-I/O ManageSieve command reader (RFC 5804 §4 grammar).

In:   bytes from the connection, fed in any chunking with :meth:`CommandReader.feed`.
Out:  :meth:`CommandReader.next` returns one event:
        * :data:`NEED_MORE`      - nothing complete yet, read more bytes;
        * :class:`Command`       - one whole command: its tokens (an :class:`Atom`
                                   name first, then :class:`Str` and :class:`Num`
                                   arguments), or, for a SASL continuation, the
                                   client's lone string;
        * :class:`Reject`        - malformed or over a limit: send ``response``;
                                   the reader has already arranged to skip the rest
                                   of that command (a literal announced in it
                                   included), or asks the session to ``close``.
      Literals are non-synchronising (``{n+}``, RFC 5804 §4 ``literal-c2s``): the
      server never sends a continuation. A plain ``{n}`` is read the same way
      (no client waits for a ``+`` ManageSieve does not have).
Fails: never raises on input; every limit and syntax error becomes a Reject.

Limits: ``max_line`` bytes of non-literal text per command, ``max_literal`` per
literal, ``max_tokens`` per command, 1024 characters per quoted string (§4
``quoted``), numbers up to 2^32 - 1 (§4 ``number``). The session lowers
``max_literal`` to the pre-login byte budget before authentication.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..counted import take_counted

MAX_QUOTED_CHARS = 1024  # RFC 5804 §4: quoted = <"> *1024QUOTED-CHAR <">
MAX_NUMBER = 2**32 - 1  # RFC 5804 §4: number = 1*DIGIT ;; a 32-bit unsigned number
_LITERAL = re.compile(rb"\{(\d{1,12})(\+?)\}\r?\n")
_LITERAL_HEAD = re.compile(rb"\{\d{0,12}\+?\}?\r?\Z")  # a literal announcement not complete yet
_LITERAL_AT_END = re.compile(rb"\{(\d{1,12})\+?\}\r?\n\Z")
# ATOM-CHAR: any CHAR except "(" / ")" / "{" / SP / CTL / "%" / "*" / DQUOTE / "\" (§4, from RFC 3501).
_ATOM = re.compile(rb"[\x21\x23\x24\x26\x27\x2b-\x5b\x5d-\x7a\x7c-\x7e]+")
_DIGITS = re.compile(rb"[0-9]+\Z")


@dataclass(frozen=True)
class Atom:
    value: str  # upper-cased (command names are case-insensitive, §4)


@dataclass(frozen=True)
class Str:
    value: bytes
    literal: bool = False


@dataclass(frozen=True)
class Num:
    value: int


Token = Atom | Str | Num


@dataclass(frozen=True)
class NeedMore:
    pass


@dataclass(frozen=True)
class Command:
    tokens: tuple[Token, ...]

    @property
    def name(self) -> str:
        first = self.tokens[0] if self.tokens else None
        return first.value if isinstance(first, Atom) else ""

    @property
    def args(self) -> tuple[Token, ...]:
        return self.tokens[1:]


@dataclass(frozen=True)
class Reject:
    text: str
    code: str | None = None  # an RFC 5804 §1.3 response code (QUOTA/MAXSIZE ...)
    close: bool = False


NEED_MORE = NeedMore()
SCRIPT_COMMANDS = frozenset({"PUTSCRIPT", "CHECKSCRIPT"})


class _Syntax(Exception):
    pass


def _unquote(body: bytes) -> bytes:
    """The value of a quoted string's inside: ``\\"`` and ``\\\\`` only (§4 QUOTED-SPECIALS)."""
    if b"\\" not in body:
        return body
    out = bytearray()
    i = 0
    while i < len(body):
        c = body[i]
        if c == 0x5C:
            if i + 1 >= len(body) or body[i + 1] not in b'"\\':
                raise _Syntax("Invalid escape in quoted string")
            out.append(body[i + 1])
            i += 2
        else:
            out.append(c)
            i += 1
    return bytes(out)


# Possessive (Python 3.11): no backtracking, so each is one linear pass in C whatever the input.
_QUOTED_BODY = re.compile(rb'(?:[^"\\]++|\\.)*+', re.S)  # the inside of a quoted string
_OUTSIDE = re.compile(rb'(?:[^"]++|"(?:[^"\\]++|\\.)*+")*+', re.S)  # text and whole quoted strings


def _scan_quotes(data: bytes, inside: bool, escape: bool) -> tuple[bool, bool]:
    """The quoted-string state after ``data``, starting from (inside a quote, after a backslash).
    Used only while skipping a rejected command."""
    i, n = 0, len(data)
    if escape and n:
        i = 1
    elif escape:
        return inside, escape
    if inside:
        k = _QUOTED_BODY.match(data, i).end()
        if k >= n:
            return True, False
        if data[k] == 0x5C:  # a backslash at the very end: the escaped byte comes in the next read
            return True, True
        i = k + 1  # the closing quote
    j = _OUTSIDE.match(data, i).end()
    if j >= n:
        return False, False
    k = _QUOTED_BODY.match(data, j + 1).end()  # data[j] opens a quoted string that does not end here
    return True, k < n and data[k] == 0x5C


class CommandReader:
    def __init__(self, *, max_line: int = 8 * 1024, max_literal: int = 64 * 1024, max_tokens: int = 8,
                 max_script: int | None = None):
        self.max_line = max_line
        self.max_literal = max_literal
        self.max_script = max_literal if max_script is None else max_script  # PUTSCRIPT/CHECKSCRIPT literal
        self.max_tokens = max_tokens
        self._buf = bytearray()
        self._tokens: list[Token] = []
        self._line = 0  # non-literal bytes of the current command so far
        self._need = 0  # literal bytes still to come (a literal is being read)
        self._literal = bytearray()
        self._skip = 0  # literal bytes of a rejected command to discard
        self._skip_rest = False  # discard up to the end of the rejected command
        self._want_sep = False  # a token was read: SP or CRLF comes next
        self._quote = (False, False)  # while skipping: inside a quoted string, after a backslash

    # --- input ------------------------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        self._buf += data

    def discard(self) -> None:
        """Forget everything buffered (STARTTLS: RFC 5804 §2.2, no plaintext injection)."""
        self._buf.clear()
        self._reset()
        self._skip = 0
        self._skip_rest = False
        self._quote = (False, False)

    @property
    def buffered(self) -> int:
        return len(self._buf) + len(self._literal)

    def _reset(self) -> None:
        self._tokens = []
        self._line = 0
        self._need = 0
        self._literal = bytearray()
        self._want_sep = False

    def _reject(self, text: str, code: str | None = None, *, skip: int = 0, close: bool = False) -> Reject:
        self._reset()
        self._skip = skip
        self._skip_rest = not close
        return Reject(text, code, close)

    # --- the state machine ------------------------------------------------------------------------
    def next(self):
        while True:
            if self._skip:
                self._skip = take_counted(self._buf, self._skip)
                if self._skip:
                    return NEED_MORE
            if self._skip_rest:
                ev = self._skip_line()
                if ev is not None:
                    return ev
                continue
            if self._need:
                self._need = take_counted(self._buf, self._need, self._literal)
                if self._need:
                    return NEED_MORE
                self._tokens.append(Str(bytes(self._literal), literal=True))
                self._literal = bytearray()
                self._want_sep = True
                continue
            if not self._buf:
                return NEED_MORE
            try:
                ev = self._step()
            except _Syntax as exc:
                return self._reject(f"Syntax error: {exc}")
            if ev is not None:
                return ev

    def _skip_line(self):
        """Discard the rest of a rejected command: up to a line end that announces no literal
        (a literal announced there is skipped with its bytes). A literal announcement inside a
        quoted string is text (a quoted string never spans lines, §4): the quote state is
        carried across reads. None: go on; an event: return it."""
        buf = self._buf
        nl = buf.find(b"\n")
        if nl < 0:
            keep = 24  # the longest announcement "{" 12 digits "+}" CR, not scanned until its line ends
            if len(buf) > keep:
                self._quote = _scan_quotes(bytes(buf[:-keep]), *self._quote)
                del buf[:-keep]
            return NEED_MORE
        line = bytes(buf[: nl + 1])
        del buf[: nl + 1]
        quote, self._quote = self._quote, (False, False)
        m = _LITERAL_AT_END.search(line)
        if m and not _scan_quotes(line[: m.start()], *quote)[0]:
            self._skip = int(m.group(1))
        else:
            self._skip_rest = False
        return None

    def _step(self):
        """Read one piece at the start of the buffer: a separator, the end of the command or a token."""
        buf = self._buf
        c = buf[0]
        if c in b"\r\n":
            end = 2 if buf.startswith(b"\r\n") else 1
            if c == 0x0D and len(buf) < 2:
                return NEED_MORE
            if c == 0x0D and end == 1:
                raise _Syntax("CR without LF")
            del buf[:end]
            tokens = self._tokens
            self._reset()
            if not tokens:
                return None  # an empty line between commands is ignored
            return Command(tuple(tokens))
        if c == 0x20:
            if not self._want_sep:
                raise _Syntax("unexpected space")
            del buf[:1]
            self._count(1)
            self._want_sep = False
            return None
        if self._want_sep:
            raise _Syntax("expected a space between arguments")
        if len(self._tokens) >= self.max_tokens:
            return self._reject("Too many arguments")
        if c == 0x22:
            return self._quoted()
        if c == 0x7B:
            return self._literal_head()
        return self._atom()

    def _count(self, n: int) -> None:
        self._line += n
        if self._line > self.max_line:
            raise _Syntax("command line too long")

    def _quoted(self):
        buf = self._buf
        i = 1
        limit = 1 + MAX_QUOTED_CHARS * 4 + 2 * MAX_QUOTED_CHARS  # UTF-8 and escapes, bounded
        while True:
            q = buf.find(b'"', i, limit)
            nl = buf.find(b"\n", 1, q if q >= 0 else limit)
            if nl >= 0 or buf.find(b"\r", 1, q if q >= 0 else limit) >= 0:
                raise _Syntax("line break inside a quoted string")
            if q < 0:
                if len(buf) >= limit:
                    raise _Syntax("quoted string too long")
                return NEED_MORE
            b = q
            while b > 1 and buf[b - 1] == 0x5C:
                b -= 1
            if (q - b) % 2 == 0:
                break
            i = q + 1
        raw = bytes(buf[1:q])
        value = _unquote(raw)
        if 0 in value:
            raise _Syntax("NUL in a quoted string")
        if len(value.decode("utf-8", "replace")) > MAX_QUOTED_CHARS:
            raise _Syntax("quoted string too long")
        self._count(q + 1)
        del buf[: q + 1]
        self._tokens.append(Str(value))
        self._want_sep = True
        return None

    def _literal_head(self):
        buf = self._buf
        m = _LITERAL.match(buf)
        if m is None:
            if _LITERAL_HEAD.match(buf):
                return NEED_MORE
            raise _Syntax("malformed literal")
        self._count(m.end())
        size = int(m.group(1))
        del buf[: m.end()]
        first = self._tokens[0] if self._tokens else None
        script = isinstance(first, Atom) and first.value in SCRIPT_COMMANDS
        limit = self.max_script if script else self.max_literal
        if size > limit:
            # §4: the client sends the bytes anyway (non-synchronising); swallow them and the rest.
            if script:
                return self._reject(f"Script too large (at most {limit} bytes)", "QUOTA/MAXSIZE", skip=size)
            return self._reject("Literal too large", skip=size)
        self._need = size
        self._literal = bytearray()
        if size == 0:
            self._tokens.append(Str(b"", literal=True))
            self._want_sep = True
        return None

    def _atom(self):
        buf = self._buf
        m = _ATOM.match(buf)
        if m is None:
            raise _Syntax("unexpected character")
        end = m.end()
        if end == len(buf):  # the atom may go on in the next read
            if end > 64:
                raise _Syntax("word too long")
            return NEED_MORE
        word = bytes(buf[:end])
        if len(word) > 64:
            raise _Syntax("word too long")
        self._count(end)
        del buf[:end]
        if _DIGITS.match(word):
            n = int(word)
            if n > MAX_NUMBER:
                raise _Syntax("number too large")
            self._tokens.append(Num(n))
        elif self._tokens:
            raise _Syntax("arguments are strings or numbers")
        else:
            self._tokens.append(Atom(word.decode("ascii", "replace").upper()))
        self._want_sep = True
        return None
