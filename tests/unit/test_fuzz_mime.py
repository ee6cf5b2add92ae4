"""Hypothesis fuzzing of the MIME handling behind IMAP FETCH, end to end over loopback.

Random, often malformed MIME messages (nested multiparts, message/rfc822, missing or lying
boundaries, odd transfer encodings, RFC 2047/2231 parameters, bare LFs, 8-bit and NUL bytes,
truncation) are APPENDed, then fetched with every structure and section item. The session must
answer every FETCH with a tagged OK (or NO), never log an exception, and ``BODY[]`` must give
back the appended bytes exactly.
"""

from __future__ import annotations

import re
import socket

import pytest
from fuzz_harness import FUZZ, HOST, RUNS, Harness, fuzz_backend
from hypothesis import given
from hypothesis import strategies as st

from postern_gateway.imap.server import start_imap

EOL = st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n"])
TEXT = st.one_of(st.sampled_from([b"hello", b"=?utf-8?B?w6k=?=", b"=?bogus?Q?=ZZ?=", b"\xc3\xa9t\xc3\xa9", b"\x00\x01",
                                  b"..", b".", b"--", b"a" * 200, b""]), st.binary(max_size=50))
CTE = st.sampled_from([b"", b"7bit", b"8bit", b"binary", b"base64", b"quoted-printable", b"x-uuencode", b"bogus"])
PARAM = st.sampled_from([b"", b'; charset="utf-8"', b"; charset=koi8-r", b"; name*=utf-8''%C3%A9.txt",
                         b"; name*0=a; name*1=b", b'; name="a\\"b"', b"; format=flowed; delsp=yes", b";;;", b"; ="])
LEAF_TYPE = st.sampled_from([b"text/plain", b"text/html", b"application/octet-stream", b"image/png", b"text",
                             b"", b"x/y/z", b"message/delivery-status"])
HEADER_NOISE = st.lists(st.sampled_from([
    b"Subject: =?utf-8?Q?caf=C3=A9?=", b"From: \"A, B\" <a@b.test>, c@d.test", b"To: undisclosed-recipients:;",
    b"Date: Tue, 01 Dec 2026 10:00:00 +0000", b"Date: garbage", b"Message-ID: <x@y>", b"In-Reply-To: <<<",
    b"Cc: =?x?B?!!!?=", b"Subject: folded\r\n continued", b"Content-Disposition: attachment; filename=x.bin",
    b"Content-Language: en", b"Content-Location: http://x", b"Content-ID: <c@d>", b"X-Empty:", b"No colon here",
    b": empty name", b"From: \xff\xfe@x.test",
]), max_size=4)


@st.composite
def part(draw, depth=0):
    headers = list(draw(HEADER_NOISE))
    kind = draw(st.sampled_from(["leaf", "leaf", "multipart", "rfc822"] if depth < 3 else ["leaf"]))
    eol = draw(EOL)
    if kind == "leaf":
        headers.append(b"Content-Type: " + draw(LEAF_TYPE) + draw(PARAM))
        cte = draw(CTE)
        if cte:
            headers.append(b"Content-Transfer-Encoding: " + cte)
        body = eol.join(draw(st.lists(TEXT, max_size=5)))
    elif kind == "rfc822":
        headers.append(b"Content-Type: message/rfc822")
        body = draw(part(depth + 1))
    else:
        boundary = draw(st.sampled_from([b"b1", b"=_b", b"x" * 70, b"", b"a b", b"--"])) + str(depth).encode()
        sub = draw(st.sampled_from([b"mixed", b"alternative", b"digest", b"related", b"signed"]))
        headers.append(b'Content-Type: multipart/' + sub + b'; boundary="' + boundary + b'"' + draw(PARAM))
        children = draw(st.lists(part(depth + 1), max_size=3))
        lie = draw(st.sampled_from([boundary, boundary, b"other"]))
        body = draw(TEXT) + eol
        for c in children:
            body += b"--" + lie + eol + c + eol
        if draw(st.booleans()):
            body += b"--" + boundary + b"--" + eol + draw(TEXT)
    msg = eol.join(headers) + eol + eol + body
    if draw(st.integers(0, 9)) == 0:
        msg = msg[: draw(st.integers(0, len(msg)))]  # truncated anywhere
    return msg


