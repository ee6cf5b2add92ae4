"""IMAP receiver, parser, sequence sets and modified UTF-7 on byte strings (no sockets)."""

from __future__ import annotations

import pytest

from postern_gateway.imap import mutf7
from postern_gateway.imap.errors import BadCommand, ParseError
from postern_gateway.imap.parser import (
    FetchAtt,
    Literal,
    Section,
    date_time,
    fetch_items,
    flag_list,
    mailbox,
    parse_command,
    store_items,
)
from postern_gateway.imap.receiver import Complete, Continue, NeedMore, Receiver, Reject
from postern_gateway.imap.seqset import SeqSet, SeqSetError, compress
from postern_gateway.imap.tokens import Atom

# --- receiver -------------------------------------------------------------


def _events(r: Receiver, *chunks):
    out = []
    for c in chunks:
        r.feed(c)
        while True:
            ev = r.next()
            out.append(ev)
            if isinstance(ev, NeedMore):
                break
    return out


def test_receiver_sync_literal_continuation_then_command():
    r = Receiver()
    ev = _events(r, b"a1 LOGIN {5}\r\n")
    assert ev == [Continue(5), NeedMore()]
    ev = _events(r, b"alice pw\r\n")
    assert ev[0] == Complete(b"a1 LOGIN {5}\r\nalice pw\r\n")


def test_receiver_literal_plus_no_continuation_any_chunking():
    data = b"a2 APPEND INBOX {11+}\r\nHello\r\nWorld\r\na3 NOOP\r\n"
    r = Receiver()
    evs = []
    for i in range(len(data)):
        evs += _events(r, data[i : i + 1])
    done = [e for e in evs if isinstance(e, Complete)]
    assert [e.data for e in done] == [b"a2 APPEND INBOX {11+}\r\nHello\r\nWorld\r\n", b"a3 NOOP\r\n"]
    assert not any(isinstance(e, Continue) for e in evs)


@pytest.mark.parametrize(
    "data, expect",
    [
        (b"a1 APPEND INBOX {100}\r\n", b"a1 NO [TOOBIG]"),
        (b"a1 LOGIN {100}\r\n", b"a1 BAD"),
        (b"a1 " + b"x" * 300 + b"\r\n", b"a1 BAD Command line too long"),
    ],
)
def test_receiver_limits(data, expect):
    r = Receiver(max_line=200, max_literal=10, max_append_literal=50)
    ev = _events(r, data + b"a9 NOOP\r\n")
    rej = [e for e in ev if isinstance(e, Reject)]
    assert rej and rej[0].response.startswith(expect)
    assert Complete(b"a9 NOOP\r\n") in ev  # the connection goes on


def test_receiver_literal_inside_an_open_quote_is_no_literal():
    """``"foo {5}`` CRLF is a broken quoted string (BAD), not a literal: the next command is not
    eaten as literal data, and no continuation is offered."""
    r = Receiver()
    ev = _events(r, b'a1 SELECT "foo {5}\r\na2 NOOP\r\n')
    assert ev == [Complete(b'a1 SELECT "foo {5}\r\n'), Complete(b"a2 NOOP\r\n"), NeedMore()]
    ev = _events(Receiver(), b'a1 LOGIN "a\\"b" {2+}\r\npw\r\n')  # an escaped quote inside a closed string
    assert ev == [Complete(b'a1 LOGIN "a\\"b" {2+}\r\npw\r\n'), NeedMore()]
    ev = _events(Receiver(), b'a1 LOGIN "a\\\\" {2}\r\n')  # "a\\" is closed: a real literal follows
    assert isinstance(ev[0], Continue)


def test_receiver_swallows_rejected_literal_plus():
    r = Receiver(max_literal=10, max_append_literal=20)
    ev = _events(r, b"a1 APPEND INBOX {30+}\r\n" + b"x" * 30 + b"\r\na2 NOOP\r\n")
    assert isinstance(ev[0], Reject) and ev[0].response.startswith(b"a1 NO [TOOBIG]")
    assert ev[1] == Complete(b"a2 NOOP\r\n")


