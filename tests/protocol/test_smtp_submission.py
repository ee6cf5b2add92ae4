"""Submission role over real sockets with smtplib: AUTH, TLS gating, sender/From ownership, Message-ID/Date."""

from __future__ import annotations

import base64
import re
import smtplib
import ssl

import pytest
import trustme
from helpers import HOST, ServerThread, memory_backend

from postern.directory import memory_directory
from postern.envelope import Envelope
from fakes import MemoryClients
from postern_gateway.smtp.server import start_smtp
from postern_gateway.smtp.spool import Spooler

PLAIN_ALICE = base64.b64encode(b"\0alice@example.test\0alice-pw").decode()
PLAIN_WRONG = base64.b64encode(b"\0alice@example.test\0nope").decode()
PLAIN_EVE = base64.b64encode(b"\0eve@x.test\0pw").decode()
PLAIN_NO_PASSWORD = base64.b64encode(b"\0alice@example.test").decode()

_DIRECTORY = None


def shared_directory():
    global _DIRECTORY
    if _DIRECTORY is None:
        d = memory_directory()
        d.add_domain("example.test")
        d.add_user("alice@example.test", "alice-pw")
        d.add_user("bob@example.test", "bob-pw")
        d.add_alias("sales@example.test", ["alice@example.test", "bob@example.test"])
        d.add_alias("bobs@example.test", ["bob@example.test"])
        _DIRECTORY = d
    return _DIRECTORY


def make_backend(clients, **overrides):
    b = memory_backend(directory=shared_directory(), **overrides)
    b.spooler = Spooler(b.settings, clients)
    return b


@pytest.fixture
def sub():
    clients = MemoryClients()
    with ServerThread(start_smtp, make_backend(clients), role="submission") as srv:
        srv.clients = clients
        yield srv


@pytest.fixture(scope="module")
def tls():
    ca = trustme.CA()
    cert = ca.issue_cert("mx.example.test", HOST)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    return server_ctx, client_ctx


def client(srv, login=True) -> smtplib.SMTP:
    c = smtplib.SMTP(HOST, srv.port, timeout=10)
    c.ehlo("laptop.example")
    if login:
        c.login("alice@example.test", "alice-pw")
    return c


def envelopes(clients) -> list[Envelope]:
    return [Envelope.from_json(m) for m in clients.messages]


def message(from_="Alice <alice@example.test>", extra=b"") -> bytes:
    return (f"From: {from_}\r\nTo: x@remote.test\r\nSubject: hi\r\n".encode() + extra
            + b"\r\nHello\r\n.leading dot line\r\n")


# (name, log in first?, commands after EHLO[/AUTH]; all but the last answer 250, expected reply to the last)
REJECTIONS = [
    ("MAIL without AUTH", False, ["MAIL FROM:<alice@example.test>"], 530, b"5.7.0"),
    ("bad credentials", False, [f"AUTH PLAIN {PLAIN_WRONG}"], 535, b"5.7.8"),
    ("unknown user credentials", False, [f"AUTH PLAIN {PLAIN_EVE}"], 535, b"5.7.8"),
    ("PLAIN not base64", False, ["AUTH PLAIN !!!"], 501, b"5.5.2"),
    ("PLAIN without password", False, [f"AUTH PLAIN {PLAIN_NO_PASSWORD}"], 501, b"5.5.2"),
    ("unknown mechanism", False, ["AUTH CRAM-MD5"], 504, b"5.5.4"),
    ("AUTH twice", True, [f"AUTH PLAIN {PLAIN_ALICE}"], 503, b"5.5.1"),
    ("foreign envelope sender", True, ["MAIL FROM:<bob@example.test>"], 553, b"5.7.1"),
    ("foreign alias as sender", True, ["MAIL FROM:<bobs@example.test>"], 553, b"5.7.1"),
    ("remote envelope sender", True, ["MAIL FROM:<alice@remote.test>"], 553, b"5.7.1"),
    ("null envelope sender", True, ["MAIL FROM:<>"], 553, b"5.7.1"),
    ("malformed sender", True, ["MAIL FROM:<alice@example.test"], 501, b"5.1.7"),
    ("unknown local recipient", True, ["MAIL FROM:<alice@example.test>", "RCPT TO:<nobody@example.test>"], 550,
     b"5.1.1"),
    ("undeliverable recipient", True, ["MAIL FROM:<alice@example.test>", "RCPT TO:<x@[192.0.2.1]>"], 553,
     b"5.1.3"),
]


