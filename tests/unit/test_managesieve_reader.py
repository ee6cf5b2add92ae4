"""The ManageSieve command reader on byte strings (RFC 5804 §4), no sockets.

Tables of input -> events: quoted strings and their escapes, non-synchronising literals, numbers,
any chunking, and every refusal (syntax, limits) followed by a reader that still works.
"""

from __future__ import annotations

import pytest

from postern_gateway.managesieve.reader import NEED_MORE, Atom, Command, CommandReader, Num, Reject, Str


def events(data: bytes, *, chunk: int | None = None, **limits) -> list:
    r = CommandReader(**limits)
    out = []
    pieces = [data] if chunk is None else [data[i:i + chunk] for i in range(0, len(data), chunk)]
    for piece in pieces:
        r.feed(piece)
        while (ev := r.next()) is not NEED_MORE:
            out.append(ev)
    return out


CASES = [
    (b"CAPABILITY\r\n", [Command((Atom("CAPABILITY"),))]),
    (b"capability\r\n", [Command((Atom("CAPABILITY"),))]),
    (b'AUTHENTICATE "PLAIN" "AGFAYgBj"\r\n', [Command((Atom("AUTHENTICATE"), Str(b"PLAIN"), Str(b"AGFAYgBj")))]),
    (b'PUTSCRIPT "a" {5+}\r\nkeep;\r\n', [Command((Atom("PUTSCRIPT"), Str(b"a"), Str(b"keep;", True)))]),
    (b'PUTSCRIPT {1+}\r\na {0+}\r\n\r\n', [Command((Atom("PUTSCRIPT"), Str(b"a", True), Str(b"", True)))]),
    (b'PUTSCRIPT "a" {5}\r\nkeep;\r\n', [Command((Atom("PUTSCRIPT"), Str(b"a"), Str(b"keep;", True)))]),
    (b'HAVESPACE "x" 4294967295\r\n', [Command((Atom("HAVESPACE"), Str(b"x"), Num(4294967295)))]),
    (b'NOOP "a\\"b\\\\c"\r\n', [Command((Atom("NOOP"), Str(b'a"b\\c')))]),
    (b'NOOP "caf\xc3\xa9"\r\n', [Command((Atom("NOOP"), Str("café".encode())))]),
    (b"\r\n\r\nLOGOUT\n", [Command((Atom("LOGOUT"),))]),  # empty lines ignored, bare LF ends a line
    (b'"*"\r\n', [Command((Str(b"*"),))]),  # a SASL continuation: a lone string
    (b"{3+}\r\nabc\r\n", [Command((Str(b"abc", True),))]),
    (b"LISTSCRIPTS\r\nLOGOUT\r\n", [Command((Atom("LISTSCRIPTS"),)), Command((Atom("LOGOUT"),))]),
]


@pytest.mark.parametrize("data,want", CASES)
@pytest.mark.parametrize("chunk", [None, 1, 3])
def test_commands(data, want, chunk):
    assert events(data, chunk=chunk) == want


REFUSED = [
    b'NOOP "open\r\n',  # a line break inside a quoted string
    b'NOOP "a\\x"\r\n',  # only \" and \\ escape
    b"NOOP a b\r\n",  # arguments are strings or numbers, not atoms
    b'NOOP  "a"\r\n',  # two spaces
    b'NOOP "a""b"\r\n',  # no space between arguments
    b"HAVESPACE \"a\" 4294967296\r\n",  # over 32 bits
    b"NOOP {x}\r\n",  # malformed literal
    b"NOOP (a)\r\n",
    b"NOOP \"a\"\rX\r\n",  # CR without LF
    b'NOOP "' + b"a" * 1025 + b'"\r\n',  # quoted strings hold at most 1024 characters
    b"NOOP " + b"a" * 100 + b"\r\n",
]


@pytest.mark.parametrize("data", REFUSED)
def test_refusals_leave_the_reader_usable(data):
    got = events(data + b"LOGOUT\r\n")
    assert isinstance(got[0], Reject) and not got[0].close, got
    assert got[-1] == Command((Atom("LOGOUT"),))
    assert len(got) == 2


def test_literal_over_the_script_limit_is_swallowed():
    """PUTSCRIPT {n+} over the limit: NO (QUOTA/MAXSIZE); the n bytes arrive anyway (non-synchronising)
    and are skipped, literal announcements inside them included."""
    body = b"x" * 100 + b"{5+}\r\n" + b"y" * 50
    got = events(b'PUTSCRIPT "s" {%d+}\r\n' % len(body) + body + b"\r\nNOOP\r\n", chunk=7, max_script=64)
    assert got[0] == Reject("Script too large (at most 64 bytes)", "QUOTA/MAXSIZE")
    assert got[1:] == [Command((Atom("NOOP"),))]


def test_literal_over_the_limit_in_the_middle_of_a_command():
    got = events(b'RENAMESCRIPT {100+}\r\n' + b"a" * 100 + b' {3+}\r\nabc\r\nNOOP\r\n', max_literal=10)
    assert got == [Reject("Literal too large"), Command((Atom("NOOP"),))]


def test_too_many_arguments_and_too_long_lines():
    got = events(b'NOOP' + b' "a"' * 20 + b"\r\nNOOP\r\n", max_tokens=8)
    assert isinstance(got[0], Reject) and got[1] == Command((Atom("NOOP"),))
    got = events(b'NOOP "' + b"a" * 1000 + b'" "' + b"b" * 1000 + b'"\r\nNOOP\r\n', max_line=1500)
    assert isinstance(got[0], Reject) and got[1] == Command((Atom("NOOP"),))


def test_partial_input_needs_more():
    for data in (b"CAPAB", b'NOOP "abc', b"PUTSCRIPT {12", b"PUTSCRIPT {12+}\r\nabc", b"NOOP\r"):
        assert events(data) == []


def test_discard_forgets_pipelined_bytes():
    r = CommandReader()
    r.feed(b"NOOP\r\nLISTSCRIPTS\r\n")
    r.discard()
    assert r.next() is NEED_MORE and r.buffered == 0
