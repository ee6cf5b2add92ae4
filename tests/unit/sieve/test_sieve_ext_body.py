"""body (RFC 5173): :text (default), :content, :raw; MIME decoded by the email package, bounded."""

from __future__ import annotations

import pytest
from sieve_table import run

from postern.sieve.limits import Limits

R = 'require ["body", "fileinto"];\n'
MIME = (
    "From: a@example.org\r\nTo: user@example.test\r\nSubject: mime\r\nMIME-Version: 1.0\r\n"
    'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
    "preamble\r\n--b1\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n"
    "\r\nGr=FC=DFe aus Berlin\r\n--b1\r\nContent-Type: text/html\r\n\r\n<p>Sale <b>now</b></p>\r\n"
    "--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    "c2VjcmV0IGJpbmFyeQ==\r\n--b1--\r\n"
)
CASES = [
    ('if body :contains "quarterly numbers" { discard; }', None, ["discard"]),
    ('if body :contains "Grüße" { discard; }', MIME, ["discard"]),  # QP and charset decoded
    ('if body :text :contains "Sale" { discard; }', MIME, ["discard"]),  # text/html is text
    ('if body :content "text/plain" :contains "Sale" { discard; }', MIME, ["store INBOX"]),
    ('if body :content "application" :contains "secret binary" { discard; }', MIME, ["discard"]),
    ('if body :contains "secret binary" { discard; }', MIME, ["store INBOX"]),  # not text
    ('if body :raw :contains "c2VjcmV0" { discard; }', MIME, ["discard"]),  # undecoded
    ('if body :raw :contains "Subject" { discard; }', MIME, ["store INBOX"]),  # the body only
    ('if body :content "" :contains "preamble" { discard; }', MIME, ["store INBOX"]),
    ('if body :content "" :count "eq" "3" { discard; }', MIME, ["discard"]),
]


@pytest.mark.parametrize("script, message, expected", CASES)
def test_body(script, message, expected):
    if ":count" in script:
        script = 'require "relational";\n' + script
    assert (run(R + script, message) if message else run(R + script)) == expected


def test_body_is_bounded():
    big = "From: a@example.org\r\nSubject: x\r\n\r\n" + "a" * 5000 + "NEEDLE\r\n"
    script = R + 'if body :raw :contains "NEEDLE" { discard; }'
    assert run(script, big) == ["discard"]
    assert run(script, big, limits=Limits(body_bytes=4000)) == ["store INBOX"]


def test_hostile_part_headers_stay_cheap():
    words = " ".join(["=?utf-8?q?a?="] * 20000)
    msg = ("From: a@example.org\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
           f"Content-Type: text/plain; name=\"{words}\"\r\n\r\nfindme\r\n--b--\r\n")
    import time

    t0 = time.monotonic()
    assert run(R + 'if body :contains "findme" { discard; }', msg) == ["discard"]
    assert time.monotonic() - t0 < 5  # liveness ceiling: the capped policy parses 1 KiB of the value
