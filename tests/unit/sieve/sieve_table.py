"""Helpers for the Sieve tables: script + message -> the actions, as short strings.

``run(script, message, **envelope)`` compiles and runs a script (as the user's,
after nothing) and returns :func:`summary` of the outcome:
``store <mailbox> [flags]`` per stored copy (``+create`` when :create),
``redirect <address>``, ``vacation <seconds> <subject>``, ``reject <reason>``,
``discard`` (nothing stored), or ``error: <why>`` for a run-time error (the
message is then kept: ``store INBOX``).
"""

from __future__ import annotations

import datetime as dt

from postern.mail.header import Header
from postern.sieve import compile_script
from postern.sieve.actions import USER, Result
from postern.sieve.errors import SieveRuntimeError
from postern.sieve.interpreter import run as run_program
from postern.sieve.limits import Limits
from postern.sieve.message import Context, Envelope, MessageView
from postern.verdicts import AuthFacts, SpamVerdict

MESSAGE = (
    "Return-Path: <sender@example.org>\r\n"
    "Delivered-To: user@example.test\r\n"
    "Received: from mx.example.org by mail.example.test; Tue, 1 Dec 2026 10:00:00 +0000\r\n"
    "From: Sender Name <sender@example.org>\r\n"
    "To: User <user@example.test>, other@example.net\r\n"
    "Cc: cc+tag@example.test\r\n"
    "Subject: [list] Meeting =?utf-8?q?caf=C3=A9?= tomorrow\r\n"
    "Date: Tue, 01 Dec 2026 09:30:00 -0500\r\n"
    "Message-ID: <abc@example.org>\r\n"
    "X-Multi: one\r\n"
    "X-Multi: two\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "\r\n"
    "Hello there,\r\nthe quarterly numbers are attached.\r\n"
)
NOW = dt.datetime(2026, 12, 7, 13, 0, 0, tzinfo=dt.timezone.utc)


def context(message: str | bytes = MESSAGE, *, mail_from: str = "sender@example.org", to: str = "user@example.test",
            auth: AuthFacts | None = None, spam: SpamVerdict | None = None, mailboxes=("INBOX", "Work"),
            now: dt.datetime = NOW, env: dict | None = None) -> Context:
    raw = message.encode("utf-8") if isinstance(message, str) else message
    envelope = Envelope(mail_from, to, "user@example.test", auth or AuthFacts(spf="pass"), spam or SpamVerdict())
    view = MessageView(Header(raw), len(raw), lambda: raw)
    return Context(envelope, view, now, lambda name: name in mailboxes,
                   env if env is not None else {"host": "mail.example.test", "domain": "example.test",
                                                "location": "MDA", "phase": "during", "name": "Postern"})


def summary(result: Result, error: str = "") -> list[str]:
    out = result.outcome()
    lines = [f"error: {error}"] if error else []
    for d in out.deliveries:
        flags = " ".join(sorted(d.flags))
        lines.append(f"store {d.mailbox}" + (" +create" if d.create else "") + (f" [{flags}]" if flags else ""))
    lines += [f"redirect {r}" for r in out.redirects]
    if out.vacation is not None:
        lines.append(f"vacation {out.vacation.period} {out.vacation.subject or ''}".rstrip())
    if out.reject is not None:
        lines.append(f"reject {out.reject.reason}")
    if out.discarded and not out.redirects and out.reject is None:
        lines.append("discard")
    return lines


def run(script: str, message: str | bytes = MESSAGE, limits: Limits | None = None, **kw) -> list[str]:
    program = compile_script(script)
    result = Result(limits or Limits())
    try:
        run_program(program, context(message, **kw), result, USER, limits)
    except SieveRuntimeError as exc:
        result.drop(USER)
        return summary(result, str(exc))
    return summary(result)
