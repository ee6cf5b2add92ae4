"""Open-relay battery: the MX port and submission without AUTH never relay.

Every case sends MAIL FROM and RCPT TO exactly as written (``docmd``, no client-side
quoting). A case passes when the recipient is refused, or when it is accepted and the
message is spooled and the *router's own plan* for the spooled envelope
(``postern.pipeline.router.plan``) contains only local store jobs for users of our
domains and no outbound job at all: it was "delivered only locally". The servers run
exactly as the gateway app builds them (``trust.gate.smtp_checks`` included).
"""

from __future__ import annotations

import smtplib

import pytest
from helpers import HOST, ServerThread, memory_backend

from postern.envelope import Envelope
from postern.limits import Limits, MemoryCounters
from postern.pipeline.router import plan
from fakes import MemoryClients
from postern_gateway.smtp.server import start_smtp
from postern_gateway.smtp.spool import Spooler
from fakes import FakeResolver
from postern_gateway.trust.gate import Trust, smtp_checks

LOCAL_USERS = {"alice@example.test", "bob@example.test"}
BODY = b"From: a@remote.test\r\nTo: alice@example.test\r\nSubject: relay test\r\n\r\nbody\r\n"

# (name, MAIL FROM path, RCPT TO path)
CASES = [
    ("plain foreign recipient", "<s@remote.test>", "<x@elsewhere.test>"),
    ("percent hack", "<s@remote.test>", "<x%elsewhere.test@example.test>"),
    ("percent hack, local user", "<s@remote.test>", "<alice%elsewhere.test@example.test>"),
    ("quoted @ in local part", "<s@remote.test>", '<"x@elsewhere.test"@example.test>'),
    ("quoted percent", "<s@remote.test>", '<"x%elsewhere.test"@example.test>'),
    ("escaped @ in quoted local part", "<s@remote.test>", r'<"x\@elsewhere.test"@example.test>'),
    ("bang path", "<s@remote.test>", "<elsewhere.test!x@example.test>"),
    ("bang path, local user", "<s@remote.test>", "<elsewhere.test!alice@example.test>"),
    ("source route", "<s@remote.test>", "<@example.test:x@elsewhere.test>"),
    ("source route, two hops", "<s@remote.test>", "<@example.test,@mx.example.test:x@elsewhere.test>"),
    ("route without @", "<s@remote.test>", "<example.test:x@elsewhere.test>"),
    ("double @", "<s@remote.test>", "<x@elsewhere.test@example.test>"),
    ("trailing dot, foreign", "<s@remote.test>", "<x@elsewhere.test.>"),
    ("trailing dot, our domain", "<s@remote.test>", "<alice@example.test.>"),
    ("IPv4 literal", "<s@remote.test>", "<x@[1.2.3.4]>"),
    ("IPv4 literal of loopback", "<s@remote.test>", "<alice@[127.0.0.1]>"),
    ("IPv6 literal", "<s@remote.test>", "<x@[IPv6:2001:db8::1]>"),
    ("upper-case our domain", "<s@remote.test>", "<ALICE@EXAMPLE.TEST>"),
    ("mixed-case foreign", "<s@remote.test>", "<x@ElseWhere.Test>"),
    ("our domain as suffix of another", "<s@remote.test>", "<alice@evil-example.test>"),
    ("our domain as prefix of another", "<s@remote.test>", "<alice@example.test.evil.test>"),
    ("subdomain of ours", "<s@remote.test>", "<alice@mail.example.test>"),
    ("punycode look-alike", "<s@remote.test>", "<alice@xn--exmple-cua.test>"),
    ("foreign with our domain after %", "<s@remote.test>", "<x@elsewhere.test%example.test>"),
    ("localhost", "<s@remote.test>", "<alice@localhost>"),
    ("bare postmaster", "<s@remote.test>", "<postmaster>"),
    ("null sender to foreign", "<>", "<x@elsewhere.test>"),
    ("spoofed local sender to foreign", "<alice@example.test>", "<x@elsewhere.test>"),
    ("spoofed local sender, percent hack", "<alice@example.test>", "<x%elsewhere.test@example.test>"),
    ("whitespace inside path", "<s@remote.test>", "<x@elsewhere.test >"),
]


