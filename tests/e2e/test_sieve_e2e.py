"""Sieve end to end through the embedded stack: scripts stored with the ``postern`` CLI, mail in over
SMTP (the MX, with SPF checked against the loopback fake DNS), the real router, store, deliver and NDR
functions, results read over IMAP (imaplib) and at the fake remote MX.

A folder filing seen over IMAP; vacation answering once per sender, never a list or the null sender;
reject producing a DSN; redirect :copy keeping a copy and sending one out with an SRS sender; a script
failing at run time still delivering to INBOX; spam by the verdict into Junk.
"""

from __future__ import annotations

import email
import imaplib
import secrets
import smtplib
from email import policy

import pytest

from postern.cli import main as postern

HOST = "127.0.0.1"


@pytest.fixture
def checked(stack, monkeypatch, fake_mx):
    """The MX checks SPF for loopback clients too (the default skips them), and the fake MX starts clean."""
    monkeypatch.setattr(stack.gateway.backend.trust, "skip", ())
    fake_mx.reset()
    return stack


@pytest.fixture
def sender_domain(fake_dns):
    """A remote domain whose SPF lets 127.0.0.1 send: its senders are verified (vacation, reject may answer)."""

    def make() -> str:
        d = f"sender-{secrets.token_hex(3)}.example"
        fake_dns.add(d, "TXT", '"v=spf1 ip4:127.0.0.1 -all"')
        return d

    return make


def put_script(stack, capsys, user: str, text: str, tmp_path) -> None:
    f = tmp_path / f"{secrets.token_hex(3)}.sieve"
    f.write_text(text)
    capsys.readouterr()
    rc = postern(["user", "sieve", "put", user, "main", str(f), "--activate"], settings=stack.settings,
                 clients=stack.clients)
    assert rc == 0, capsys.readouterr().err


def send(stack, mail_from: str, rcpt: str, subject: str = "hello", extra: str = "", from_header: str | None = None):
    raw = (f"From: {from_header or mail_from or 'robot@nowhere.example'}\r\nTo: {rcpt}\r\nSubject: {subject}\r\n"
           f"Message-ID: <{secrets.token_hex(6)}@e2e.test>\r\n{extra}\r\nBody of {subject}.\r\n").encode()
    with smtplib.SMTP(HOST, stack.smtp_port, timeout=30) as c:
        c.ehlo("mail.client.test")
        assert c.sendmail(mail_from, [rcpt], raw) == {}


def mailbox(stack, user, password, name) -> list[bytes]:
    c = imaplib.IMAP4(HOST, stack.imap_port, timeout=30)
    try:
        c.login(user, password)
        typ, data = c.select(f'"{name}"')
        if typ != "OK":
            return []
        out = []
        for i in range(1, int(data[0]) + 1):
            typ, msg = c.fetch(str(i), "(BODY.PEEK[])")
            out.append(msg[0][1])
        return out
    finally:
        c.logout()


def at_mx(fake_mx, rcpt: str):
    return [m for m in fake_mx.messages if rcpt in m.rcpt_tos]


def test_script_files_into_a_folder_seen_over_imap(checked, new_user, sender_domain, capsys, tmp_path):
    user, pw = new_user()
    put_script(checked, capsys, user, 'require ["fileinto", "mailbox", "imap4flags"];\r\n'
               'if header :contains "subject" "invoice" { fileinto :create :flags "\\\\Flagged" "Billing/2026"; }\r\n',
               tmp_path)
    s = f"shop@{sender_domain()}"
    send(checked, s, user, "Your invoice 42")
    send(checked, s, user, "Something else")
    checked.drain()
    (billed,) = mailbox(checked, user, pw, "Billing/2026")
    assert b"Subject: Your invoice 42" in billed and billed.startswith(b"Return-Path: <")
    (other,) = mailbox(checked, user, pw, "INBOX")
    assert b"Subject: Something else" in other
    c = imaplib.IMAP4(HOST, checked.imap_port, timeout=30)
    c.login(user, pw)
    c.select('"Billing/2026"')
    assert b"\\Flagged" in c.fetch("1", "(FLAGS)")[1][0]
    c.logout()


def test_vacation_once_per_sender_never_to_lists_or_null(checked, fake_mx, new_user, sender_domain, capsys,
                                                         tmp_path):
    user, pw = new_user()
    put_script(checked, capsys, user, 'require "vacation";\r\nvacation :days 7 :subject "Out of office" '
                                      '"I am away until Monday.";\r\n', tmp_path)
    d = sender_domain()
    a, b = f"alice@{d}", f"bob@{d}"
    send(checked, a, user, "first")
    send(checked, a, user, "second")  # same sender within the period: no second reply
    send(checked, b, user, "from bob")
    send(checked, f"list@{d}", user, "list post", extra="List-Id: <news.example.org>\r\n")
    send(checked, f"bulk@{d}", user, "bulk", extra="Precedence: bulk\r\n")
    send(checked, "", user, "bounce", from_header=f"MAILER-DAEMON@{d}")
    checked.drain()
    assert len(mailbox(checked, user, pw, "INBOX")) == 6  # every message is kept
    replies_a, replies_b = at_mx(fake_mx, a), at_mx(fake_mx, b)
    assert len(replies_a) == 1 and len(replies_b) == 1
    assert not at_mx(fake_mx, f"list@{d}") and not at_mx(fake_mx, f"bulk@{d}")
    reply = replies_a[0]
    msg = email.message_from_bytes(reply.data, policy=policy.default)
    assert reply.mail_from == "<>"  # RFC 3834 §3.3: from the null sender (as the fake MX records it)
    assert msg["Auto-Submitted"].startswith("auto-replied") and msg["Subject"] == "Out of office"
    assert msg["From"] == user and msg["To"] == a and "I am away until Monday." in msg.get_content()


