"""Hypothesis fuzzing of the POP3 connection handler end to end over loopback.

Streams of real commands (before and after login, with random and hostile arguments) and raw
bytes with any line ending; each session must end within a bounded time after our EOF with no
exception logged, and the listener must keep greeting clients. A flood without CRLF is bounded.
"""

from __future__ import annotations

import pytest
from fuzz_harness import FUZZ, RUNS, Harness, fuzz_backend, lines
from hypothesis import given
from hypothesis import strategies as st

from postern_gateway.pop3.server import start_pop3

LOGIN = [b"USER alice@example.test", b"PASS alice-pw"]
VERBS = [b"USER", b"PASS", b"APOP", b"AUTH", b"AUTH PLAIN", b"STAT", b"LIST", b"UIDL", b"RETR", b"TOP", b"DELE",
         b"NOOP", b"RSET", b"CAPA", b"STLS", b"QUIT", b"LAST", b"XTND"]
ARGS = st.one_of(
    st.sampled_from([b"", b"1", b"2", b"0", b"-1", b"99999999999999999999", b"1 0", b"1 -5", b"2 999999",
                     b"alice@example.test", b"=", b"*", b"AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1wdw==",
                     b"\xff\xfe", b"a" * 600]),
    st.binary(max_size=60),
)
COMMAND = st.tuples(st.sampled_from(VERBS), ARGS).map(lambda t: t[0] + (b" " + t[1] if t[1] else b""))
SEPS = st.lists(st.sampled_from([b"\r\n", b"\r\n", b"\n", b"\r", b""]), min_size=1, max_size=4)
STREAM = st.tuples(st.booleans(), st.lists(st.one_of(COMMAND, st.binary(max_size=40)), max_size=14), SEPS)

MESSAGES = [
    b"From: a@remote.test\r\nSubject: one\r\n\r\nline\r\n.dot line\r\n",
    b"From: b@remote.test\r\nSubject: two\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n\r\nA\r\n--x--\r\n",
]


@pytest.fixture(scope="module")
def harness():
    b = fuzz_backend(pop3_timeout=5.0)
    b.directory.add_domain("example.test")
    b.directory.add_user("alice@example.test", "alice-pw")
    b.store.ensure_mailboxes("alice@example.test")
    for raw in MESSAGES:
        b.store.append("alice@example.test", "INBOX", raw)
    h = Harness(start_pop3, b)
    yield h
    h.close()


@FUZZ
@given(stream=STREAM)
def test_random_streams(harness, stream):
    login, parts, seps = stream
    data = (b"\r\n".join(LOGIN) + b"\r\n" if login else b"") + lines(parts, seps)
    harness.session(data)
    RUNS["pop3"] = RUNS.get("pop3", 0) + 1
    assert harness.problems == []


def test_alive_after_fuzzing(harness):
    harness.assert_healthy()


def test_flood_without_line_end_is_bounded(harness):
    harness.assert_flood_bounded()
