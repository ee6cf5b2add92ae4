"""Sieve tokens (RFC 5228 §8.1): the script's text -> a list of tokens with line and column.

In:   the script as text (the caller decoded UTF-8: :func:`decode`).
Out:  :func:`tokenize` -> list of :class:`Token`; identifiers and tags are
      lower-cased (Sieve's names are case-insensitive, RFC 5228 §2.3), strings
      are unescaped (§2.4.2: ``\\x`` is ``x``), multi-line strings
      (``text:`` ... ``.``) dot-unstuffed with CRLF line ends, numbers carry
      their quantifier applied (``10K`` = 10240).
Fails: :class:`~postern.sieve.errors.SieveSyntaxError` at the first offending
      character: an unterminated string or comment, a character no token
      starts with, a NUL, a bare CR, a number too large.

Linear in the script: one compiled regular expression decides the token at each
position, strings and comments are found with ``str.find`` or a regex without
nested quantifiers.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

from . import limits
from .errors import SieveSyntaxError

_TOKEN = re.compile(
    r"(?P<ws>[ \t]+|\r\n|\n)"
    r"|(?P<hash>\#[^\r\n]*)"
    r"|(?P<bracket>/\*)"
    r"|(?P<text>(?i:text):)"
    r"|(?P<tag>:[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<ident>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<number>[0-9]+[KMGkmg]?)"
    r"|(?P<quote>\")"
    r"|(?P<punct>[\[\](){},;])"
)
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"', re.S)
_UNESCAPE = re.compile(r"\\(.)", re.S)
_QUANT = {"k": 1024, "m": 1024**2, "g": 1024**3}


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # identifier | tag | number | string | [ ] ( ) { } , ; | eof
    value: object  # str (identifier, tag without ":", string), int (number), the punctuation itself
    line: int
    column: int
    multiline: bool = False  # a text: string


class Positions:
    """Offsets -> (line, column), both 1-based; columns count characters."""

    def __init__(self, text: str):
        self.starts = [0] + [m.end() for m in re.finditer(r"\n", text)]

    def at(self, offset: int) -> tuple[int, int]:
        i = bisect.bisect_right(self.starts, offset) - 1
        return i + 1, offset - self.starts[i] + 1


def decode(script: bytes | str) -> str:
    """The script as text: UTF-8 (RFC 5228 §2.1), strictly; the position of the first bad byte otherwise."""
    if isinstance(script, str):
        return script
    if len(script) > limits.HARD_MAX_SCRIPT_BYTES:
        raise SieveSyntaxError(f"script too large ({len(script)} bytes)")
    try:
        return script.decode("utf-8")
    except UnicodeDecodeError as exc:
        good = script[: exc.start].decode("utf-8")
        line, col = Positions(good).at(len(good))
        raise SieveSyntaxError("invalid UTF-8 in the script", line, col) from None


def _multiline(text: str, start: int, pos: int, where: Positions) -> tuple[str, int]:
    """The value of a ``text:`` string (``text:`` from ``start`` to ``pos``), and where the string ends."""
    n = len(text)
    i = pos
    while i < n and text[i] in " \t":
        i += 1
    if i < n and text[i] == "#":  # hash-comment on the text: line (RFC 5228 §8.1)
        while i < n and text[i] not in "\r\n":
            i += 1
    if text.startswith("\r\n", i):
        i += 2
    elif text.startswith("\n", i):
        i += 1
    else:
        raise SieveSyntaxError("text: must be followed by the end of the line", *where.at(i))
    lines = []
    while True:
        if i >= n:
            raise SieveSyntaxError("multi-line string not terminated by a line holding only '.'", *where.at(start))
        end = text.find("\n", i)
        if end < 0:
            raise SieveSyntaxError("multi-line string not terminated by a line holding only '.'", *where.at(start))
        line = text[i:end]
        if line.endswith("\r"):
            line = line[:-1]
        if "\r" in line:
            raise SieveSyntaxError("bare CR in a multi-line string", *where.at(i + line.index("\r")))
        i = end + 1
        if line == ".":
            return "".join(x + "\r\n" for x in lines), i
        lines.append(line[1:] if line.startswith(".") else line)  # dot-stuffing (RFC 5228 §2.4.2)


def tokenize(text: str) -> list[Token]:
    if len(text) > limits.HARD_MAX_SCRIPT_BYTES:
        raise SieveSyntaxError(f"script too large (at most {limits.HARD_MAX_SCRIPT_BYTES} bytes)")
    where = Positions(text)
    if "\x00" in text:
        raise SieveSyntaxError("NUL character in the script", *where.at(text.index("\x00")))
    out: list[Token] = []
    pos, n = 0, len(text)
    while pos < n:
        m = _TOKEN.match(text, pos)
        if m is None:
            c = text[pos]
            what = "bare CR" if c == "\r" else f"unexpected character {c!r}"
            raise SieveSyntaxError(what, *where.at(pos))
        kind = m.lastgroup
        line, col = where.at(pos)
        if kind in ("ws", "hash"):
            pos = m.end()
        elif kind == "bracket":
            end = text.find("*/", pos + 2)
            if end < 0:
                raise SieveSyntaxError("unterminated /* comment", line, col)
            pos = end + 2
        elif kind == "text":
            value, pos = _multiline(text, pos, m.end(), where)
            out.append(Token("string", value, line, col, multiline=True))
        elif kind == "quote":
            q = _QUOTED.match(text, pos)
            if q is None:
                raise SieveSyntaxError("unterminated string", line, col)
            raw = q.group(1)
            out.append(Token("string", _UNESCAPE.sub(r"\1", raw) if "\\" in raw else raw, line, col))
            pos = q.end()
        elif kind == "tag":
            out.append(Token("tag", m.group()[1:].lower(), line, col))
            pos = m.end()
        elif kind == "ident":
            out.append(Token("identifier", m.group().lower(), line, col))
            pos = m.end()
        elif kind == "number":
            s = m.group()
            mult = _QUANT.get(s[-1].lower(), 1)
            digits = s if mult == 1 else s[:-1]
            if len(digits) > 20 or int(digits) * mult > limits.MAX_NUMBER:
                raise SieveSyntaxError(f"number {s} too large", line, col)
            out.append(Token("number", int(digits) * mult, line, col))
            pos = m.end()
        else:
            out.append(Token(m.group(), m.group(), line, col))
            pos = m.end()
    line, col = where.at(n)
    out.append(Token("eof", None, line, col))
    return out