@pytest.mark.parametrize("name,login,commands,code,enhanced", REJECTIONS, ids=[r[0] for r in REJECTIONS])
def test_rejections(sub, name, login, commands, code, enhanced):
    c = client(sub, login=login)
    for cmd in commands[:-1]:
        assert c.docmd(cmd)[0] == 250, cmd
    got, text = c.docmd(commands[-1])
    assert (got, text.split(b" ", 1)[0]) == (code, enhanced), text
    c.quit()
    assert sub.clients.messages == []


def test_unauthenticated_submission_never_relays(sub):
    c = client(sub, login=False)
    assert c.docmd("MAIL FROM:<alice@example.test>")[0] == 530
    assert c.docmd("RCPT TO:<x@remote.test>")[:1] == (503,)
    assert c.docmd("DATA")[0] == 503
    with pytest.raises(smtplib.SMTPSenderRefused):
        c.sendmail("alice@example.test", ["x@remote.test"], message())
    c.quit()
    assert sub.clients.messages == [] and sub.clients.calls == []


def test_auth_advertised_and_plain_ok(sub):
    c = smtplib.SMTP(HOST, sub.port, timeout=10)
    c.ehlo("laptop.example")
    assert set(c.esmtp_features["auth"].split()) == {"PLAIN", "LOGIN"}
    assert c.docmd(f"AUTH PLAIN {PLAIN_ALICE}") == (235, b"2.7.0 Authentication successful")
    c.quit()


def test_auth_login_with_challenges(sub):
    c = smtplib.SMTP(HOST, sub.port, timeout=10)
    c.ehlo("laptop.example")
    c.user, c.password = "alice@example.test", "alice-pw"
    code, _ = c.auth("LOGIN", c.auth_login, initial_response_ok=False)
    assert code == 235
    c.quit()


def test_auth_plain_with_empty_challenge(sub):
    c = smtplib.SMTP(HOST, sub.port, timeout=10)
    c.ehlo("laptop.example")
    assert c.docmd("AUTH PLAIN")[0] == 334
    assert c.docmd(PLAIN_ALICE)[0] == 235
    c.quit()


def test_bad_login_raises_in_smtplib(sub):
    c = smtplib.SMTP(HOST, sub.port, timeout=10)
    c.ehlo("laptop.example")
    with pytest.raises(smtplib.SMTPAuthenticationError) as exc:
        c.login("alice@example.test", "wrong")
    assert exc.value.smtp_code == 535
    c.quit()


@pytest.mark.parametrize("param", ["AUTH=<>", "AUTH=alice@example.test", "auth=<> BODY=8BITMIME"])
def test_mail_auth_parameter_accepted(sub, param):
    """RFC 4954 §5: a server that offers AUTH accepts MAIL's AUTH= parameter."""
    c = client(sub)
    assert c.docmd(f"MAIL FROM:<alice@example.test> {param}")[0] == 250
    assert c.docmd("RCPT TO:<x@remote.test>")[0] == 250
    assert c.data(message())[0] == 250
    c.quit()
    (env,) = envelopes(sub.clients)
    assert env.mail_from == "alice@example.test" and env.body_8bit == ("BODY=8BITMIME" in param)


