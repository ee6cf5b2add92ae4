"""No password, AUTH response or message body reaches any log record, even at DEBUG.

Every login path of every protocol (SMTP AUTH PLAIN / LOGIN, IMAP LOGIN / AUTHENTICATE PLAIN,
POP3 USER+PASS / AUTH PLAIN), successful and failed, plus a DATA transfer, with every logger
at DEBUG and the gateway's redaction installed (``trust.redact.install``, as the app does).
"""

from __future__ import annotations

import base64
import imaplib
import logging
import poplib
import smtplib

import pytest
from helpers import HOST, ServerThread, memory_backend

from postern_gateway.imap.server import start_imap
from postern_gateway.pop3.server import start_pop3
from fakes import MemoryClients
from postern_gateway.smtp.server import start_smtp
from postern_gateway.smtp.spool import Spooler
from postern_gateway.trust import redact
from postern_gateway.trust.gate import smtp_checks

USER, PASSWORD, WRONG = "alice@example.test", "S3cret-Pa55-xyzzy", "Wr0ng-Pa55-plugh"
BODY_MARK = "BODY-MARKER-7f3a9c"


def secrets() -> list[str]:
    out = [PASSWORD, WRONG, BODY_MARK]
    for pw in (PASSWORD, WRONG):
        out.append(base64.b64encode(f"\0{USER}\0{pw}".encode()).decode())
        out.append(base64.b64encode(pw.encode()).decode())
    return out


def backend():
    b = memory_backend()
    b.directory.add_domain("example.test")
    b.directory.add_user(USER, PASSWORD)
    b.spooler = Spooler(b.settings, MemoryClients())
    return b


def test_nothing_secret_in_logs(caplog):
    redact.install()
    caplog.set_level(logging.DEBUG)  # root and therefore every logger
    for name in ("mail.log", "postern", "postern.auth", "postern.smtp", "postern.imap", "postern.pop3", "asyncio"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    raw = f"From: {USER}\r\nTo: bob@remote.test\r\nSubject: s\r\n\r\n{BODY_MARK}\r\n".encode()
    b = backend()
    with ServerThread(start_smtp, b, role="submission", checks=smtp_checks(b, "submission")) as srv:
        with smtplib.SMTP(HOST, srv.port, timeout=10) as c:
            c.ehlo("c.test")
            assert c.docmd("AUTH", "PLAIN " + base64.b64encode(f"\0{USER}\0{WRONG}".encode()).decode())[0] == 535
            assert c.docmd("AUTH", "LOGIN")[0] == 334
            assert c.docmd(base64.b64encode(USER.encode()).decode())[0] == 334
            assert c.docmd(base64.b64encode(WRONG.encode()).decode())[0] == 535
            c.login(USER, PASSWORD)
            assert c.sendmail(USER, ["bob@remote.test"], raw) == {}
        b.spooler.clients.objects.clear()
    b = backend()
    with ServerThread(start_smtp, b, role="mx", checks=smtp_checks(b, "mx")) as srv:
        with smtplib.SMTP(HOST, srv.port, timeout=10) as c:
            assert c.sendmail("x@remote.test", [USER], raw) == {}
    b = backend()
    with ServerThread(start_imap, b) as srv:
        c = imaplib.IMAP4(HOST, srv.port, timeout=10)
        with pytest.raises(imaplib.IMAP4.error):
            c.login(USER, WRONG)
        c.authenticate("PLAIN", lambda _: f"\0{USER}\0{PASSWORD}".encode())
        c.logout()
        c = imaplib.IMAP4(HOST, srv.port, timeout=10)
        c.login(USER, PASSWORD)
        c.logout()
    b = backend()
    with ServerThread(start_pop3, b) as srv:
        p = poplib.POP3(HOST, srv.port, timeout=10)
        p.user(USER)
        with pytest.raises(poplib.error_proto):
            p.pass_(WRONG)
        p.user(USER)
        p.pass_(PASSWORD)
        p.quit()
        p = poplib.POP3(HOST, srv.port, timeout=10)
        p._shortcmd("AUTH PLAIN " + base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode())
        p.quit()
    text = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert caplog.records, "no log records at all: the check would prove nothing"
    assert "auth failed" in text  # failures are logged (user and IP), just not their secrets
    for s in secrets():
        assert s not in text, f"{s!r} leaked into the logs"
