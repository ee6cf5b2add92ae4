"""Trust checks in the SMTP session, as the gateway app wires them (``trust.gate.smtp_checks``).

MX: SPF/DKIM/DMARC at end of DATA with DNS from a fake resolver — p=reject refused in the
session with 550 5.7.1, p=quarantine accepted as junk (the router files it in Junk),
everything else accepted with our Authentication-Results on top of the trace prefix; DNSBL
at connect. Every role: concurrent connections per IP. Submission: AUTH lockout (454 with a
reason) and the sending rate (451 4.7.1).
"""

from __future__ import annotations

import base64
import smtplib

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from helpers import HOST, ServerThread, memory_backend

from postern.envelope import Envelope
from postern.limits import Limits, MemoryCounters
from postern.pipeline.router import plan
from fakes import MemoryClients
from postern_gateway.smtp.server import start_smtp
from postern_gateway.smtp.spool import Spooler
from postern_gateway.trust import dnsbl
from fakes import FakeResolver
from postern_gateway.trust.gate import Trust, smtp_checks

CLIENT_IP = "127.0.0.1"  # loopback: SPF records below authorise or refuse it explicitly


@pytest.fixture(scope="module")
def key():
    k = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    priv = k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                           serialization.NoEncryption())
    pub = k.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return priv, b"v=DKIM1; k=rsa; p=" + base64.b64encode(pub)


def resolver(key) -> FakeResolver:
    r = FakeResolver()
    r.add("good.test", "TXT", "v=spf1 ip4:127.0.0.1 -all")
    r.add("_dmarc.good.test", "TXT", "v=DMARC1; p=reject")
    r.add("s1._domainkey.good.test", "TXT", key[1])
    r.add("strict.test", "TXT", "v=spf1 -all")
    r.add("_dmarc.strict.test", "TXT", "v=DMARC1; p=reject")
    r.add("soft.test", "TXT", "v=spf1 ~all")
    r.add("_dmarc.soft.test", "TXT", "v=DMARC1; p=quarantine")
    r.add("relaxed.test", "TXT", "v=spf1 -all")
    r.add("_dmarc.relaxed.test", "TXT", "v=DMARC1; p=none")
    r.fail("broken.test")
    r.fail("_dmarc.broken.test")
    return r


def backend(key, **overrides):
    b = memory_backend(**overrides)
    b.directory.add_domain("example.test")
    b.directory.add_user("alice@example.test", "alice-pw")
    b.spooler = Spooler(b.settings, MemoryClients())
    b.limits = Limits(b.settings, MemoryCounters())
    b.trust = Trust.from_settings(b.settings.replace(inbound_auth_skip=()), resolver(key))
    return b


@pytest.fixture
def mx(key):
    b = backend(key)
    with ServerThread(start_smtp, b, role="mx", checks=smtp_checks(b, "mx")) as srv:
        yield srv


def message(domain: str, body: bytes = b"Hello\r\n") -> bytes:
    return (f"From: Someone <someone@{domain}>\r\nTo: alice@example.test\r\nSubject: trust\r\n"
            f"Message-ID: <1@{domain}>\r\n\r\n").encode() + body


def send(srv, mail_from: str, raw: bytes):
    """-> (code, reply) of the end of DATA (or of the first refusal)."""
    with smtplib.SMTP(HOST, srv.port, timeout=10) as c:
        c.ehlo("mail.client.test")
        for cmd in (f"MAIL FROM:<{mail_from}>", "RCPT TO:<alice@example.test>"):
            code, msg = c.docmd(cmd)
            if code != 250:
                return code, msg
        return c.data(raw)


def last_envelope(srv) -> Envelope:
    return Envelope.from_json(srv.backend.spooler.clients.messages[-1])


# name, MAIL FROM, message domain, sign?, tamper?, expected code, expected A-R fragments, junk
CASES = [
    ("spf+dkim pass", "b@good.test", "good.test", True, False, 250, ["spf=pass", "dkim=pass", "dmarc=pass"], False),
    ("dkim pass, spf fail", "b@strict.test", "good.test", True, False, 250, ["spf=fail", "dkim=pass", "dmarc=pass"], False),
    ("spf pass only", "b@good.test", "good.test", False, False, 250, ["spf=pass", "dkim=none", "dmarc=pass"], False),
    ("spf fail, p=reject", "b@strict.test", "strict.test", False, False, 550, [], False),
    ("dkim broken, p=reject", "b@strict.test", "good.test", True, True, 550, [], False),
    ("softfail, p=quarantine", "b@soft.test", "soft.test", False, False, 250,
     ["spf=softfail", "dmarc=fail (p=quarantine dis=quarantine)"], True),
    ("fail, p=none", "b@relaxed.test", "relaxed.test", False, False, 250, ["spf=fail", "dmarc=fail (p=none"], False),
    ("temperror", "b@broken.test", "broken.test", False, False, 250, ["spf=temperror", "dmarc=temperror"], False),
    ("no policy at all", "b@nowhere.test", "nowhere.test", False, False, 250, ["spf=none", "dmarc=none"], False),
]


