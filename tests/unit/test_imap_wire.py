"""IMAP wire encoding: strings, literals, lists, dates (RFC 3501 §4, §9)."""

import datetime as dt

import pytest

from postern_gateway.imap import wire

QUOTE_CASES = [
    (None, b"NIL"),
    ("", b'""'),
    ("abc", b'"abc"'),
    (b"abc", b'"abc"'),
    ('a"b', b'"a\\"b"'),
    ("a\\b", b'"a\\\\b"'),
    ("tab\there", b'"tab\there"'),
    ("caf\u00e9", b"{5}\r\ncaf\xc3\xa9"),
    (b"a\r\nb", b"{4}\r\na\r\nb"),
    (b"a\nb", b"{3}\r\na\nb"),
    (b"a\rb", b"{3}\r\na\rb"),
    (b"\x00", b"{1}\r\n\x00"),
    (b"\xff", b"{1}\r\n\xff"),
]


@pytest.mark.parametrize("value,expected", QUOTE_CASES)
def test_quote(value, expected):
    assert wire.quote(value) == expected
    assert wire.nstring(value) == expected


def test_long_strings_become_literals():
    data = b"x" * (wire.MAX_QUOTED + 1)
    assert wire.quote(data) == b"{%d}\r\n" % len(data) + data
    assert wire.quote(b"x" * wire.MAX_QUOTED).startswith(b'"')


@pytest.mark.parametrize(
    "value,expected",
    [
        ("INBOX", b"INBOX"),
        ("Sent/2026", b"Sent/2026"),
        ("a]b", b"a]b"),
        ("a b", b'"a b"'),
        ("", b'""'),
        ("NIL", b'"NIL"'),
        ("a*", b'"a*"'),
        ("a%", b'"a%"'),
        ("(x)", b'"(x)"'),
        ("{3}", b'"{3}"'),
        ("caf\u00e9", b"{5}\r\ncaf\xc3\xa9"),
    ],
)
def test_astring(value, expected):
    assert wire.astring(value) == expected


def test_is_atom():
    assert wire.is_atom("FLAGS")
    assert wire.is_atom("\\Seen") is False  # backslash is a quoted-special
    assert not wire.is_atom("a]")
    assert not wire.is_atom("")


def test_lists():
    assert wire.format_list([]) == b"()"
    assert wire.format_list([b"a", b'"b"']) == b'(a "b")'
    assert wire.nlist([]) == b"NIL"
    assert wire.nlist(None) == b"NIL"
    assert wire.nlist([b"x"]) == b"(x)"


def test_format_internaldate():
    assert wire.format_internaldate(1767261600) == b'"01-Jan-2026 10:00:00 +0000"'
    assert wire.format_internaldate(0.9) == b'"01-Jan-1970 00:00:00 +0000"'
    tz = dt.timezone(-dt.timedelta(hours=5, minutes=30))
    aware = dt.datetime(2026, 3, 15, 9, 5, 7, tzinfo=tz)
    assert wire.format_internaldate(aware, tz=None) == b'"15-Mar-2026 09:05:07 -0530"'
    assert wire.format_internaldate(aware) == b'"15-Mar-2026 14:35:07 +0000"'


def test_internaldate_read_by_imaplib():
    import imaplib
    import time

    parsed = imaplib.Internaldate2tuple(b"1 (INTERNALDATE " + wire.format_internaldate(1767261600) + b")")
    assert parsed is not None
    assert time.mktime(parsed) == 1767261600  # Internaldate2tuple returns local time
