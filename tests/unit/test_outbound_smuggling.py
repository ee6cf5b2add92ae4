"""Outbound SMTP smuggling (issue 11, finding 4): stored bytes with bare CR/LF dot lines
through every transport to a raw sink that records the wire.

Whatever the stored message holds, what leaves is canonical (every CR and LF
in a CRLF pair), dot-stuffed once, ends with one CRLF "." CRLF, and the
receiver sees exactly one transaction. For SES the raw content inside the
SendEmail request is checked the same way (SES relays it over SMTP itself).
"""

from __future__ import annotations

import base64
import json

import boto3
import pytest
from wire_sink import HttpSink, SmtpSink

from postern.canonical import canonical, data_payload, has_bare_cr, is_canonical
from postern.config import Settings
from postern.dns import StaticResolver
from postern.transports.base import SendRequest
from postern.transports.mx import MxTransport
from postern.transports.ses import SesTransport
from postern.transports.smarthost import SmarthostTransport

SMUGGLED = (b"MAIL FROM:<bob@example.test>\r\nRCPT TO:<victim@remote.test>\r\nDATA\r\n"
            b"From: bob@example.test\r\nSubject: smuggled\r\n\r\nevil\r\n")
HEAD = b"From: alice@example.test\r\nTo: carol@remote.test\r\nSubject: t\r\n\r\nfirst part"
# The end-of-data spellings receivers have been fooled by (SEC Consult 2023, CVE-2023-51764/5/6).
PATTERNS = {
    "cr-dot-crlf": b"\r.\r\n",
    "lf-dot-lf": b"\n.\n",
    "lf-dot-crlf": b"\n.\r\n",
    "crlf-dot-lf": b"\r\n.\n",
    "crlf-dot-cr": b"\r\n.\r",
    "cr-dot-cr": b"\r.\r",
}
MESSAGES = {name: HEAD + p + SMUGGLED + b".\r\nlast line without CRLF" for name, p in PATTERNS.items()}
MESSAGES["leading-dots"] = b".From a dot\r\n\r\n.\r\n..\r\n. \r\nend"


def unstuff(payload: bytes) -> bytes:
    assert payload.endswith(b"\r\n.\r\n")
    lines = payload[:-5].split(b"\r\n")
    return b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)


def check_smtp_wire(sink: SmtpSink, message: bytes) -> None:
    assert is_canonical(sink.transcript), "a bare CR or LF reached the wire"
    assert len(sink.transactions()) == 1, sink.commands
    assert [c.split(b":")[0].split(b" ")[0].upper() for c in sink.commands] == [b"EHLO", b"MAIL", b"RCPT", b"DATA", b"QUIT"]
    (payload,) = sink.payloads
    assert payload == data_payload(message)
    assert unstuff(payload) + b"\r\n" == canonical(message)


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_smarthost_sends_canonical_stuffed_bytes(name):
    message = MESSAGES[name]
    with SmtpSink() as sink:
        settings = Settings(smarthost=f"127.0.0.1:{sink.port}", smarthost_tls="none", outbound_timeout=5.0)
        (res,) = SmarthostTransport(settings, clients=None).send(
            SendRequest("alice@example.test", ("carol@remote.test",), message, "remote.test", "Q1"))
        assert res.ok, res.response
    check_smtp_wire(sink, message)


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_mx_sends_canonical_stuffed_bytes(name):
    message = MESSAGES[name]
    with SmtpSink() as sink:
        settings = Settings(mx_port=sink.port, outbound_timeout=5.0, mta_sts=False, outbound_vpc=True)
        resolver = StaticResolver(mx_records={"remote.test": [(10, "mx.remote.test")]},
                                  a_records={"mx.remote.test": ["127.0.0.1"]})
        (res,) = MxTransport(settings, resolver=resolver).send(
            SendRequest("alice@example.test", ("carol@remote.test",), message, "remote.test", "Q1"))
        assert res.ok, res.response
    check_smtp_wire(sink, message)


class _SesClients:
    def __init__(self, url: str):
        self.sesv2 = boto3.client("sesv2", endpoint_url=url, region_name="us-east-1",
                                  aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_ses_raw_content_is_canonical(name):
    message = MESSAGES[name]
    with HttpSink() as sink:
        (res,) = SesTransport(Settings(), _SesClients(sink.url)).send(
            SendRequest("alice@example.test", ("carol@remote.test",), message, "remote.test", "Q1"))
        assert res.ok, res.response
    (body,) = sink.bodies
    raw = base64.b64decode(json.loads(body)["Content"]["Raw"]["Data"])
    assert raw == canonical(message) and is_canonical(raw)


def test_the_sink_sees_smuggling_when_bytes_are_not_canonical():
    """The control: smtplib's own data() with stored bytes is what finding 4 was about."""
    import smtplib

    with SmtpSink() as sink:
        c = smtplib.SMTP("127.0.0.1", sink.port, timeout=5)
        c.ehlo()
        c.mail("alice@example.test")
        c.rcpt("carol@remote.test")
        c.data(MESSAGES["cr-dot-crlf"])
        c.quit()
    assert len(sink.transactions()) == 2  # the second one is bob's


def test_canonical_is_idempotent_and_keeps_crlf_messages_byte_identical():
    clean = b"From: a@b.test\r\n\r\n.dot\r\nbody\r\n"
    assert canonical(clean) is clean or canonical(clean) == clean
    for m in MESSAGES.values():
        once = canonical(m)
        assert canonical(once) == once and is_canonical(once) and not has_bare_cr(once)
    assert canonical(b"a\rb\nc\r\n") == b"a\r\nb\r\nc\r\n"
    assert data_payload(b".\r\n") == b"..\r\n.\r\n"
