"""Two gateway tasks over one backend, as behind the NLB: what one task does, the other sees.

Two ``postern_gateway`` processes (postern_local.gatewayproc) on their own ports share the
local stack's S3, queues and tables, and nothing else: no memory, no locks of a process.
* IMAP IDLE on one task sees mail accepted by the other.
* A POP3 session on one task locks the maildrop for the other (RFC 1939 §4), until QUIT
  or until its connection drops; the state-table item is the lock (pop3/lock.py).
* Failed logins count across both tasks (the abuse counters are in the state table).
The login-throttling test talks from its own loopback address, so its failures count
against no other test's client address.
"""

from __future__ import annotations

import poplib
import smtplib
import socket
import time

import pytest

from postern_local.gatewayproc import GatewayProcess
from postern_local.liveness import IMAP4From, POP3From

ATTACKER = "127.0.0.9"


@pytest.fixture(scope="module")
def tasks(stack):
    env = {"POSTERN_AUTH_FAIL_USER_LIMIT": "3", "POSTERN_IMAP_POLL_INTERVAL": "0.5"}
    a, b = GatewayProcess(stack, env), GatewayProcess(stack, env)
    a.spawn(), b.spawn()
    try:
        a.wait_ready(), b.wait_ready()
        yield a, b
    finally:
        for gw in (a, b):  # both shut down at once
            if gw.proc is not None and gw.proc.poll() is None:
                gw.proc.terminate()
        a.stop(), b.stop()


def _deliver(stack, gw: GatewayProcess, user: str, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", gw.ports["smtp"], timeout=30) as c:
        c.sendmail("far@remote.test", [user], f"Subject: {subject}\r\n\r\nhello\r\n".encode())
    stack.drain()


def _read_until(f, pred, timeout: float) -> list[bytes]:
    end = time.monotonic() + timeout
    lines = []
    while time.monotonic() < end:
        ln = f.readline()
        if not ln:
            break
        lines.append(ln)
        if pred(ln):
            return lines
    raise AssertionError(f"not seen within {timeout}s: {lines!r}")


def test_idle_on_one_task_sees_mail_accepted_by_the_other(stack, tasks, new_user):
    a, b = tasks
    user, pw = new_user()
    stack.store.ensure_mailboxes(user)
    sock = socket.create_connection(("127.0.0.1", a.ports["imap"]), timeout=30)
    f = sock.makefile("rb")
    f.readline()
    sock.sendall(f"a LOGIN {user} {pw}\r\nb SELECT INBOX\r\n".encode())
    _read_until(f, lambda ln: ln.startswith(b"b "), 30)
    sock.sendall(b"c IDLE\r\n")
    assert f.readline().startswith(b"+ ")
    _deliver(stack, b, user, "through task b")
    _read_until(f, lambda ln: ln == b"* 1 EXISTS\r\n", 10)
    sock.sendall(b"DONE\r\n")
    _read_until(f, lambda ln: ln.startswith(b"c OK"), 10)
    sock.close()


def test_a_pop3_session_on_one_task_locks_the_maildrop_on_the_other(stack, tasks, new_user):
    a, b = tasks
    user, pw = new_user()
    _deliver(stack, a, user, "one")
    first = poplib.POP3("127.0.0.1", a.ports["pop3"], timeout=30)
    first.user(user)
    first.pass_(pw)
    second = poplib.POP3("127.0.0.1", b.ports["pop3"], timeout=30)
    second.user(user)
    with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
        second.pass_(pw)
    second.quit()
    first.dele(1)
    first.quit()  # UPDATE, then the lock is released before the +OK
    again = poplib.POP3("127.0.0.1", b.ports["pop3"], timeout=30)
    again.user(user)
    again.pass_(pw)
    assert again.stat()[0] == 0  # the DELE of the session on task a was committed
    # A connection that drops without QUIT releases the lock too (no UPDATE: nothing removed).
    again.sock.shutdown(socket.SHUT_RDWR)  # the client vanishes (the socket's file object keeps close() from it)
    again.close()
    _deliver(stack, b, user, "two")
    deadline = time.monotonic() + 10
    while True:
        p = poplib.POP3("127.0.0.1", a.ports["pop3"], timeout=30)
        p.user(user)
        try:
            p.pass_(pw)
            break
        except poplib.error_proto:
            p.quit()
            assert time.monotonic() < deadline, "the dropped session's lock was not released"
            time.sleep(0.2)
    assert p.stat()[0] == 1
    p.quit()


def test_failed_logins_count_across_both_tasks(stack, tasks, new_user):
    a, b = tasks
    user, pw = new_user()
    for gw in (a, b, a):  # three failures, spread over both tasks: the account limit is 3
        p = POP3From(gw.ports["pop3"], ATTACKER)
        p.user(user)
        with pytest.raises(poplib.error_proto, match="Authentication failed"):
            p.pass_("wrong")
        p.quit()
    p = POP3From(b.ports["pop3"], ATTACKER)
    p.user(user)
    with pytest.raises(poplib.error_proto, match="locked"):
        p.pass_(pw)  # the right password, on task b: the account is locked for both
    p.quit()
    c = IMAP4From(a.ports["imap"], ATTACKER)
    with pytest.raises(c.error, match="locked"):
        c.login(user, pw)
    c.shutdown()
