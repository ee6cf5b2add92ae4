"""One canonical account behind every spelling of a login name (issue 11 findings 6 and 8).

Real clients over loopback, the in-memory directory and postern.limits over memory counters:
the directory accepts ``<carol@...>``, upper case, fullwidth and ideographic dots in the domain
(IDNA/NFKC) as carol; the lockout counts all of them as one account and, once carol is locked,
refuses every spelling on IMAP, POP3 and submission. A password typed into the user-name field
is logged as a keyed hash, never verbatim. Logged-in sessions and IDLEs per account are capped
and given back when they end.
"""

from __future__ import annotations

import base64
import imaplib
import logging
import poplib
import smtplib
import socket

import pytest
from helpers import HOST, ServerThread, memory_backend

from postern.limits import Limits, MemoryCounters
from postern_local.liveness import IMAP4From, POP3From
from postern_gateway.imap.server import start_imap
from postern_gateway.pop3.server import start_pop3
from fakes import MemoryClients
from postern_gateway.smtp.server import start_smtp
from postern_gateway.smtp.spool import Spooler

CAROL, PW = "carol@example.test", "carol-Secret-pw"
SPELLINGS = ["carol@example.test", "<carol@example.test>", "CAROL@Example.TEST", " carol@example.test ",
             "carol@\uff45xample\uff0etest", "carol@example\u3002test"]  # fullwidth e, fullwidth and ideographic dots


def plain(user: str, pw: str) -> str:
    return base64.b64encode(f"\0{user}\0{pw}".encode()).decode()


@pytest.fixture
def backend():
    b = memory_backend(auth_fail_user_limit=3, auth_fail_ip_limit=1000, max_sessions_per_user=2,
                       max_idle_per_user=1)
    b.directory.add_domain("example.test")
    b.directory.add_user(CAROL, PW)
    b.store.ensure_mailboxes(CAROL)
    b.spooler = Spooler(b.settings, MemoryClients())
    b.limits = Limits(b.settings, MemoryCounters())
    return b


HOME, ATTACKER = "127.0.0.2", "127.0.0.3"  # loopback source addresses (all of 127/8 is local)


def imap_plain(port: int, user: str, pw: str, source: str = "127.0.0.1") -> tuple[str, bytes]:
    c = IMAP4From(port, source)
    try:
        typ, data = c.authenticate("PLAIN", lambda _: f"\0{user}\0{pw}".encode())
        return typ, data[0]
    except imaplib.IMAP4.error as exc:
        return "NO", str(exc).encode()
    finally:
        try:
            c.logout()
        except Exception:  # noqa: BLE001
            pass


def test_every_spelling_is_carol_and_shares_one_lockout(backend):
    with ServerThread(start_imap, backend) as imap, ServerThread(start_pop3, backend) as pop, \
            ServerThread(start_smtp, backend, role="submission") as sub:
        for name in SPELLINGS:  # the precondition of the bypass: the directory takes each spelling
            assert imap_plain(imap.port, name, PW, HOME)[0] == "OK", name
        for name in SPELLINGS[1:4]:  # three failures from elsewhere, three different spellings
            assert imap_plain(imap.port, name, "wrong", ATTACKER)[0] == "NO"
        for name in SPELLINGS:  # carol is locked, under every spelling, on every protocol
            typ, text = imap_plain(imap.port, name, PW, ATTACKER)
            assert typ == "NO" and b"UNAVAILABLE" in text and b"locked" in text, (name, text)
            p = POP3From(pop.port, ATTACKER)
            p.user(name.strip())
            with pytest.raises(poplib.error_proto, match="SYS/TEMP"):
                p.pass_(PW)
            p.quit()
            with smtplib.SMTP(HOST, sub.port, timeout=10, source_address=(ATTACKER, 0)) as c:
                c.ehlo("laptop.example")
                code, msg = c.docmd("AUTH", "PLAIN " + plain(name, PW))
                assert code == 454 and b"locked" in msg, (name, code, msg)
        # ... but not for the address that logged her in before: nobody can lock an owner out
        assert imap_plain(imap.port, SPELLINGS[4], PW, HOME)[0] == "OK"