FETCHES = [b"(FLAGS RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY INTERNALDATE)", b"BODY.PEEK[1]", b"BODY.PEEK[1.MIME]",
           b"BODY.PEEK[2]", b"BODY.PEEK[1.1]", b"BODY.PEEK[2.1.HEADER]", b"BODY.PEEK[1.TEXT]", b"BODY.PEEK[TEXT]",
           b"BODY.PEEK[HEADER]", b"BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)]",
           b"BODY.PEEK[HEADER.FIELDS.NOT (SUBJECT)]", b"BODY.PEEK[]<0.64>", b"BODY.PEEK[3.2.1]<2.5>",
           b"RFC822.HEADER", b"RFC822.TEXT"]


class Client:
    """A tiny IMAP reader: whole responses up to the tagged line, literals included."""

    def __init__(self, port):
        self.s = socket.create_connection((HOST, port), timeout=10)
        self.buf = b""
        self.n = 0
        assert self._line().startswith(b"* OK")

    def _fill(self):
        chunk = self.s.recv(65536)
        if not chunk:
            raise EOFError(self.buf[-300:])
        self.buf += chunk

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        i = self.buf.index(b"\r\n") + 2
        line, self.buf = self.buf[:i], self.buf[i:]
        return line

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def response(self, tag: bytes) -> bytes:
        out = b""
        while True:
            line = self._line()
            out += line
            m = re.search(rb"\{(\d+)\+?\}\r\n$", line)
            if m:
                out += self._exact(int(m.group(1)))
                continue
            if line.startswith(tag + b" "):
                return out

    def cmd(self, line: bytes) -> bytes:
        self.n += 1
        tag = b"m%d" % self.n
        self.s.sendall(tag + b" " + line + b"\r\n")
        return self.response(tag)

    def append(self, raw: bytes) -> bytes:
        self.n += 1
        tag = b"m%d" % self.n
        self.s.sendall(tag + b" APPEND INBOX {%d+}\r\n" % len(raw) + raw + b"\r\n")  # LITERAL+ (RFC 7888)
        return self.response(tag)


@pytest.fixture(scope="module")
def harness():
    b = fuzz_backend()
    b.directory.add_domain("example.test")
    b.directory.add_user("alice@example.test", "alice-pw")
    b.store.ensure_mailboxes("alice@example.test")
    h = Harness(start_imap, b, name="mime")
    yield h
    h.close()


@pytest.fixture(scope="module")
def client(harness):
    c = Client(harness.port)
    assert b" OK" in c.cmd(b"LOGIN alice@example.test alice-pw")
    assert b" OK" in c.cmd(b"SELECT INBOX")
    yield c
    c.s.close()


def _tagged(resp: bytes) -> bytes:
    return resp.rstrip(b"\r\n").rsplit(b"\r\n", 1)[-1]


@FUZZ
@given(raw=part())
def test_fetch_anything(harness, client, raw):
    with harness.input():  # the liveness ceilings hold for every generated message
        _fetch_anything(harness, client, raw)


def _fetch_anything(harness, client, raw):
    r = client.append(raw)
    tagged = _tagged(r)
    assert b" OK" in tagged or b" NO" in tagged, tagged
    if b" OK" not in tagged:
        return
    got = client.cmd(b"FETCH * BODY.PEEK[]")
    assert b" OK" in _tagged(got)
    m = re.search(rb"BODY\[\] \{(\d+)\}\r\n", got)
    assert m, got[:200]
    start = m.end()
    assert got[start:start + int(m.group(1))] == raw, "BODY[] is not the appended bytes"
    for item in FETCHES:
        resp = client.cmd(b"FETCH * " + item)
        t = _tagged(resp)
        assert b" OK" in t or b" NO" in t, (item, t)
    for key in (b"TEXT hello", b"BODY caf", b"HEADER Subject x", b"CHARSET UTF-8 SUBJECT {2+}\r\n\xc3\xa9"):
        t = _tagged(client.cmd(b"SEARCH " + key))
        assert b" OK" in t or b" NO" in t, (key, t)
    # Expunge it again: the mailbox stays small however long the run (SEARCH reads every body).
    assert b" OK" in _tagged(client.cmd(b"STORE * +FLAGS.SILENT (\\Deleted)"))
    assert b" OK" in _tagged(client.cmd(b"EXPUNGE"))
    RUNS["mime"] = RUNS.get("mime", 0) + 1
    assert harness.problems == []


def test_alive_after_fuzzing(harness):
    assert harness.alive() and harness.problems == []