def test_vacation_from_the_cli(checked, fake_mx, new_user, sender_domain, capsys, tmp_path):
    user, pw = new_user()
    f = tmp_path / "away.txt"
    f.write_text("Back next week.\n")
    capsys.readouterr()
    assert postern(["user", "vacation", user, "--subject", "Away", "--message-file", str(f), "--until", "2099-01-01"],
                   settings=checked.settings, clients=checked.clients) == 0
    s = f"carol@{sender_domain()}"
    send(checked, s, user, "are you there?")
    checked.drain()
    (reply,) = at_mx(fake_mx, s)
    assert b"Subject: Away" in reply.data and b"Back next week." in reply.data
    assert postern(["user", "vacation", user, "--off"], settings=checked.settings, clients=checked.clients) == 0
    send(checked, f"dave@{s.split('@')[1]}", user, "still there?")
    checked.drain()
    assert len(at_mx(fake_mx, f"dave@{s.split('@')[1]}")) == 0


def test_vacation_answers_a_local_colleague(checked, new_user, new_domain, capsys, tmp_path):
    """Mail between two local users (authenticated submission): the login vouches for the sender."""
    d = new_domain()
    away, pw = new_user("away", d)
    colleague, cpw = new_user("colleague", d)
    put_script(checked, capsys, away, 'require "vacation";\r\nvacation :subject "Away" "Back on Monday.";\r\n',
               tmp_path)
    with smtplib.SMTP(HOST, checked.submission_port, timeout=30) as s:
        s.login(colleague, cpw)
        s.sendmail(colleague, [away], f"From: {colleague}\r\nTo: {away}\r\nSubject: lunch?\r\n\r\nHi\r\n".encode())
    checked.drain()
    (reply,) = mailbox(checked, colleague, cpw, "INBOX")
    assert b"Subject: Away" in reply and b"Auto-Submitted: auto-replied" in reply and b"Return-Path: <>" in reply


def test_reject_produces_a_dsn(checked, fake_mx, new_user, sender_domain, capsys, tmp_path):
    user, pw = new_user()
    put_script(checked, capsys, user, 'require "reject";\r\nif header :contains "subject" "offer" '
                                      '{ reject "I do not want offers."; }\r\n', tmp_path)
    s = f"seller@{sender_domain()}"
    send(checked, s, user, "A great offer")
    checked.drain()
    assert mailbox(checked, user, pw, "INBOX") == []
    (dsn,) = at_mx(fake_mx, s)
    msg = email.message_from_bytes(dsn.data, policy=policy.default)
    assert dsn.mail_from == "<>" and msg.get_content_type() == "multipart/report"
    status = dsn.data.decode("utf-8", "replace")
    assert "Status: 5.7.1" in status and "I do not want offers." in status and f"Final-Recipient: rfc822; {user}" in status


def test_redirect_copy_keeps_a_copy_and_sends_one_out(checked, fake_mx, new_user, sender_domain, capsys, tmp_path):
    user, pw = new_user()
    target = f"me@elsewhere-{secrets.token_hex(3)}.example"
    put_script(checked, capsys, user, f'require "copy";\r\nredirect :copy "{target}";\r\n', tmp_path)
    s = f"friend@{sender_domain()}"
    send(checked, s, user, "forward me")
    checked.drain()
    (kept,) = mailbox(checked, user, pw, "INBOX")
    assert b"Subject: forward me" in kept
    (out,) = at_mx(fake_mx, target)
    assert out.mail_from.startswith("SRS0=")  # the envelope sender rewritten (postern.srs)
    assert b"Subject: forward me" in out.data and f"Delivered-To: {user}".encode() in out.data


def test_a_script_failing_at_run_time_still_delivers_to_inbox(checked, fake_mx, new_user, sender_domain, capsys,
                                                              tmp_path):
    user, pw = new_user()
    targets = [f"t{i}@nowhere-{secrets.token_hex(2)}.example" for i in range(6)]
    put_script(checked, capsys, user, "".join(f'redirect "{t}";\r\n' for t in targets), tmp_path)  # over the limit
    send(checked, f"x@{sender_domain()}", user, "still delivered")
    checked.drain()
    (kept,) = mailbox(checked, user, pw, "INBOX")
    assert b"Subject: still delivered" in kept
    assert not any(at_mx(fake_mx, t) for t in targets)


def test_spam_verdict_goes_to_junk(checked, new_user):
    """The verdict rspamd will fill (postern.verdicts.SpamVerdict), carried by the envelope: the managed
    script files it into Junk."""
    import time
    import uuid

    from postern.envelope import Envelope

    user, pw = new_user()
    qid = uuid.uuid4().hex
    raw = f"From: s@spam.example\r\nTo: {user}\r\nSubject: cheap pills\r\n\r\nbuy\r\n".encode()
    key = checked.settings.spool_prefix + qid
    checked.clients.s3.put_object(Bucket=checked.settings.bucket, Key=key, Body=raw)
    env = Envelope(queue_id=qid, mail_from="s@spam.example", rcpt_to=(user,), s3_key=key, size=len(raw),
                   received_at=time.time(), spam={"action": "add header", "score": 9.5})
    checked.clients.sqs.send_message(QueueUrl=checked.settings.inbound_queue_url, MessageBody=env.to_json())
    checked.drain()
    assert mailbox(checked, user, pw, "INBOX") == []
    (junk,) = mailbox(checked, user, pw, "Junk")
    assert b"Subject: cheap pills" in junk