# --- command parsing ---------------------------------------------------------

COMMANDS = [
    (b"a1 NOOP\r\n", ("a1", "NOOP", [], False)),
    (b"a2 login alice \"p\\\"w\"\r\n", ("a2", "LOGIN", [Atom("alice"), b'p"w'], False)),
    (b"a3 UID fetch 1:* (FLAGS)\r\n", ("a3", "FETCH", [Atom("1:*"), [Atom("FLAGS")]], True)),
    (b'a4 LIST "" [Gmail]/%\r\n', ("a4", "LIST", [b"", Atom("[Gmail]/%")], False)),
    (b"a5 LOGIN {5}\r\nalice {2+}\r\npw\r\n", ("a5", "LOGIN", [b"alice", b"pw"], False)),
    (b"a6 SELECT INBOX (CONDSTORE)\r\n", ("a6", "SELECT", [Atom("INBOX"), [Atom("CONDSTORE")]], False)),
    # issue 10: "[" is an ATOM-CHAR and "]" an ASTRING-CHAR (RFC 3501 §9): no bracket runs outside FETCH
    (b"a7 SELECT x[y}z\r\n", ("a7", "SELECT", [Atom("x[y}z")], False)),
    (b"a8 RENAME [a b]\r\n", ("a8", "RENAME", [Atom("[a"), Atom("b]")], False)),
    (b"a9 CREATE ]x[\r\n", ("a9", "CREATE", [Atom("]x[")], False)),
    (b'b1 UID FETCH 1 (BODY[HEADER.FIELDS (A "B C")]<0.10>)\r\n',
     ("b1", "FETCH", [Atom("1"), [Atom('BODY[HEADER.FIELDS (A "B C")]<0.10>')]], True)),
]


@pytest.mark.parametrize("data, expect", COMMANDS)
def test_parse_command(data, expect):
    c = parse_command(data)
    assert (c.tag, c.name, c.args, c.uid) == expect


def test_literal_is_marked():
    c = parse_command(b'a APPEND INBOX (\\Seen) " 1-Feb-2024 10:00:00 +0100" {2}\r\nhi\r\n')
    assert not isinstance(c.args[2], Literal) and isinstance(c.args[3], Literal)


BAD = [
    b"\r\n",
    b"+ NOOP\r\n",
    b"a1\r\n",
    b'a1 LOGIN "unterminated\r\n',
    b'a1 LOGIN "bad \\escape"\r\n',
    b"a1 FETCH 1 (FLAGS\r\n",
    b"a1 FETCH 1 FLAGS)\r\n",
    b"a1 LOGIN {10}\r\nab\r\n",
    b"a1 FOO " + b"(" * 40 + b"\r\n",
    b"a1 UID NOOP\r\n",
    b"a1 LOGIN \xff\xfe\r\n",
    b"a1 FETCH 1 BODY[HEADER\r\n",
    b'a1 FETCH 1 BODY[HEADER.FIELDS ("A)]\r\n',
    b"a1 FETCH 1 BODY[\xc2\xb2]\r\n",
]


@pytest.mark.parametrize("data", BAD)
def test_parse_errors_are_bad(data):
    with pytest.raises(ParseError) as exc:
        parse_command(data)
    assert exc.value.response(exc.value.tag).split(b" ")[1] == b"BAD"


# --- FETCH / STORE arguments ---------------------------------------------------


def _fetch(text: bytes):
    c = parse_command(b"t FETCH 1 " + text + b"\r\n")
    return fetch_items(c.args[1:])


def test_fetch_sections_and_partials():
    req = _fetch(b"(UID BODY.PEEK[1.2.HEADER.FIELDS (From Subject)]<0.100> BODY[3.MIME] BODY[] RFC822.TEXT)")
    assert req.atts[0] == FetchAtt("UID")
    a = req.atts[1]
    assert a.section == Section((1, 2), "HEADER.FIELDS", ("FROM", "SUBJECT")) and a.partial == (0, 100) and a.peek
    assert a.label() == "BODY[1.2.HEADER.FIELDS (FROM SUBJECT)]<0>"
    assert req.atts[2].section == Section((3,), "MIME") and req.atts[2].sets_seen
    assert req.atts[3].label() == "BODY[]"
    assert req.atts[4].sets_seen