def test_connection_closed_after_repeated_auth_failures(sub):
    from postern_gateway.smtp.submission import MAX_AUTH_FAILURES

    c = smtplib.SMTP(HOST, sub.port, timeout=10)
    c.ehlo("laptop.example")
    for _ in range(MAX_AUTH_FAILURES - 1):
        assert c.docmd(f"AUTH PLAIN {PLAIN_WRONG}")[0] == 535
    code, text = c.docmd(f"AUTH PLAIN {PLAIN_WRONG}")
    assert (code, text.split(b" ")[0]) == (421, b"4.7.0")
    with pytest.raises(smtplib.SMTPServerDisconnected):
        c.docmd("NOOP")
        c.docmd("NOOP")


def test_authenticated_relay_to_remote_and_local(sub):
    c = client(sub)
    raw = message(extra=b"Message-ID: <m1@laptop.example>\r\nDate: Tue, 01 Dec 2026 10:00:00 +0000\r\n")
    assert c.sendmail("alice@example.test", ["x@remote.test", "bob@example.test"], raw) == {}
    c.quit()
    (env,) = envelopes(sub.clients)
    assert env.auth_user == "alice@example.test"
    assert env.mail_from == "alice@example.test"
    assert env.rcpt_to == ("x@remote.test", "bob@example.test")
    assert sub.clients.objects[env.s3_key] == raw  # both headers present: nothing added, bytes identical
    assert " with ESMTPA id " in env.trace_headers


@pytest.mark.parametrize("sender,from_", [
    ("sales@example.test", "Sales <sales@example.test>"),  # alias naming alice
    ("alice+lists@example.test", "alice+lists@example.test"),  # plus-address of her own
    ("ALICE@Example.Test", '"Alice A." <Alice@EXAMPLE.test>'),  # case-insensitive
])
def test_owned_senders(sub, sender, from_):
    c = client(sub)
    assert c.sendmail(sender, ["x@remote.test"], message(from_=from_)) == {}
    c.quit()
    assert len(sub.clients.messages) == 1


FROM_REJECTIONS = [
    ("forged From", message(from_="Bob <bob@example.test>")),
    ("second address not owned", message(from_="alice@example.test, bob@example.test")),
    ("no From", b"To: x@remote.test\r\nSubject: hi\r\n\r\nbody\r\n"),
    ("two From headers", message(extra=b"From: alice@example.test\r\n")),
    ("unparseable From", message(from_="<<<")),
]


@pytest.mark.parametrize("name,raw", FROM_REJECTIONS, ids=[r[0] for r in FROM_REJECTIONS])
def test_from_header_must_be_owned(sub, name, raw):
    c = client(sub)
    c.mail("alice@example.test")
    c.rcpt("x@remote.test")
    code, text = c.data(raw)
    assert (code, text.split(b" ")[0]) == (550, b"5.7.1"), text
    assert b"From:" in text
    c.quit()
    assert sub.clients.messages == []


def test_oversized_header_block_refused(sub):
    filler = (b"X-Filler: " + b"y" * 900 + b"\r\n") * 1200  # > 1 MiB of header lines
    c = client(sub)
    c.mail("alice@example.test")
    c.rcpt("x@remote.test")
    code, text = c.data(message(extra=filler))
    assert (code, text[:5]) == (552, b"5.3.4")
    c.quit()
    assert sub.clients.messages == []


DATE = b"Date: Tue, 01 Dec 2026 10:00:00 +0000\r\n"
MSGID = b"Message-ID: <m1@laptop.example>\r\n"
COMPLETION = [  # headers the client sent -> fields we must prepend
    (b"", ["Message-ID", "Date"]),
    (DATE, ["Message-ID"]),
    (MSGID, ["Date"]),
    (DATE + MSGID, []),
    (b"message-id: <lower@case>\r\ndate: Tue, 01 Dec 2026 10:00:00 +0000\r\n", []),
]


