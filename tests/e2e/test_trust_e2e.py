"""Inbound authentication through the embedded stack: real dnspython lookups answered by the
loopback fake DNS server, real SMTP in, the real router and store, IMAP out.

p=quarantine lands in the recipient's Junk mailbox, p=reject is refused in the session, a pass
lands in INBOX; each delivered copy carries our Authentication-Results above Received.
"""

from __future__ import annotations

import imaplib
import secrets
import smtplib

import pytest

HOST = "127.0.0.1"


@pytest.fixture
def checked(stack, monkeypatch):
    """The session stack's MX with loopback clients checked too (the default skips them)."""
    monkeypatch.setattr(stack.gateway.backend.trust, "skip", ())
    return stack


def _domain(fake_dns, spf: str, dmarc: str) -> str:
    d = f"sender-{secrets.token_hex(3)}.test"
    fake_dns.add(d, "TXT", f'"{spf}"')
    fake_dns.add(f"_dmarc.{d}", "TXT", f'"{dmarc}"')
    return d


def _send(stack, sender_domain: str, rcpt: str):
    raw = (f"From: Someone <someone@{sender_domain}>\r\nTo: {rcpt}\r\nSubject: trust e2e\r\n"
           f"Message-ID: <{secrets.token_hex(4)}@{sender_domain}>\r\n\r\nHello.\r\n").encode()
    with smtplib.SMTP(HOST, stack.smtp_port, timeout=30) as c:
        c.ehlo("mail.client.test")
        return c.sendmail(f"bounce@{sender_domain}", [rcpt], raw)


def _mailbox(stack, user, password, mailbox) -> list[bytes]:
    c = imaplib.IMAP4(HOST, stack.imap_port, timeout=30)
    try:
        c.login(user, password)
        typ, data = c.select(mailbox)
        assert typ == "OK", data
        n = int(data[0])
        out = []
        for i in range(1, n + 1):
            typ, msg = c.fetch(str(i), "(BODY.PEEK[])")
            out.append(msg[0][1])
        return out
    finally:
        c.logout()


def test_quarantine_goes_to_junk(checked, fake_dns, new_user):
    user, pw = new_user()
    d = _domain(fake_dns, "v=spf1 ~all", "v=DMARC1; p=quarantine")
    assert _send(checked, d, user) == {}
    checked.drain()
    assert _mailbox(checked, user, pw, "INBOX") == []
    (junk,) = _mailbox(checked, user, pw, "Junk")
    head = junk.split(b"\r\n\r\n", 1)[0]
    assert f"Authentication-Results: {checked.settings.hostname};".encode() in head
    assert b"spf=softfail" in head and b"dmarc=fail (p=quarantine dis=quarantine)" in head
    assert head.index(b"Authentication-Results:") < head.index(b"Received:")


def test_reject_refused_in_session(checked, fake_dns, new_user):
    user, pw = new_user()
    d = _domain(fake_dns, "v=spf1 -all", "v=DMARC1; p=reject")
    with pytest.raises(smtplib.SMTPDataError) as e:
        _send(checked, d, user)
    assert e.value.smtp_code == 550 and e.value.smtp_error.startswith(b"5.7.1")
    checked.drain()
    assert _mailbox(checked, user, pw, "INBOX") == [] and _mailbox(checked, user, pw, "Junk") == []


def test_pass_goes_to_inbox(checked, fake_dns, new_user):
    user, pw = new_user()
    d = _domain(fake_dns, "v=spf1 ip4:127.0.0.1 -all", "v=DMARC1; p=reject")
    assert _send(checked, d, user) == {}
    checked.drain()
    (msg,) = _mailbox(checked, user, pw, "INBOX")
    assert b"spf=pass" in msg and b"dmarc=pass" in msg


def test_dns_failure_is_not_a_reject(checked, fake_dns, new_user):
    user, pw = new_user()
    d = f"broken-{secrets.token_hex(3)}.test"
    fake_dns.servfail(d).servfail(f"_dmarc.{d}")
    assert _send(checked, d, user) == {}
    checked.drain()
    (msg,) = _mailbox(checked, user, pw, "INBOX")
    assert b"spf=temperror" in msg and b"dmarc=temperror" in msg
