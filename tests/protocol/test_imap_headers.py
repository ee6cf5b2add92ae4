"""IMAP reads headers through postern.mail: the one header-end rule, dates, addresses (imaplib on loopback)."""

from __future__ import annotations

import imaplib
import re

import pytest

from postern_gateway.imap.server import start_imap

from helpers import HOST, ServerThread, memory_backend

USER, PW = "alice@example.test", "secret-pw"


@pytest.fixture
def backend():
    b = memory_backend(imap_poll_interval=0.05)
    b.directory.add_domain("example.test")
    b.directory.add_user(USER, PW, quota=10 * 1024 * 1024)
    b.store.ensure_mailboxes(USER)
    return b


@pytest.fixture
def imap(backend):
    with ServerThread(start_imap, backend) as srv:
        c = imaplib.IMAP4(HOST, srv.port, timeout=10)
        c.login(USER, PW)
        yield c
        c.logout()


def fetch(c, uid: str, item: str) -> bytes:
    typ, data = c.uid("FETCH", uid, f"({item})")
    assert typ == "OK", data
    return data[0][1] if isinstance(data[0], tuple) else data[0]


def test_append_refuses_an_impossible_date(imap):
    # issue 10: "31-Feb-2026" was stored as 3 March
    imap.select("INBOX")
    with pytest.raises(imaplib.IMAP4.error, match="Invalid date-time"):
        imap.append("INBOX", None, '"31-Feb-2026 10:00:00 +0000"', b"Subject: x\r\n\r\nbody\r\n")
    assert imap.select("INBOX")[1] == [b"0"]
    typ, _ = imap.append("INBOX", None, '"28-Feb-2026 10:00:00 +0000"', b"Subject: x\r\n\r\nbody\r\n")
    assert typ == "OK"
    assert b'"28-Feb-2026 10:00:00 +0000"' in imap.uid("FETCH", "1", "(INTERNALDATE)")[1][0]


def test_text_from_the_store_agrees_with_the_parsed_part(imap, backend):
    # issue 10: the store's header length (BODY[TEXT], an S3 range) said 11, IMAP's parser (BODY[1]) 7.
    # Stored as SMTP stores it (as received; imaplib's APPEND would turn the bare LF into CRLF).
    backend.store.append(USER, "INBOX", b"A: b\n\r\nbody")
    imap.select("INBOX")
    assert fetch(imap, "1", "BODY.PEEK[TEXT]") == b"body"
    assert fetch(imap, "1", "BODY.PEEK[1]") == b"body"


ADDRESS_MAIL = [
    b"From: <user-from (comment)@ (comment) domain.org>\r\nTo: groupname: one@x.test, two@x.test;\r\n\r\n1\r\n",
    b'From: "realfrom" <other@domain.org>\r\nTo: plain@x.test\r\nCc: =?utf-8?q?R=C3=A9al?= <cc@x.test>\r\n\r\n2\r\n',
    b"From: someone@else.test (realfrom in a comment)\r\n\r\n3\r\n",
    b"From: nobody@else.test\r\nSubject: user-from@domain.org\r\n\r\n4\r\n",
]


@pytest.mark.parametrize("criteria,expected", [
    (("FROM", "user-from@domain.org"), b"1"),  # comments and CFWS removed from the addr-spec
    (("FROM", "USER-FROM@Domain.Org"), b"1"),  # case-insensitive
    (("FROM", "realfrom"), b"2 3"),  # display name (an old-style comment name counts as one)
    (("FROM", "ser-fro"), b"1"),  # substring
    (("TO", "groupname"), b"1"),  # group names
    (("TO", "two@x"), b"1"),
    (("CC", "r\u00e9al"), b"2"),  # decoded display name (sent as a literal)
    (("FROM", "comment"), b"3"),  # a comment inside the address is not searched
    (("FROM", '""'), b"1 2 3 4"),  # empty: every message with the field
    (("BCC", '""'), b""),
])
def test_search_address_keys(imap, criteria, expected):
    # RFC 3501 §6.4.4: substring of each address's decoded display name / addr-spec / group name
    for raw in ADDRESS_MAIL:
        imap.append("INBOX", None, None, raw)
    imap.select("INBOX")
    args = [c.encode() for c in criteria]
    if not args[-1].isascii():
        imap.literal, args = args[-1], args[:-1]
    typ, data = imap.search("UTF-8", *args)
    assert typ == "OK" and data == [expected]


def test_envelope_reads_obsolete_from_syntax(imap):
    # RFC 5322 §4.5: "From :" is a From field for IMAP as for the SMTP checks (issue 11 finding 5)
    imap.append("INBOX", None, None, b"From : Bob <bob@x.test>\r\nSubject: hi\r\n\r\nbody\r\n")
    imap.select("INBOX")
    env = fetch(imap, "1", "ENVELOPE")
    assert re.search(rb'ENVELOPE \(NIL "hi" \(\("Bob" NIL "bob" "x.test"\)\)', env), env
