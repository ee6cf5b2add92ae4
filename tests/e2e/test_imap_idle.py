"""IMAP end to end: an IDLE session on the embedded stack is woken by an SMTP delivery
(smtplib -> gateway MX -> S3 + SQS -> router and store Lambdas -> DynamoDB/S3 -> watcher)."""

from __future__ import annotations

import imaplib
import re
import smtplib
import socket
import time


def _read_until(f, pred, timeout):
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


def test_idle_woken_by_smtp_delivery(stack, new_user):
    user, pw = new_user()
    sock = socket.create_connection((stack.host, stack.imap_port), timeout=10)
    f = sock.makefile("rb")
    f.readline()
    sock.sendall(f"a LOGIN {user} {pw}\r\nb SELECT INBOX\r\n".encode())
    _read_until(f, lambda ln: ln.startswith(b"b "), 10)
    sock.sendall(b"c IDLE\r\n")
    assert f.readline().startswith(b"+ ")

    with smtplib.SMTP(stack.host, stack.smtp_port, timeout=10) as s:
        s.sendmail("bob@example.org", [user], b"From: bob@example.org\r\nTo: " + user.encode() +
                   b"\r\nSubject: wake up\r\n\r\nhello idle\r\n")
    stack.drain()
    delivered = time.monotonic()
    _read_until(f, lambda ln: ln == b"* 1 EXISTS\r\n", 5)
    assert time.monotonic() - delivered < 2.0  # the local target
    sock.sendall(b"DONE\r\n")
    _read_until(f, lambda ln: ln.startswith(b"c OK"), 5)
    sock.close()

    c = imaplib.IMAP4(stack.host, stack.imap_port)
    c.login(user, pw)
    c.select("INBOX")
    typ, data = c.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT DELIVERED-TO)] BODY.PEEK[TEXT])")
    assert b"Subject: wake up" in data[0][1] and f"Delivered-To: {user}".encode() in data[0][1]
    assert data[1][1] == b"hello idle\r\n"
    assert re.match(rb"\[APPENDUID \d+ 1\]", c.append("Sent", None, None, b"Subject: s\r\n\r\nx\r\n")[1][0])
    c.logout()
