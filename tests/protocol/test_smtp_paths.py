"""Pure pieces of the SMTP gateway on byte/str tables: paths, enhanced codes, trace lines."""

from __future__ import annotations

import pytest

from postern_gateway.smtp import trace
from postern_gateway.smtp.paths import PathError, parse_path
from postern_gateway.smtp.replies import enhance

PATHS = [  # (argument after FROM:/TO:, reverse?, mailbox, params)
    ("<a@b.example>", True, "a@b.example", ""),
    (" <a@b.example>", True, "a@b.example", ""),  # space after the colon: tolerated
    ("a@b.example", True, "a@b.example", ""),  # no brackets: tolerated
    ("<> SIZE=10", True, "", "SIZE=10"),
    ("<a@b.example> SIZE=10 BODY=8BITMIME", True, "a@b.example", "SIZE=10 BODY=8BITMIME"),
    ("<@relay.example,@r2.example:a@b.example>", False, "a@b.example", ""),  # source route ignored
    ('<"john doe"@b.example>', False, '"john doe"@b.example', ""),
    ("<a@[192.0.2.1]>", False, "a@[192.0.2.1]", ""),
    ("<a@[IPv6:2001:db8::1]>", False, "a@[IPv6:2001:db8::1]", ""),
    ("<jörg@bücher.example>", False, "jörg@bücher.example", ""),
    ("<Postmaster>", False, "postmaster", ""),
    ("<a+tag@b.example>", False, "a+tag@b.example", ""),
]

BAD_PATHS = [
    ("<unterminated", True),
    ("<a@b.example", False),
    ("<>", False),  # null path only as a reverse-path
    ("<a b@c.example>", True),
    ("<a@>", True),
    ("<@b.example>", True),
    ("<a@b..example>", True),
    ("<a@-b.example>", True),
    ("<.a@b.example>", True),
    ("<a.@b.example>", True),
    ("<<a@b.example>>", False),
    ("<a@b.example>x", True),
    ("<a@b.example>>", False),
    ("", True),
    (None, True),
    ("<user>", True),
    ("<a@b.example\udcff>", True),  # undecodable byte (surrogateescape)
    ("<" + "a" * 250 + "@b.example>", True),
]


@pytest.mark.parametrize("arg,reverse,mailbox,params", PATHS)
def test_parse_path(arg, reverse, mailbox, params):
    assert parse_path(arg, reverse=reverse) == (mailbox, params)


@pytest.mark.parametrize("arg,reverse", BAD_PATHS)
def test_bad_paths(arg, reverse):
    with pytest.raises(PathError):
        parse_path(arg, reverse=reverse)


ENHANCE = [  # (aiosmtpd's line, verb, what goes on the wire)
    ("250 OK", None, "250 2.0.0 OK"),
    ("221 Bye", None, "221 2.0.0 Bye"),
    ("503 Error: need MAIL command", "RCPT", "503 5.5.1 Error: need MAIL command"),
    ("553 5.1.3 Error: malformed address", "MAIL", "501 5.1.7 Bad sender address syntax"),
    ("553 5.1.3 Error: malformed address", "RCPT", "501 5.1.3 Bad recipient address syntax"),
    ("552 Error: message size exceeds fixed maximum message size", "MAIL",
     "552 5.3.4 Message size exceeds fixed maximum message size"),
    ("552 Error: Too much mail data", None, "552 5.3.4 Message size exceeds fixed maximum message size"),
    ('500 Error: command "FROB" not recognized', None, '500 5.5.1 Error: command "FROB" not recognized'),
    ("530 Must issue a STARTTLS command first", None, "530 5.7.0 Must issue a STARTTLS command first"),
    ("501 Syntax: HELO hostname", None, "501 5.5.4 Syntax: HELO hostname"),
    ("250-SIZE 100", None, "250-2.0.0 SIZE 100"),
    ("451 something new", None, "451 4.0.0 something new"),  # unknown text: class default
    ("550 5.7.1 Relaying denied", None, "550 5.7.1 Relaying denied"),  # already coded: unchanged
    ("354 End data with <CR><LF>.<CR><LF>", None, "354 End data with <CR><LF>.<CR><LF>"),
    ("334 VXNlcm5hbWU6", None, "334 VXNlcm5hbWU6"),
    ("not a reply", None, "not a reply"),
]