@pytest.mark.parametrize("present,added", COMPLETION)
def test_message_id_and_date_prepended_only_when_missing(sub, present, added):
    raw = message(extra=present)
    c = client(sub)
    c.sendmail("alice@example.test", ["x@remote.test"], raw)
    c.quit()
    (env,) = envelopes(sub.clients)
    stored = sub.clients.objects[env.s3_key]
    assert stored.endswith(raw)  # the client's bytes, untouched
    prefix = stored[: len(stored) - len(raw)]
    names = [line.split(b":", 1)[0].decode() for line in prefix.split(b"\r\n") if line]
    assert names == added
    if "Message-ID" in added:
        assert re.search(rb"^Message-ID: <" + env.queue_id.encode() + rb"\.[0-9a-f]+@mx\.example\.test>\r\n",
                         prefix, re.M)
    if "Date" in added:
        assert re.search(rb"^Date: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d \+0000\r\n", prefix, re.M)


def test_plaintext_auth_refused_without_tls():
    clients = MemoryClients()
    with ServerThread(start_smtp, make_backend(clients, allow_plaintext_auth=False), role="submission") as srv:
        c = smtplib.SMTP(HOST, srv.port, timeout=10)
        c.ehlo("laptop.example")
        assert not c.has_extn("auth")
        code, text = c.docmd(f"AUTH PLAIN {PLAIN_ALICE}")
        assert (code, text.split(b" ")[0]) == (538, b"5.7.11")
        assert c.docmd("MAIL FROM:<alice@example.test>")[0] == 530
        c.quit()


def test_starttls_required_then_auth(tls):
    server_ctx, client_ctx = tls
    clients = MemoryClients()
    backend = make_backend(clients, allow_plaintext_auth=False)
    with ServerThread(start_smtp, backend, role="submission", ssl_context=server_ctx) as srv:
        c = smtplib.SMTP(HOST, srv.port, timeout=10)
        c.ehlo("laptop.example")
        assert c.has_extn("starttls") and not c.has_extn("auth")
        for cmd in (f"AUTH PLAIN {PLAIN_ALICE}", "MAIL FROM:<alice@example.test>"):
            code, text = c.docmd(cmd)
            assert (code, text.split(b" ")[0]) == (530, b"5.7.0"), cmd
        c.starttls(context=client_ctx)
        c.ehlo("laptop.example")
        assert c.has_extn("auth") and not c.has_extn("starttls")
        c.login("alice@example.test", "alice-pw")
        assert c.sendmail("alice@example.test", ["x@remote.test"], message()) == {}
        c.quit()
    (env,) = envelopes(clients)
    assert env.tls and env.auth_user == "alice@example.test"
    assert " with ESMTPSA id " in env.trace_headers
    assert "(using TLSv1." in env.trace_headers


def test_implicit_tls(tls):
    server_ctx, client_ctx = tls
    clients = MemoryClients()
    backend = make_backend(clients, allow_plaintext_auth=False)
    with ServerThread(start_smtp, backend, role="submission", ssl_context=server_ctx, implicit_tls=True) as srv:
        c = smtplib.SMTP_SSL(HOST, srv.port, timeout=10, context=client_ctx)
        c.ehlo("laptop.example")
        assert c.has_extn("auth") and not c.has_extn("starttls")
        c.login("alice@example.test", "alice-pw")
        assert c.sendmail("alice@example.test", ["bob@example.test"], message()) == {}
        c.quit()
    (env,) = envelopes(clients)
    assert env.tls and " with ESMTPSA id " in env.trace_headers


def test_mx_starttls_has_no_auth(tls):
    server_ctx, client_ctx = tls
    with ServerThread(start_smtp, make_backend(MemoryClients()), role="mx", ssl_context=server_ctx) as srv:
        c = smtplib.SMTP(HOST, srv.port, timeout=10)
        c.ehlo("peer.example")
        c.starttls(context=client_ctx)
        c.ehlo("peer.example")
        assert not c.has_extn("auth")
        assert c.docmd(f"AUTH PLAIN {PLAIN_ALICE}")[0] == 503
        assert c.sendmail("s@remote.test", ["alice@example.test"], message(from_="s@remote.test")) == {}
        c.quit()
    (env,) = envelopes(srv.backend.spooler.clients)
    assert env.tls and env.auth_user is None
    assert " with ESMTPS id " in env.trace_headers
