"""POP3 wire format on byte strings: no sockets, no store."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postern_gateway.pop3.protocol import (
    MAX_LINE,
    BadCommand,
    DotStuffer,
    LineBuffer,
    LineTooLong,
    Pop3Error,
    continuation,
    dot_stuff,
    err,
    multiline,
    ok,
    parse_command,
    parse_number,
    take_lines,
)

COMMANDS = [
    # line, keyword, args, rest
    (b"STAT\r\n", "STAT", (), ""),
    (b"stat\r\n", "STAT", (), ""),
    (b"List 2\r\n", "LIST", ("2",), "2"),
    (b"TOP 1 10\r\n", "TOP", ("1", "10"), "1 10"),
    (b"USER alice@example.test\r\n", "USER", ("alice@example.test",), "alice@example.test"),
    (b"PASS two words\r\n", "PASS", ("two", "words"), "two words"),  # RFC 1939 §7: spaces kept in rest
    (b"PASS  lead\r\n", "PASS", ("lead",), " lead"),
    (b"NOOP\n", "NOOP", (), ""),  # bare LF accepted
    (b"QUIT", "QUIT", (), ""),
    (b"AUTH PLAIN =\r\n", "AUTH", ("PLAIN", "="), "PLAIN ="),
    (b"PASS p\xc3\xa4ss\r\n", "PASS", ("p\u00e4ss",), "p\u00e4ss"),
]


@pytest.mark.parametrize("line,keyword,args,rest", COMMANDS)
def test_parse_command(line, keyword, args, rest):
    cmd = parse_command(line)
    assert (cmd.keyword, cmd.args, cmd.rest) == (keyword, args, rest)


BAD_LINES = [
    (b"\r\n", "Empty command"),
    (b"   \r\n", "Empty command"),
    (b"ST\x00AT\r\n", "Invalid characters in command"),
    (b"STAT\rX\r\n", "Invalid characters in command"),
    (b"PASS \xff\xfe\r\n", "Command is not valid UTF-8"),
    (b" STAT\r\n", "Unknown command"),
    (b"ST-AT\r\n", "Unknown command"),
    (b"X" * 17 + b"\r\n", "Unknown command"),
]


@pytest.mark.parametrize("line,text", BAD_LINES)
def test_parse_command_rejects(line, text):
    with pytest.raises(BadCommand) as exc:
        parse_command(line)
    assert str(exc.value) == text


@pytest.mark.parametrize("text,zero,expected", [
    ("1", False, 1), ("42", False, 42), ("0", False, None), ("0", True, 0), ("-1", False, None),
    ("+1", False, None), ("1a", False, None), ("", False, None), ("12345678901", False, None),
    ("\u0661", False, None),  # Arabic-Indic digit one: str.isdigit but not ASCII
])
def test_parse_number(text, zero, expected):
    assert parse_number(text, allow_zero=zero) == expected


def test_line_buffer_splits_and_bounds():
    b = LineBuffer()
    b.feed(b"US")
    assert b.next_line() is None
    b.feed(b"ER a\r\nPASS b\r\nST")
    assert b.next_line() == b"USER a\r\n"
    assert b.next_line() == b"PASS b\r\n"
    assert b.next_line() is None
    assert len(b) == 2
    b.clear()
    assert len(b) == 0
    b.feed(b"x" * (MAX_LINE - 1) + b"\n")  # exactly the bound, terminator included
    assert len(b.next_line()) == MAX_LINE
    b.feed(b"x" * MAX_LINE)
    with pytest.raises(LineTooLong):
        b.next_line()


def test_line_buffer_larger_limit_for_sasl():
    b = LineBuffer()
    b.feed(b"A" * 5000 + b"\r\n")
    with pytest.raises(LineTooLong):
        b.next_line(MAX_LINE)
    assert len(b.next_line(8192)) == 5002


def test_status_lines():
    assert ok() == b"+OK\r\n"
    assert ok("2 320") == b"+OK 2 320\r\n"
    assert err("No such message") == b"-ERR No such message\r\n"
    assert err("Authentication failed", "AUTH") == b"-ERR [AUTH] Authentication failed\r\n"
    assert err("x\r\ny") == b"-ERR x  y\r\n"  # no line injection through texts
    assert continuation() == b"+ \r\n"
    assert Pop3Error("busy", "IN-USE").response() == b"-ERR [IN-USE] busy\r\n"


def test_multiline_stuffs_and_terminates():
    assert multiline(ok("list"), ["1 10", ".hidden", "2 20"]) == b"+OK list\r\n1 10\r\n..hidden\r\n2 20\r\n.\r\n"
    assert multiline(ok("empty")) == b"+OK empty\r\n.\r\n"


DOT_STUFF = [
    (b"", b".\r\n"),
    (b"a\r\n", b"a\r\n.\r\n"),
    (b"a", b"a\r\n.\r\n"),  # last line closed
    (b".\r\n", b"..\r\n.\r\n"),  # a lone dot must not end the response early
    (b"Subject: x\r\n\r\n.line\r\n..two\r\nmid.dot\r\n.",
     b"Subject: x\r\n\r\n..line\r\n...two\r\nmid.dot\r\n..\r\n.\r\n"),
    (b"bare\nlf\n.x\n", b"bare\r\nlf\r\n..x\r\n.\r\n"),  # bare LF becomes CRLF
    (b"cr\ronly\r\n", b"cr\ronly\r\n.\r\n"),  # a bare CR inside a line is data
    (b"ends with cr\r", b"ends with cr\r\r\n.\r\n"),
]


@pytest.mark.parametrize("data,wire", DOT_STUFF)
def test_dot_stuff(data, wire):
    assert dot_stuff(data) == wire


def unstuff(wire: bytes) -> bytes:
    """What a client does (RFC 1939 §3): strip the terminator and one leading dot per line."""
    assert wire.endswith(b"\r\n.\r\n") or wire == b".\r\n"
    body = wire[:-3]
    lines = body.split(b"\r\n")[:-1] if body else []
    for ln in lines:
        assert ln != b"."  # the terminator never appears inside
    return b"".join((ln[1:] if ln.startswith(b".") else ln) + b"\r\n" for ln in lines)


def normalise(data: bytes) -> bytes:
    """The message as CRLF lines (what the wire carries after bare LF -> CRLF), last line closed."""
    out = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if out and not out.endswith(b"\r\n"):
        out += b"\r\n"
    return out


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300).map(lambda b: b.replace(b"\x00", b"")) |
       st.lists(st.sampled_from([b".", b"\r", b"\n", b"\r\n", b"a", b".."]), max_size=40).map(b"".join),
       cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=6))
def test_dot_stuffer_chunking_is_invisible_and_reversible(data, cuts):
    one_shot = dot_stuff(data)
    s = DotStuffer()
    pieces, prev = [], 0
    for c in sorted(set(min(c, len(data)) for c in cuts)):
        pieces.append(data[prev:c])
        prev = c
    pieces.append(data[prev:])
    chunked = b"".join(s.feed(p) for p in pieces) + s.finish()
    assert chunked == one_shot
    assert unstuff(one_shot) == normalise(data)


@pytest.mark.parametrize("data,n,expected", [
    (b"a\r\nb\r\nc\r\n", 0, 0), (b"a\r\nb\r\nc\r\n", 2, 6), (b"a\r\nb\r\nc\r\n", 3, 9), (b"a\r\nb\r\nc\r\n", 4, None),
    (b"a\r\nb", 2, None), (b"", 1, None), (b"x\ny\n", 2, 4),
])
def test_take_lines(data, n, expected):
    assert take_lines(data, n) == expected


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1200))
def test_parse_command_is_total(data):
    """Any bytes: a Command or BadCommand, nothing else (issue 5 fuzzing)."""
    try:
        cmd = parse_command(data)
    except BadCommand:
        return
    assert cmd.keyword == cmd.keyword.upper() and 0 < len(cmd.keyword) <= 16 and cmd.keyword.isascii()
    assert all(a and " " not in a for a in cmd.args)


@settings(max_examples=200, deadline=None)
@given(chunks=st.lists(st.binary(max_size=400), max_size=10))
def test_line_buffer_never_exceeds_its_bound(chunks):
    b = LineBuffer()
    for c in chunks:
        b.feed(c)
        while True:
            try:
                line = b.next_line()
            except LineTooLong:
                assert len(b) >= MAX_LINE
                b.clear()
                break
            if line is None:
                assert len(b) < MAX_LINE
                break
            assert line.endswith(b"\n") and len(line) <= MAX_LINE
