"""One header parser decides what a header is (issue 11 finding 5), on both SMTP ports (smtplib on loopback).

The findings: submission checked From: with the stdlib's parser, which skips a ``From :`` field
(WSP before the colon), ends the header at a line without a colon and ignores a leading
continuation line, while IMAP's ENVELOPE read every one of those; so ``From : bob`` above
``From: alice`` passed the ownership check and the reader showed bob. Now every reader goes
through postern.mail: submission refuses each shape with one reply (status.HEADER_REFUSED),
the MX port refuses more than one From: or an unreadable one (RFC 7489 §6.6.1), and ENVELOPE
shows the author the checks judged.
"""

from __future__ import annotations

import smtplib

import pytest
from fakes import MemoryClients
from helpers import HOST, ServerThread, memory_backend
from test_smtp_submission import shared_directory

from postern import status
from postern.envelope import Envelope
from postern_gateway.imap import message as M
from postern_gateway.smtp.server import start_smtp
from postern_gateway.smtp.spool import Spooler

REFUSED = (status.HEADER_REFUSED.code, status.HEADER_REFUSED.enhanced)


@pytest.fixture(params=["mx", "submission"])
def smtp(request):
    clients = MemoryClients()
    b = memory_backend(directory=shared_directory())  # alice and bob @example.test
    b.spooler = Spooler(b.settings, clients)
    with ServerThread(start_smtp, b, role=request.param) as srv:
        srv.clients, srv.role = clients, request.param
        yield srv


def send(srv, header: bytes) -> tuple[int, bytes]:
    """DATA with ``header`` + a body; (code, reply text) of the end of DATA."""
    c = smtplib.SMTP(HOST, srv.port, timeout=10)
    try:
        c.ehlo("client.example")
        sender = "alice@example.test" if srv.role == "submission" else "someone@remote.test"
        if srv.role == "submission":
            c.login("alice@example.test", "alice-pw")
        assert c.mail(sender)[0] == 250
        assert c.rcpt("bob@example.test")[0] == 250
        return c.data(header + b"To: bob@example.test\r\nSubject: hi\r\n\r\nbody\r\n")
    finally:
        c.close()


def stored(srv) -> list[bytes]:
    return [srv.clients.objects[Envelope.from_json(m).s3_key] for m in srv.clients.messages]


def assert_refused(code: int, text: bytes, reason: str) -> None:
    assert (code, text.split()[0].decode()) == REFUSED, text
    assert text.startswith(b"5.7.1 Message header refused: " + reason.encode()), text


# the differentials of the finding: the stdlib saw alice alone, IMAP's ENVELOPE showed bob first
DIFFERENTIALS = {
    "obsolete From : above From:": (b"From : bob@example.test\r\nFrom: alice@example.test\r\n",
                                    "more than one From: field", "more than one From: field"),
    "From: above obsolete From :": (b"From: alice@example.test\r\nFrom  :bob@example.test\r\n",
                                    "more than one From: field", "more than one From: field"),
    "a line without a colon between two From:": (
        b"From: alice@example.test\r\nno colon on this line\r\nFrom: bob@example.test\r\n",
        "a header line is not a field", "more than one From: field"),
    "a leading continuation line": (b" From: bob@example.test\r\nFrom: alice@example.test\r\n",
                                    "the header section starts with a continuation line", None),
    "a bad field name": (b"From: alice@example.test\r\nX Bad: x\r\n", "a header line is not a field", None),
    "an unreadable From:": (b"From: undisclosed-recipients:;\r\n", "an address in From: is not readable",
                            "no readable address in From:"),
    "a From: without a domain": (b"From: alice\r\n", "an address in From: is not readable",
                                 "no readable address in From:"),
    "two From: fields": (b"From: alice@example.test\r\nFrom: alice@example.test\r\n",
                         "more than one From: field", "more than one From: field"),
}


@pytest.mark.parametrize("name", list(DIFFERENTIALS))
def test_header_shapes(smtp, name):
    header, at_submission, at_mx = DIFFERENTIALS[name]
    reason = at_submission if smtp.role == "submission" else at_mx
    code, text = send(smtp, header)
    if reason is None:  # the MX port refuses only what DMARC could not judge
        assert code == 250, text
        return
    assert_refused(code, text, reason)
    assert smtp.clients.messages == []


def test_obsolete_from_alone_is_the_author_everywhere(smtp):
    # "From :" is From for the checks (ownership here: bob is not alice's) and for ENVELOPE
    code, text = send(smtp, b"From : Bob <bob@example.test>\r\n")
    if smtp.role == "submission":
        assert code == 550 and b"<bob@example.test> not owned" in text
        code, text = send(smtp, b"From : Alice <alice@example.test>\r\n")
    assert code == 250, text
    (raw,) = stored(smtp)
    author = b'"Alice" NIL "alice"' if smtp.role == "submission" else b'"Bob" NIL "bob"'
    assert M.envelope(raw).split(b"((", 1)[1].startswith(author)


def test_plain_mail_still_passes(smtp):
    code, text = send(smtp, b"From: Alice <alice@example.test>\r\n")
    assert code == 250, text
    code, text = send(smtp, b"Received: from x\r\n\tby y; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
                            b"From: =?utf-8?q?Al=C3=AFce?= <alice@example.test>, alice@example.test\r\n")
    assert code == 250, text
    if smtp.role == "mx":  # no From: at all: there is no author to impersonate
        assert send(smtp, b"Sender: x@remote.test\r\n")[0] == 250
