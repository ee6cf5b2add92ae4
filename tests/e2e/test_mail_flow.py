"""Mail in with smtplib, through S3/SQS and the real Lambda handlers, out with poplib.

Every test uses its own domain and users (``new_user``), so they share the
session stack without seeing each other's mail.
"""

from __future__ import annotations

import os
import poplib
import smtplib
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

SENDER = "sender@origin.example"


def message(subject: str = "hello") -> bytes:
    # Already in wire form (CRLF, no line starting with a dot): smtplib sends it unchanged.
    return (
        f"From: Sender <{SENDER}>\r\n"
        f"To: somebody\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@origin.example>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n"
        "First line.\r\n"
        "Caf\xe9 \u2014 8-bit text.\r\n"
        "  indented, trailing space \r\n"
        "\r\n"
        "Last line.\r\n"
    ).encode("utf-8")


def send(stack, rcpts, raw: bytes, mail_from: str = SENDER) -> None:
    with smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=30) as s:
        s.ehlo("client.origin.example")
        refused = s.sendmail(mail_from, list(rcpts), raw, mail_options=["BODY=8BITMIME"])
        assert refused == {}


def retrieve_all(stack, user: str, password: str) -> list[bytes]:
    p = poplib.POP3("127.0.0.1", stack.pop3_port, timeout=30)
    try:
        p.user(user)
        p.pass_(password)
        count, _ = p.stat()
        out = []
        for i in range(1, count + 1):
            _, lines, _ = p.retr(i)
            out.append(b"\r\n".join(lines) + b"\r\n")
        return out
    finally:
        p.quit()


def split_trace(retrieved: bytes, raw: bytes) -> list[bytes]:
    """Check ``retrieved`` is trace header lines + ``raw`` byte for byte; return the trace lines."""
    assert retrieved.endswith(raw), "the stored message is not the sent bytes"
    prefix = retrieved[: len(retrieved) - len(raw)]
    lines = prefix.split(b"\r\n")
    assert lines[-1] == b""
    return lines[:-1]


def header_names(trace: list[bytes]) -> list[bytes]:
    return [ln.split(b":", 1)[0] for ln in trace if ln[:1] not in (b" ", b"\t")]


def test_one_recipient_byte_identical(stack, new_user):
    user, pw = new_user("alice")
    raw = message("one")
    send(stack, [user], raw)
    stack.drain()
    (got,) = retrieve_all(stack, user, pw)
    trace = split_trace(got, raw)
    assert trace[0] == f"Return-Path: <{SENDER}>".encode()
    assert trace[1] == f"Delivered-To: {user}".encode()
    assert b"Received" in header_names(trace)


def test_two_recipients_one_transaction(stack, new_user, new_domain):
    d = new_domain()
    (a, apw), (b, bpw) = new_user("a", d), new_user("b", d)
    raw = message("two")
    send(stack, [a, b], raw)
    stack.drain()
    for user, pw in ((a, apw), (b, bpw)):
        (got,) = retrieve_all(stack, user, pw)
        assert split_trace(got, raw)[1] == f"Delivered-To: {user}".encode()


def test_alias_with_two_targets(stack, new_user, new_domain):
    d = new_domain()
    (a, apw), (b, bpw) = new_user("a", d), new_user("b", d)
    stack.directory.add_alias(f"team@{d}", [a, b])
    raw = message("alias")
    send(stack, [f"team@{d}"], raw)
    stack.drain()
    for user, pw in ((a, apw), (b, bpw)):
        (got,) = retrieve_all(stack, user, pw)
        split_trace(got, raw)


def test_plus_addressing(stack, new_user):
    user, pw = new_user("carol")
    local, domain = user.split("@")
    raw = message("plus")
    send(stack, [f"{local}+newsletters@{domain}"], raw)
    stack.drain()
    (got,) = retrieve_all(stack, user, pw)
    assert split_trace(got, raw)[1] == f"Delivered-To: {user}".encode()


def test_catch_all(stack, new_user, new_domain):
    d = new_domain()
    user, pw = new_user("postmaster", d)
    stack.directory.set_catchall(d, user)
    raw = message("catch-all")
    send(stack, [f"whoever-{uuid.uuid4().hex[:6]}@{d}"], raw)
    stack.drain()
    (got,) = retrieve_all(stack, user, pw)
    split_trace(got, raw)


def test_unknown_local_recipient_refused_at_rcpt(stack, new_user):
    user, _ = new_user("dave")
    with smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=30) as s:
        s.ehlo("client.origin.example")
        s.mail(SENDER)
        code, _ = s.rcpt("nobody@" + user.split("@")[1])
        assert code == 550


def test_poison_store_job_ends_in_store_dlq(stack):
    from postern.envelope import StoreJob

    before = stack.queue_count("StoreDLQ")
    job = StoreJob(queue_id=uuid.uuid4().hex, s3_key="spool/never-written", user="x@nowhere.test",
                   mail_from=SENDER, original_recipient="x@nowhere.test", received_at=0.0)
    stack.clients.sqs.send_message(QueueUrl=stack.settings.store_queue_url, MessageBody=job.to_json())
    stack.drain()
    assert stack.queue_count("StoreQueue") == 0
    assert stack.queue_count("StoreDLQ") == before + 1


def test_admin_cli_against_the_local_stack(stack, new_domain, tmp_path):
    """What `. .postern-local/env && postern user add ...` does, as a subprocess."""
    d = new_domain()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("POSTERN_", "AWS_"))}, **stack.exported_env()}
    postern = Path(sys.executable).with_name("postern")
    r = subprocess.run([str(postern), "user", "add", f"erin@{d}", "--password-stdin"], input="cli-pass\n",
                       env=env, capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stderr) == (0, "")
    r = subprocess.run([str(postern), "user", "list", d], env=env, capture_output=True, text=True, timeout=60)
    assert r.stdout.startswith(f"erin@{d}\t")
    raw = message("cli user")
    send(stack, [f"erin@{d}"], raw)
    stack.drain()
    (got,) = retrieve_all(stack, f"erin@{d}", "cli-pass")
    split_trace(got, raw)


@pytest.mark.parametrize("size", [1, 300_000])
def test_sizes_survive_byte_for_byte(stack, new_user, size):
    user, pw = new_user("big")
    body = b"".join(b"%07d abcdefghijklmnopqrstuvwxyz\r\n" % i for i in range(max(1, size // 36)))
    raw = message("size").replace(b"\r\n\r\nFirst line.", b"\r\n\r\n" + body + b"First line.")
    send(stack, [user], raw)
    stack.drain()
    (got,) = retrieve_all(stack, user, pw)
    split_trace(got, raw)


def test_background_pollers_deliver_without_drain(stack, new_user):
    """What `make run` does: pollers on threads, long-polling the queues."""
    import time

    user, pw = new_user("frank")
    raw = message("background")
    stack.pollers.start()
    try:
        send(stack, [user], raw)
        deadline = time.monotonic() + 20
        got = []
        while not got and time.monotonic() < deadline:
            got = retrieve_all(stack, user, pw)
            if not got:
                time.sleep(0.1)
    finally:
        stack.pollers.stop()
    (msg,) = got
    split_trace(msg, raw)
