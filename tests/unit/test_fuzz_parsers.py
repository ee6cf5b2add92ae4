"""Hypothesis over the sans-I/O command parsers: only their declared errors, never anything else.

The connection-level fuzzing (test_fuzz_smtp/pop3/imap/mime) finds what escapes a handler; this
file pins the pure layers underneath: SMTP paths, the IMAP receiver (random chunking of real and
hostile command streams, literals included) and command/argument parsers, the POP3 line buffer
and command parser.
"""

from __future__ import annotations

import pytest
from fuzz_harness import FUZZ, RUNS, bounded, release
from hypothesis import given
from hypothesis import strategies as st

from postern_gateway.imap import parser as P
from postern_gateway.imap.errors import ImapError
from postern_gateway.imap.receiver import Complete, Continue, NeedMore, Receiver, Reject
from postern_gateway.pop3.protocol import BadCommand as Pop3Bad
from postern_gateway.pop3.protocol import LineBuffer, LineTooLong
from postern_gateway.pop3.protocol import parse_command as pop3_parse
from postern_gateway.smtp.paths import PathError, parse_path

@pytest.fixture(scope="module", autouse=True)
def _unfreeze_after():
    yield
    release()


PATHISH = st.one_of(
    st.text(alphabet="<>@:,.%!\"\\[] azAZ09-+_=\t\x00é", max_size=60),
    st.sampled_from(["<a@b.test>", "<>", "<@x:a@b>", '<"a b"@c.test>', "<a@[1.2.3.4]>", "<a@b.test> SIZE=1",
                     "<a@b.test> BODY=8BITMIME SMTPUTF8", "<" + "a" * 300 + "@b.test>", " <a@b.test>", "<a@b.test"]),
)


@FUZZ
@given(arg=st.one_of(st.none(), PATHISH), reverse=st.booleans())
def test_smtp_path_parser(arg, reverse):
    RUNS["parsers"] = RUNS.get("parsers", 0) + 1
    with bounded("parsers"):
        try:
            mailbox, params = parse_path(arg, reverse=reverse)
        except PathError:
            return
        assert isinstance(mailbox, str) and isinstance(params, str)
        assert "\r" not in mailbox and "\n" not in mailbox


IMAP_PIECES = st.one_of(
    st.sampled_from([b"a LOGIN x y\r\n", b"a APPEND INBOX {5}\r\n", b"hello\r\n", b"a APPEND INBOX {3+}\r\nabc\r\n",
                     b"a FETCH 1:* (BODY[1.2.MIME]<0.5>)\r\n", b"(((((", b"{99999999999}\r\n", b"{0}\r\n", b"\r\n",
                     b'a SEARCH CHARSET UTF-8 "x\\"y"\r\n', b"a UID FETCH 1 FLAGS\r\n", b"* ", b"\n", b"\x00"]),
    st.binary(max_size=50),
)


@FUZZ
@given(pieces=st.lists(IMAP_PIECES, max_size=12), cuts=st.lists(st.integers(1, 40), min_size=1, max_size=6))
def test_imap_receiver_and_command_parser(pieces, cuts):
    RUNS["parsers"] = RUNS.get("parsers", 0) + 1
    with bounded("parsers"):
        data = b"".join(pieces)
        r = Receiver(max_line=4096, max_literal=1024, max_append_literal=4096)
        i = k = 0
        steps = 0
        while i < len(data):
            n = cuts[k % len(cuts)]
            r.feed(data[i:i + n])
            i, k = i + n, k + 1
            while True:
                steps += 1
                assert steps < 10_000, "receiver does not make progress"
                ev = r.next()
                if isinstance(ev, NeedMore):
                    break
                assert isinstance(ev, Complete | Continue | Reject)
                if isinstance(ev, Complete):
                    try:
                        cmd = P.parse_command(ev.data)
                    except ImapError:
                        continue
                    if cmd.name == "FETCH":
                        try:
                            P.fetch_items(cmd.args[1:])
                        except (ImapError, IndexError) as exc:
                            assert isinstance(exc, ImapError) or not cmd.args
        assert r.buffered <= len(data)


@FUZZ
@given(text=st.text(max_size=40))
def test_imap_section_and_argument_readers(text):
    RUNS["parsers"] = RUNS.get("parsers", 0) + 1
    with bounded("parsers"):
        for fn in (P.parse_section,):
            try:
                fn(text)
            except ImapError:
                pass
        try:
            args = P.parse_line(text.encode("utf-8", "replace"))
        except ImapError:
            return
        for tok in args:
            for reader in (P.astring, P.mailbox, P.seqset, P.flag, P.number, P.date_time, P.flag_list):
                try:
                    reader(tok)
                except ImapError:
                    pass


@FUZZ
@given(chunks=st.lists(st.binary(max_size=300), max_size=10))
def test_pop3_line_buffer_and_parser(chunks):
    RUNS["parsers"] = RUNS.get("parsers", 0) + 1
    with bounded("parsers"):
        buf = LineBuffer()
        for c in chunks:
            buf.feed(c)
            while True:
                try:
                    line = buf.next_line(255)
                except LineTooLong:
                    buf.clear()
                    break
                if line is None:
                    break
                assert len(line) <= 255 and line.endswith(b"\n")
                try:
                    cmd = pop3_parse(line)
                except Pop3Bad:
                    continue
                assert cmd.keyword.isupper() or not cmd.keyword.isalpha()
        assert len(buf) < 255 + 300
