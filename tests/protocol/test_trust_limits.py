"""Abuse limits on the IMAP listener (POP3's own tests cover its side; SMTP's are in test_trust_smtp)."""

from __future__ import annotations

import imaplib
import time

import pytest
from helpers import HOST, ServerThread, memory_backend

from postern.limits import Limits, MemoryCounters
from postern_gateway.imap.server import start_imap


@pytest.fixture(autouse=True)
def _cheap_hashing(monkeypatch):
    from argon2 import PasswordHasher

    from postern import passwords

    monkeypatch.setattr(passwords, "_HASHER", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


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