@pytest.mark.parametrize("name,mail_from,domain,signed,tamper,code,fragments,junk", CASES, ids=[c[0] for c in CASES])
def test_inbound_authentication(mx, key, name, mail_from, domain, signed, tamper, code, fragments, junk):
    raw = message(domain)
    if signed:
        raw = dkim.sign(raw, b"s1", b"good.test", key[0], include_headers=[b"from", b"to", b"subject"]) + raw
    if tamper:
        raw = raw.replace(b"Hello", b"Hullo")
    before = len(mx.backend.spooler.clients.messages)
    got_code, reply = send(mx, mail_from, raw)
    assert got_code == code, reply
    if code == 550:
        assert reply.startswith(b"5.7.1") and b"DMARC" in reply
        assert len(mx.backend.spooler.clients.messages) == before  # refused in the session: nothing queued
        return
    env = last_envelope(mx)
    ar, _, rest = env.trace_headers.partition("\r\nReceived:")
    assert ar.startswith("Authentication-Results: mx.example.test;"), env.trace_headers[:80]
    assert rest, "Received must follow our Authentication-Results"
    for f in fragments:
        assert f in ar, (f, ar)
    assert env.junk is junk
    assert mx.backend.spooler.clients.objects[env.s3_key] == raw  # the stored bytes are exactly what arrived
    jobs = plan(env, mx.backend.directory).store
    assert [j.mailbox for j in jobs] == (["Junk"] if junk else ["INBOX"])


def test_loopback_skipped_by_default(key):
    b = backend(key)
    b.trust = Trust.from_settings(b.settings, resolver(key))  # default POSTERN_INBOUND_AUTH_SKIP
    with ServerThread(start_smtp, b, role="mx", checks=smtp_checks(b, "mx")) as srv:
        assert send(srv, "b@strict.test", message("strict.test"))[0] == 250
        assert last_envelope(srv).trace_headers.startswith("Authentication-Results: mx.example.test; none\r\n")


def test_dnsbl_refuses_at_connect(key, monkeypatch):
    monkeypatch.setattr(dnsbl, "_checkable", lambda ip: True)  # loopback is never looked up otherwise
    b = backend(key, dnsbl_zones=("bl.test",))
    b.trust = Trust.from_settings(b.settings.replace(inbound_auth_skip=()), resolver(key))
    b.trust.resolver.add("1.0.0.127.bl.test", "A", "127.0.0.2")
    with ServerThread(start_smtp, b, role="mx", checks=smtp_checks(b, "mx")) as srv:
        with pytest.raises(smtplib.SMTPConnectError) as e:
            smtplib.SMTP(HOST, srv.port, timeout=10)
        assert e.value.smtp_code == 554 and b"bl.test" in e.value.smtp_error
    b2 = backend(key, dnsbl_zones=("clean.test",))
    with ServerThread(start_smtp, b2, role="mx", checks=smtp_checks(b2, "mx")) as srv:
        with smtplib.SMTP(HOST, srv.port, timeout=10) as c:
            assert c.noop()[0] == 250


def test_concurrent_connections_per_ip(key):
    b = backend(key, max_conn_per_ip=2)
    with ServerThread(start_smtp, b, role="mx", checks=smtp_checks(b, "mx")) as srv:
        a, c = smtplib.SMTP(HOST, srv.port, timeout=10), smtplib.SMTP(HOST, srv.port, timeout=10)
        with pytest.raises(smtplib.SMTPConnectError) as e:
            smtplib.SMTP(HOST, srv.port, timeout=10)
        assert e.value.smtp_code == 421 and e.value.smtp_error.startswith(b"4.7.0")
        a.quit()
        for _ in range(200):  # the slot is released at disconnect
            if b.limits.open_connections(CLIENT_IP) < 2:
                break
            import time

            time.sleep(0.01)
        with smtplib.SMTP(HOST, srv.port, timeout=10) as d:
            assert d.noop()[0] == 250
        c.quit()


def test_submission_auth_lockout_and_send_rate(key):
    b = backend(key, auth_fail_user_limit=2, send_rate_limit=3, login_fail_delay=0.0)
    with ServerThread(start_smtp, b, role="submission", checks=smtp_checks(b, "submission")) as srv:
        with smtplib.SMTP(HOST, srv.port, timeout=10) as c:
            c.ehlo("c.test")
            def plain(pw):
                return c.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0alice@example.test\0" + pw).decode())

            assert [plain(b"wrong")[0] for _ in range(2)] == [535, 535]
            code, text = plain(b"alice-pw")  # right password, but the account is locked
            assert code == 454 and text.startswith(b"4.7.0") and b"locked" in text
        b.limits = Limits(b.settings, MemoryCounters())  # lockout over: a fresh window
        with smtplib.SMTP(HOST, srv.port, timeout=10) as c:
            c.ehlo("c.test")
            c.login("alice@example.test", "alice-pw")
            raw = b"From: alice@example.test\r\nTo: x@remote.test\r\nSubject: r\r\n\r\nx\r\n"
            assert c.sendmail("alice@example.test", ["x@remote.test", "y@remote.test"], raw) == {}
            with pytest.raises(smtplib.SMTPDataError) as e:
                c.sendmail("alice@example.test", ["z@remote.test", "w@remote.test"], raw)
            assert e.value.smtp_code == 451 and e.value.smtp_error.startswith(b"4.7.1")