def test_password_in_user_field_is_not_logged(backend, caplog):
    secret = "Hunter2-typed-as-a-name"
    caplog.set_level(logging.INFO)
    with ServerThread(start_imap, backend) as imap, ServerThread(start_pop3, backend) as pop:
        c = imaplib.IMAP4(HOST, imap.port, timeout=10)
        with pytest.raises(imaplib.IMAP4.error):
            c.login(secret, PW)
        c.logout()
        p = poplib.POP3(HOST, pop.port, timeout=10)
        p.user(secret)
        with pytest.raises(poplib.error_proto):
            p.pass_(PW)
        p.quit()
        assert imap_plain(imap.port, "<carol@EXAMPLE.test>", "wrong")[0] == "NO"
    failures = [r.getMessage() for r in caplog.records if "auth failed" in r.getMessage()]
    assert len(failures) == 3
    assert not any(secret in m for m in failures) and secret not in caplog.text
    assert all(" user=#" in m for m in failures[:2]), failures
    assert failures[0].split("user=")[1] == failures[1].split("user=")[1]  # same name, same token
    assert failures[2].endswith("user=carol@example.test")  # an address: its canonical form


def test_sessions_per_account_capped_and_given_back(backend):
    with ServerThread(start_imap, backend) as imap, ServerThread(start_pop3, backend) as pop, \
            ServerThread(start_smtp, backend, role="submission") as sub:
        a = imaplib.IMAP4(HOST, imap.port, timeout=10)
        a.login(CAROL, PW)
        b = imaplib.IMAP4(HOST, imap.port, timeout=10)
        b.login("<CAROL@example.test>", PW)  # the same account under another spelling
        typ, text = imap_plain(imap.port, CAROL, PW)
        assert typ == "NO" and b"[LIMIT]" in text
        p = poplib.POP3(HOST, pop.port, timeout=10)
        p.user(CAROL)
        with pytest.raises(poplib.error_proto, match=r"SYS/TEMP.*[Tt]oo many sessions"):
            p.pass_(PW)
        p.quit()
        with smtplib.SMTP(HOST, sub.port, timeout=10) as c:
            c.ehlo("laptop.example")
            assert c.docmd("AUTH", "PLAIN " + plain(CAROL, PW))[0] == 454
        b.logout()
        with smtplib.SMTP(HOST, sub.port, timeout=10) as c:  # a slot is free again
            c.ehlo("laptop.example")
            assert c.docmd("AUTH", "PLAIN " + plain(CAROL, PW))[0] == 235
        assert imap_plain(imap.port, CAROL, PW)[0] == "OK"  # ... and the submission gave it back
        a.logout()


def _raw_login(port: int):
    s = socket.create_connection((HOST, port), timeout=10)
    f = s.makefile("rb")
    f.readline()
    s.sendall(f'a LOGIN "{CAROL}" "{PW}"\r\nb SELECT INBOX\r\n'.encode())
    while not f.readline().startswith(b"b OK"):
        pass
    return s, f


def test_idle_per_account_capped(backend):
    with ServerThread(start_imap, backend) as imap:
        (one, f1), (two, f2) = _raw_login(imap.port), _raw_login(imap.port)
        one.sendall(b"i1 IDLE\r\n")
        assert f1.readline().startswith(b"+")
        two.sendall(b"i2 IDLE\r\n")
        assert f2.readline().startswith(b"i2 NO [LIMIT]")
        one.sendall(b"DONE\r\n")
        assert f1.readline().startswith(b"i1 OK")
        two.sendall(b"i3 IDLE\r\n")
        assert f2.readline().startswith(b"+")
        two.sendall(b"DONE\r\n")
        assert f2.readline().startswith(b"i3 OK")
        one.close()
        two.close()
