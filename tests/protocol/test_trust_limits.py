"""Abuse limits on the IMAP listener (POP3's own tests cover its side; SMTP's are in test_trust_smtp)."""

from __future__ import annotations

import imaplib
import time

import pytest
from helpers import HOST, ServerThread, memory_backend

from postern.limits import Limits, MemoryCounters
from postern_gateway.imap.server import start_imap


def test_imap_connection_cap_and_lockout():
    b = memory_backend(max_conn_per_ip=2, auth_fail_ip_limit=3)
    b.directory.add_domain("example.test")
    b.directory.add_user("alice@example.test", "alice-pw")
    b.limits = Limits(b.settings, MemoryCounters())
    with ServerThread(start_imap, b) as srv:
        one, two = imaplib.IMAP4(HOST, srv.port, timeout=10), imaplib.IMAP4(HOST, srv.port, timeout=10)
        with pytest.raises(imaplib.IMAP4.error) as e:  # imaplib raises error for a BYE greeting
            imaplib.IMAP4(HOST, srv.port, timeout=10)
        assert "Too many connections" in str(e.value)
        two.logout()
        for _ in range(200):
            if b.limits.open_connections("127.0.0.1") < 2:
                break
            time.sleep(0.01)
        c = imaplib.IMAP4(HOST, srv.port, timeout=10)
        for user in ("a@example.test", "b@example.test", "c@example.test"):
            with pytest.raises(imaplib.IMAP4.error) as e:
                c.login(user, "wrong")
            assert "AUTHENTICATIONFAILED" in str(e.value)
        with pytest.raises(imaplib.IMAP4.error) as e:
            c.login("alice@example.test", "alice-pw")  # the IP is locked out, even with the right password
        assert "UNAVAILABLE" in str(e.value) and "Too many failed logins" in str(e.value)
        c.logout()
        one.logout()


# --- slow clients: a command trickled one byte at a time times out (per-record deadline) ---------
def _trickle(port, greeting: bytes, data: bytes, interval: float = 0.25) -> bytes:
    """Send ``data`` one byte every ``interval`` seconds (never a line end), then read to EOF."""
    import socket

    with socket.create_connection((HOST, port), timeout=15) as s:
        buf = s.recv(4096)
        assert buf.startswith(greeting), buf
        for b in data:
            try:
                s.sendall(bytes([b]))
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(interval)
        out = b""
        try:
            while chunk := s.recv(4096):
                out += chunk
        except (ConnectionResetError, TimeoutError):
            pass
        return out


def test_smtp_one_byte_a_second_times_out():
    from fakes import MemoryClients
    from postern_gateway.smtp.server import start_smtp
    from postern_gateway.smtp.spool import Spooler

    b = memory_backend(smtp_timeout=1.0)
    b.spooler = Spooler(b.settings, MemoryClients())
    with ServerThread(start_smtp, b, role="mx") as srv:
        out = _trickle(srv.port, b"220", b"NOOPNOOPNOOPNOOP")
    assert b"421 4.4.2" in out  # the line never completed within the timeout: closed


def test_smtp_slow_but_steady_data_is_not_cut():
    import socket

    from fakes import MemoryClients
    from postern_gateway.smtp.server import start_smtp
    from postern_gateway.smtp.spool import Spooler

    b = memory_backend(smtp_timeout=2.0)
    b.directory.add_domain("example.test")
    b.directory.add_user("alice@example.test", "alice-pw")
    b.spooler = Spooler(b.settings, MemoryClients())
    with ServerThread(start_smtp, b, role="mx") as srv:
        with socket.create_connection((HOST, srv.port), timeout=15) as s:
            f = s.makefile("rb")
            f.readline()
            s.sendall(b"HELO c.test\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
            for _ in range(4):
                assert f.readline()[:3] in (b"250", b"354")
            for i in range(12):  # 12 lines, one every 0.25 s: 3 s in all, longer than the 2 s timeout
                s.sendall(b"line %d\r\n" % i)
                time.sleep(0.25)
            s.sendall(b".\r\n")
            assert f.readline().startswith(b"250 2.0.0")


def test_pop3_and_imap_one_byte_a_second_time_out(monkeypatch):
    from postern_gateway.imap import session as imap_session
    from postern_gateway.pop3.server import start_pop3

    b = memory_backend(pop3_timeout=1.0)
    with ServerThread(start_pop3, b) as srv:
        out = _trickle(srv.port, b"+OK", b"NOOPNOOPNOOPNOOP")
    assert b"-ERR" in out and b"timeout" in out.lower()
    monkeypatch.setattr(imap_session, "PREAUTH_TIMEOUT", 1.0)
    b = memory_backend()
    with ServerThread(start_imap, b) as srv:
        out = _trickle(srv.port, b"* OK", b"a NOOPNOOPNOOPNOOP")
    assert b"* BYE" in out