@pytest.mark.parametrize("macro, names", [
    (b"ALL", ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"]),
    (b"FAST", ["FLAGS", "INTERNALDATE", "RFC822.SIZE"]),
    (b"FULL", ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"]),
])
def test_fetch_macros(macro, names):
    assert [a.name for a in _fetch(macro).atts] == names


def test_fetch_changedsince():
    req = _fetch(b"(FLAGS) (CHANGEDSINCE 12345)")
    assert req.changedsince == 12345


@pytest.mark.parametrize("text", [b"(BODY[MIME])", b"(BODY[0])", b"(BODY[]<0.0>)", b"(FOO)", b"(BODY[HEADER.FIELDS])",
                                  b"(FLAGS) (CHANGEDSINCE x)", b"()"])
def test_fetch_bad(text):
    with pytest.raises(BadCommand):
        _fetch(text)


def test_store_items():
    c = parse_command(b"t STORE 1:3 (UNCHANGEDSINCE 7) -FLAGS.SILENT (\\Seen $Label1)\r\n")
    r = store_items(c.args[1:])
    assert (r.mode, r.silent, r.flags, r.unchangedsince) == ("remove", True, ["\\Seen", "$Label1"], 7)
    c = parse_command(b"t STORE 1 FLAGS \\Deleted\r\n")
    assert store_items(c.args[1:]).flags == ["\\Deleted"]
    with pytest.raises(BadCommand):
        store_items(parse_command(b"t STORE 1 FLAGS (\\Bogus)\r\n").args[1:])


def test_flags_and_dates():
    assert flag_list([Atom("\\seen"), Atom("$Junk")]) == ["\\Seen", "$Junk"]
    assert date_time(b" 1-Feb-2024 10:00:00 +0100") == 1706778000.0
    with pytest.raises(BadCommand):
        date_time(b"31-Foo-2024 10:00:00 +0000")


# --- mailbox names ----------------------------------------------------------------


@pytest.mark.parametrize("text, wire", [
    ("Entwürfe", "Entw&APw-rfe"),
    ("台北/日本語", "&U,BTFw-/&ZeVnLIqe-"),
    ("a&b", "a&-b"),
    ("~peter/mail/台北", "~peter/mail/&U,BTFw-"),
])
def test_modified_utf7(text, wire):
    assert mutf7.encode(text) == wire
    assert mutf7.decode(wire) == text


@pytest.mark.parametrize("bad", ["&Jjo", "&AGE-", "&!!-"])
def test_modified_utf7_bad(bad):
    with pytest.raises(mutf7.MUTF7Error):
        mutf7.decode(bad)


def test_mailbox_inbox_case_insensitive():
    assert mailbox(Atom("inbox")) == "INBOX"
    assert mailbox(b"InBoX/sub") == "INBOX/sub"
    assert mailbox(Atom("Entw&APw-rfe")) == "Entwürfe"


# --- sequence sets ------------------------------------------------------------------


def test_seqset():
    s = SeqSet.parse("1:3,*:8,5")
    assert list(s.iter(10)) == [1, 2, 3, 5, 8, 9, 10]
    assert s.contains(9, 10) and not s.contains(4, 10)
    assert list(SeqSet.parse("4:2").iter(10)) == [2, 3, 4]
    assert list(SeqSet.parse("*").iter(0)) == []
    assert compress([1, 2, 3, 5, 7, 8]) == "1:3,5,7:8"


@pytest.mark.parametrize("bad", ["", "0", "1:", "a", "1,,2", "99999999999", ",".join(["1"] * 10001)])
def test_seqset_bad(bad):
    with pytest.raises(SeqSetError):
        SeqSet.parse(bad)
