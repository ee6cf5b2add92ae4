"""Before login, a connection may send POSTERN_PREAUTH_MAX_BYTES in all (postern_gateway.preauth).

Real clients over loopback against in-process listeners: a login well inside the budget works on
every protocol (after chatter, after a refused literal); one byte too many before login closes
the connection with the protocol's error; after login the budget no longer applies (a 100 KiB
APPEND and a 100 KiB submission go through). The memory/stall side, with many connections at
once against a gateway process, is tests/e2e/test_hostile_preauth.py.
"""

from __future__ import annotations

import base64
import imaplib
import poplib
import smtplib
import socket

import pytest
from helpers import HOST, ServerThread, memory_backend

from postern_gateway.imap.server import start_imap
from postern_gateway.pop3.server import start_pop3
from postern_gateway.preauth import EXCEEDED, PreauthBudget
from fakes import MemoryClients
from postern_gateway.smtp.server import start_smtp
from postern_gateway.smtp.spool import Spooler

USER, PW = "alice@example.test", "alice-pw"
BUDGET = 16 * 1024
BIG = b"Subject: big\r\n\r\n" + (b"y" * 998 + b"\r\n") * 100  # ~100 KiB


@pytest.fixture
def backend():
    b = memory_backend()
    b.directory.add_domain("example.test")
    b.directory.add_user(USER, PW)
    b.store.ensure_mailboxes(USER)
    assert b.settings.preauth_max_bytes == BUDGET  # the documented default
    return b


def _read_all(s: socket.socket) -> bytes:
    out = b""
    s.settimeout(10)
    try:
        while chunk := s.recv(65536):
            out += chunk
    except ConnectionResetError:
        pass
    return out


def _flood_then_read(port: int, line: bytes, total: int) -> bytes:
    """Send ``total`` bytes of ``line`` before any login, then read until the server closes."""
    with socket.create_connection((HOST, port), timeout=10) as s:
        s.recv(4096)
        try:
            s.sendall(line * (total // len(line)))
        except (BrokenPipeError, ConnectionResetError):
            pass
        return _read_all(s)


def test_budget_rule():
    b = PreauthBudget(10)
    assert b.spend(6) and b.spend(4) and not b.spend(1)
    b = PreauthBudget(10)
    b.done()
    assert b.spend(10**9)
    assert PreauthBudget(0).spend(10**9)  # 0 = off


# --- IMAP -----------------------------------------------------------------------------------
def test_imap_login_after_chatter_and_a_refused_literal(backend):
    with ServerThread(start_imap, backend) as srv:
        _imap_chatter_then_login(srv.port)
        c = imaplib.IMAP4(HOST, srv.port, timeout=10)
        c.login(USER, PW)
        assert c.append("INBOX", None, None, BIG)[0] == "OK"  # no budget after login
        c.logout()


def _imap_chatter_then_login(port: int) -> None:
    with socket.create_connection((HOST, port), timeout=10) as s:
        f = s.makefile("rb")
        f.readline()
        s.sendall(b"a1 LOGIN {20000}\r\n")  # larger than the whole budget: refused before "+"
        assert f.readline() == b"a1 BAD Literal too large\r\n"
        for i in range(100):
            s.sendall(b"n%d NOOP\r\n" % i)
            assert f.readline().startswith(b"n%d OK" % i)
        s.sendall(f'a2 LOGIN "{USER}" "{PW}"\r\n'.encode())
        while not (line := f.readline()).startswith(b"a2 "):
            pass
        assert line.startswith(b"a2 OK")


def test_imap_too_much_before_login_is_bye(backend):
    with ServerThread(start_imap, backend) as srv:
        out = _flood_then_read(srv.port, b"x NOOP\r\n", BUDGET + 4096)
    assert f"* BYE [LIMIT] {EXCEEDED}".encode() in out


# --- POP3 -----------------------------------------------------------------------------------
def test_pop3_login_within_budget_then_no_budget(backend):
    backend.store.append(USER, "INBOX", BIG)
    with ServerThread(start_pop3, backend) as srv:
        c = poplib.POP3(HOST, srv.port, timeout=10)
        for _ in range(200):
            c.capa()  # ~ 6 bytes each: well inside the budget
        c.user(USER)
        c.pass_(PW)
        assert len(b"\r\n".join(c.retr(1)[1])) > 90_000
        c.quit()


def test_pop3_too_much_before_login_is_err(backend):
    with ServerThread(start_pop3, backend) as srv:
        out = _flood_then_read(srv.port, b"CAPA\r\n", BUDGET + 4096)
    assert out.endswith(f"-ERR {EXCEEDED}\r\n".encode())


# --- submission -----------------------------------------------------------------------------
def test_submission_auth_within_budget_then_no_budget(backend):
    clients = MemoryClients()
    backend.spooler = Spooler(backend.settings, clients)
    with ServerThread(start_smtp, backend, role="submission") as srv:
        c = smtplib.SMTP(HOST, srv.port, timeout=10)
        for _ in range(100):
            c.noop()
        c.ehlo("laptop.example")
        c.login(USER, PW)
        msg = b"From: alice@example.test\r\nTo: x@remote.test\r\n" + BIG
        assert c.sendmail(USER, ["x@remote.test"], msg) == {}
        c.quit()
    assert len(clients.messages) == 1


def test_submission_too_much_before_auth_is_421(backend):
    with ServerThread(start_smtp, backend, role="submission") as srv:
        out = _flood_then_read(srv.port, b"NOOP\r\n", BUDGET + 4096)
    assert out.endswith(f"421 4.7.0 {EXCEEDED}\r\n".encode())


def test_mx_has_no_login_budget(backend):
    with ServerThread(start_smtp, backend, role="mx") as srv:
        c = smtplib.SMTP(HOST, srv.port, timeout=10)
        for _ in range((BUDGET + 4096) // 6):
            c.noop()
        c.quit()
