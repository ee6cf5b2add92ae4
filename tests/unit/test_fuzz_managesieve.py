"""Hypothesis fuzzing of ManageSieve: the sans-I/O command reader, and the listener end to end.

The reader, fed real and hostile command streams in random chunks, only ever returns its events
(never raises), keeps its buffer bounded, and answers any stream in the same events whatever the
chunking. The listener, fed streams of commands before and after login (literals, SASL
continuations, scripts good and bad), ends each session within a bounded time after our EOF with
no exception logged, and under the fuzzers' liveness ceilings (tests/unit/fuzz_harness.py): a
second client is never stalled, memory never balloons. A flood without a line end is bounded.
"""

from __future__ import annotations

import base64

import pytest
from fuzz_harness import FUZZ, RUNS, Harness, bounded, fuzz_backend, lines
from hypothesis import given
from hypothesis import strategies as st

from postern_gateway.managesieve.reader import NEED_MORE, Command, CommandReader, Reject
from postern_gateway.managesieve.server import start_managesieve

TOKEN = base64.b64encode(b"\0alice@example.test\0alice-pw")
PIECES = st.one_of(
    st.sampled_from([
        b"CAPABILITY\r\n", b'AUTHENTICATE "PLAIN" "' + TOKEN + b'"\r\n', b'AUTHENTICATE "PLAIN"\r\n',
        b"{%d+}\r\n" % len(TOKEN) + TOKEN + b"\r\n", b'"*"\r\n', b'PUTSCRIPT "s" {5+}\r\nkeep;\r\n',
        b'PUTSCRIPT "s" "keep;"\r\n', b'CHECKSCRIPT {9+}\r\nif true {\r\n', b'SETACTIVE "s"\r\n', b'SETACTIVE ""\r\n',
        b'GETSCRIPT "s"\r\n', b"LISTSCRIPTS\r\n", b'DELETESCRIPT "s"\r\n', b'RENAMESCRIPT "s" "t"\r\n',
        b'HAVESPACE "s" 99999\r\n', b"HAVESPACE \"s\" 99999999999\r\n", b'NOOP "x"\r\n', b"UNAUTHENTICATE\r\n",
        b"STARTTLS\r\n", b"LOGOUT\r\n", b"{99999999999+}\r\n", b"{0+}\r\n", b'"\\', b'"a\\"b"', b"{", b"\r\n",
        b"\n", b"\x00", b" ", b"PUTSCRIPT {70000+}\r\n", b'"' + b"\xc3\xa9" * 600 + b'"',
    ]),
    st.binary(max_size=50),
)


def drain(reader: CommandReader) -> list:
    out = []
    for _ in range(10_000):
        ev = reader.next()
        if ev is NEED_MORE:
            return out
        assert isinstance(ev, Command | Reject)
        out.append(ev)
    raise AssertionError("the reader never asked for more input")


@FUZZ
@given(pieces=st.lists(PIECES, max_size=20), cuts=st.lists(st.integers(1, 64), min_size=1, max_size=8))
def test_reader_any_chunking(pieces, cuts):
    RUNS["parsers"] = RUNS.get("parsers", 0) + 1
    data = b"".join(pieces)
    with bounded("parsers"):
        whole = CommandReader(max_literal=4096, max_script=65536)
        whole.feed(data)
        want = drain(whole)
        chunked = CommandReader(max_literal=4096, max_script=65536)
        got, i, k = [], 0, 0
        while i < len(data):
            n = cuts[k % len(cuts)]
            chunked.feed(data[i:i + n])
            i, k = i + n, k + 1
            got += drain(chunked)
            assert chunked.buffered <= 65536 + 8 * 1024 + 64  # a script literal and one line, at most
        assert got == want


@pytest.fixture(scope="module")
def harness():
    b = fuzz_backend()
    b.directory.add_domain("example.test")
    b.directory.add_user("alice@example.test", "alice-pw")
    h = Harness(start_managesieve, b)
    yield h
    h.close()


SEPS = st.lists(st.sampled_from([b"", b"", b"\r\n", b"\n"]), min_size=1, max_size=3)


@FUZZ
@given(login=st.booleans(), parts=st.lists(PIECES, max_size=14), seps=SEPS)
def test_random_streams(harness, login, parts, seps):
    data = (b'AUTHENTICATE "PLAIN" "' + TOKEN + b'"\r\n' if login else b"") + lines(parts, seps)
    harness.session(data)
    RUNS["managesieve"] = RUNS.get("managesieve", 0) + 1
    assert harness.problems == []


def test_alive_after_fuzzing(harness):
    harness.assert_healthy()


def test_flood_without_line_end_is_bounded(harness):
    harness.assert_flood_bounded()
