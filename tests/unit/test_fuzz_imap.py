"""Hypothesis fuzzing of the IMAP connection handler end to end over loopback.

Streams of real commands (each state: not authenticated, authenticated, selected) with random
and hostile arguments — sequence sets, literals of lying lengths, unbalanced parentheses,
section specs, SEARCH keys, mailbox names — and raw bytes. Each session must end within a
bounded time after our EOF, no exception may reach a logger, and the listener must keep
greeting clients. A flood without CRLF is bounded.
"""

from __future__ import annotations

import pytest
from fuzz_harness import FUZZ, RUNS, Harness, fuzz_backend, lines
from hypothesis import given
from hypothesis import strategies as st

from postern_gateway.imap.server import start_imap

LOGIN = b"a0 LOGIN alice@example.test alice-pw\r\n"
SELECT = b"a1 SELECT INBOX\r\n"
VERBS = [b"CAPABILITY", b"NOOP", b"LOGOUT", b"STARTTLS", b"AUTHENTICATE PLAIN", b"LOGIN", b"SELECT", b"EXAMINE",
         b"CREATE", b"DELETE", b"RENAME", b"SUBSCRIBE", b"UNSUBSCRIBE", b"LIST", b"LSUB", b"STATUS", b"APPEND",
         b"CHECK", b"CLOSE", b"EXPUNGE", b"SEARCH", b"FETCH", b"STORE", b"COPY", b"MOVE", b"UID FETCH",
         b"UID SEARCH", b"UID STORE", b"UID COPY", b"UID MOVE", b"UID EXPUNGE", b"IDLE", b"DONE", b"ENABLE",
         b"ID", b"NAMESPACE", b"UNSELECT", b"GETQUOTAROOT", b"GETQUOTA", b"XYZZY"]
ARGS = st.one_of(
    st.sampled_from([
        b"", b"INBOX", b'"INBOX"', b"1:*", b"*", b"1,2,3:4", b"4294967295", b"0:0", b"*:1", b"1:*:2",
        b"1:* (FLAGS UID RFC822.SIZE)", b"1 (BODY[] BODYSTRUCTURE ENVELOPE)", b"1:* BODY.PEEK[HEADER.FIELDS (FROM)]",
        b"1 BODY[1.2.3.MIME]<0.10>", b"1 BODY[TEXT]<5.0>", b"1 (BODY[HEADER.FIELDS.NOT ()])", b"1 BODY[0]",
        b"1 BODY[1.TEXT]", b"1:2 RFC822", b"1 BINARY[1]", b"1 +FLAGS (\\Seen \\Deleted)", b"1 FLAGS.SILENT ()",
        b"1:* -FLAGS.SILENT (\\Recent)", b"ALL", b"OR OR FROM a SUBJECT b NOT SEEN", b"CHARSET UTF-8 TEXT x",
        b"CHARSET KOI8-R TEXT x", b"SINCE 1-Jan-2020 BEFORE 32-Foo-99", b"LARGER 99999999999999999999",
        b"MODSEQ 5", b"(((((((((((((((((((((((((((", b"))))", b'"unterminated', b"{5}\r\nabcde", b"{999999999}",
        b"{5+}\r\nab", b'"" "*"', b'"" %', b"~/../../etc", b"&Jjo-", b"&&&-", b"INBOX (MESSAGES UIDNEXT)",
        b"INBOX (\\Seen) {10+}\r\nSubject: x", b"Trash", b"1:* Trash", b'("name" "x")', b"NIL", b"CONDSTORE",
        b"\\", b"\x00", b"\xff", b"1 BODY[\xc2\xb2]", b"1 BODY.PEEK[HEADER.FIELDS (\xff)]", b"1 BODY[1.\xb2]",
    ]),
    st.binary(max_size=60),
)
TAG = st.one_of(st.sampled_from([b"t", b"t1", b"*", b"+", b"", b"a.b", b"x{"]), st.binary(max_size=6))
COMMAND = st.tuples(TAG, st.sampled_from(VERBS), ARGS).map(lambda t: t[0] + b" " + t[1] + (b" " + t[2] if t[2] else b""))
SEPS = st.lists(st.sampled_from([b"\r\n", b"\r\n", b"\n", b"\r", b""]), min_size=1, max_size=4)
STREAM = st.tuples(st.sampled_from(["none", "auth", "selected"]),
                   st.lists(st.one_of(COMMAND, st.binary(max_size=40)), max_size=12), SEPS)

MESSAGES = [
    b"From: a@remote.test\r\nTo: alice@example.test\r\nSubject: one\r\n\r\nhello\r\n",
    (b"From: b@remote.test\r\nSubject: two\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n"
     b"--x\r\nContent-Type: text/plain\r\n\r\nA\r\n--x\r\nContent-Type: message/rfc822\r\n\r\n"
     b"Subject: inner\r\nContent-Type: multipart/alternative; boundary=y\r\n\r\n--y\r\n\r\nB\r\n--y--\r\n--x--\r\n"),
]


@pytest.fixture(scope="module")
def harness():
    b = fuzz_backend()
    b.directory.add_domain("example.test")
    b.directory.add_user("alice@example.test", "alice-pw")
    b.store.ensure_mailboxes("alice@example.test")
    for raw in MESSAGES:
        b.store.append("alice@example.test", "INBOX", raw)
    h = Harness(start_imap, b)
    yield h
    h.close()


@FUZZ
@given(stream=STREAM)
def test_random_streams(harness, stream):
    state, parts, seps = stream
    prefix = {"none": b"", "auth": LOGIN, "selected": LOGIN + SELECT}[state]
    harness.session(prefix + lines(parts, seps))
    RUNS["imap"] = RUNS.get("imap", 0) + 1
    assert harness.problems == []


def test_alive_after_fuzzing(harness):
    harness.assert_healthy()


def test_flood_without_line_end_is_bounded(harness):
    harness.assert_flood_bounded()


def test_literal_flood_is_bounded(harness):
    """A literal announced far beyond the limit is refused, not buffered."""
    out = harness.session(LOGIN + b"t APPEND INBOX {4000000000}\r\n" + b"A" * 100000)
    assert b"t OK" not in out
    assert harness.alive() and harness.problems == []


def test_eight_bit_section_is_bad_not_internal_error(harness):
    """Found by the long fuzz run: 8-bit bytes inside BODY[...] raised UnicodeDecodeError in the parser."""
    out = harness.session(LOGIN + SELECT + b"c FETCH 1 BODY[\xc2\xb2]\r\nd LOGOUT\r\n")
    assert b"c BAD" in out and harness.problems == []