@pytest.mark.parametrize("line,verb,wire", ENHANCE)
def test_enhance(line, verb, wire):
    assert enhance(line, verb) == wire


HELO = [
    ("client.example", "client.example"),
    ("[192.0.2.1]", "[192.0.2.1]"),
    ("evil\tname", "unknown (helo=evil?name)"),
    ("x" * 300, "unknown (helo=" + "x" * 64 + ")"),
    ("", "unknown"),
    ("héllo", "unknown (helo=h?llo)"),
    ("a(b)c", "unknown (helo=a?b?c)"),
]


@pytest.mark.parametrize("helo,shown", HELO)
def test_helo_name_is_header_safe(helo, shown):
    assert trace.helo_name(helo) == shown


@pytest.mark.parametrize("ip,lit", [("192.0.2.1", "[192.0.2.1]"), ("2001:db8::1", "[IPv6:2001:db8::1]"),
                                    ("::ffff:192.0.2.1", "[192.0.2.1]"), ("bogus", "[unknown]")])
def test_address_literal(ip, lit):
    assert trace.address_literal(ip) == lit


@pytest.mark.parametrize("esmtp,tls,auth,utf8,name", [
    (False, False, False, False, "SMTP"), (True, False, False, False, "ESMTP"), (True, True, False, False, "ESMTPS"),
    (True, False, True, False, "ESMTPA"), (True, True, True, False, "ESMTPSA"), (True, True, True, True, "UTF8SMTPSA"),
])
def test_with_protocol(esmtp, tls, auth, utf8, name):
    assert trace.with_protocol(esmtp=esmtp, tls=tls, auth=auth, utf8=utf8) == name


def test_received_golden():
    got = trace.received(hostname="mx.example.test", client_ip="192.0.2.1", helo="client.example",
                         queue_id="0123456789abcdef01234567", when=0.0, recipients=["alice@example.test"],
                         tls=True, tls_info="TLSv1.3 with cipher TLS_AES_256_GCM_SHA384")
    assert got == ("Received: from client.example ([192.0.2.1])\r\n"
                   "\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384)\r\n"
                   "\tby mx.example.test (Postern) with ESMTPS id 0123456789abcdef01234567\r\n"
                   "\tfor <alice@example.test>; Thu, 01 Jan 1970 00:00:00 +0000\r\n")
    assert all(len(line) <= 78 for line in got.split("\r\n"))


def test_complete_submission_with_bare_lf_headers():
    raw = b"From: a@b.example\nSubject: x\n\nbody\n"
    out, added = trace.complete_submission(raw, hostname="h.example", queue_id="q", when=0.0)
    assert added == ["Message-ID", "Date"] and out.endswith(raw)


def test_complete_submission_ignores_fields_in_the_body():
    raw = b"From: a@b.example\r\n\r\nMessage-ID: <not@a.header>\r\nDate: nope\r\n"
    out, added = trace.complete_submission(raw, hostname="h.example", queue_id="q", when=0.0)
    assert added == ["Message-ID", "Date"] and out.endswith(raw)


def test_header_section_is_bounded():
    big = b"X-Filler: " + b"y" * 900 + b"\r\n"
    raw = big * (trace.MAX_HEADER_BLOCK // len(big) + 2) + b"\r\nbody\r\n"
    with pytest.raises(trace.HeaderTooLarge):
        trace.read_header(raw)
    assert trace.read_header(b"Subject: x\r\n").end == 12  # no body: all header
    assert trace.read_header(b"\r\nbody").end == 0