def make_backend(**overrides):
    b = memory_backend(**overrides)
    d = b.directory
    d.add_domain("example.test")
    d.add_user("alice@example.test", "alice-pw")
    d.add_user("bob@example.test", "bob-pw")
    d.add_alias("postmaster@example.test", ["alice@example.test"])
    b.spooler = Spooler(b.settings, MemoryClients())
    b.limits = Limits(b.settings, MemoryCounters())
    b.trust = Trust.from_settings(b.settings.replace(inbound_auth_skip=()), FakeResolver())
    return b


@pytest.fixture(scope="module", params=["mx", "submission"])
def server(request):
    b = make_backend()
    with ServerThread(start_smtp, b, role=request.param, checks=smtp_checks(b, request.param)) as srv:
        srv.role = request.param
        yield srv


RESULTS: dict[str, list[str]] = {"refused": [], "local-only": []}


def attempt(srv, sender: str, rcpt: str):
    """-> ("refused", code) or ("accepted", Envelope)"""
    clients = srv.backend.spooler.clients
    before = len(clients.messages)
    c = smtplib.SMTP(HOST, srv.port, timeout=10)
    try:
        c.command_encoding = "utf-8"
        c.ehlo("relay-tester.test")
        code, _ = c.docmd(f"MAIL FROM:{sender}")
        if code != 250:
            return "refused", code
        code, _ = c.docmd(f"RCPT TO:{rcpt}")
        if code != 250:
            return "refused", code
        code, _ = c.data(BODY)
        if code != 250:
            return "refused", code
    finally:
        try:
            c.quit()
        except smtplib.SMTPException:
            pass
    assert len(clients.messages) == before + 1
    return "accepted", Envelope.from_json(clients.messages[-1])


@pytest.mark.parametrize("name,sender,rcpt", CASES, ids=[c[0] for c in CASES])
def test_never_relays(server, name, sender, rcpt):
    outcome, detail = attempt(server, sender, rcpt)
    if outcome == "refused":
        assert 400 <= detail < 600
        if server.role == "submission":
            assert detail in (530, 503), "submission without AUTH must refuse at MAIL (530) / RCPT (503)"
        RESULTS["refused"].append(f"{server.role}:{name}")
        return
    assert server.role == "mx", "submission accepted mail without AUTH"
    env: Envelope = detail
    assert env.auth_user is None
    p = plan(env, server.backend.directory)
    assert p.outbound == [], f"{name}: router would relay to {[j.domain for j in p.outbound]}"
    assert p.store, f"{name}: accepted but delivered nowhere"
    assert {j.user for j in p.store} <= LOCAL_USERS
    RESULTS["local-only"].append(f"{server.role}:{name}")


def test_local_and_foreign_in_one_transaction(server):
    """One foreign RCPT among local ones is refused alone; the envelope keeps only ours."""
    c = smtplib.SMTP(HOST, server.port, timeout=10)
    try:
        c.ehlo("relay-tester.test")
        code, _ = c.docmd("MAIL FROM:<s@remote.test>")
        if server.role == "submission":
            assert code == 530
            return
        assert c.docmd("RCPT TO:<alice@example.test>")[0] == 250
        assert c.docmd("RCPT TO:<x@elsewhere.test>")[0] == 550
        assert c.docmd("RCPT TO:<bob@example.test>")[0] == 250
        assert c.data(BODY)[0] == 250
    finally:
        c.quit()
    env = Envelope.from_json(server.backend.spooler.clients.messages[-1])
    assert set(env.rcpt_to) == {"alice@example.test", "bob@example.test"}
    assert plan(env, server.backend.directory).outbound == []


def test_battery_size():
    assert len(CASES) >= 20
