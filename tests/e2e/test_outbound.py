"""Outbound end to end through the embedded stack: submission (or an injected
authenticated envelope) -> router -> deliver -> the smarthost transport to a
fake MX on 127.0.0.1 (the ``mx`` transport needs the deliver VPC option:
AWS blocks port 25; its DNS logic is tested in test_transports.py and
test_outbound_pipeline.py), reports back into the sender's mailbox read over
POP3. Time is ``postern_local.timetravel`` (no real waiting): "later" is the
clock moved forward, which SQS's delays follow, or ``postern queue retry``.
"""

from __future__ import annotations

import email
import itertools
import poplib
import secrets
import smtplib
import time
import uuid
from email import policy

import pytest

from postern import clock, dkim
from postern.cli import main as postern
from postern.envelope import Envelope
from postern_local import timetravel

_seq = itertools.count(1)


@pytest.fixture
def remote(fake_mx):
    """``remote()`` -> a fresh remote domain (all of them reach the fake MX through the
    smarthost); the MX script starts clean."""
    fake_mx.reset()

    def make() -> str:
        return f"r{next(_seq)}-{secrets.token_hex(3)}.example"

    return make


def cli(stack, capsys, *argv) -> str:
    capsys.readouterr()
    rc = postern(list(argv), settings=stack.settings, clients=stack.clients)
    out = capsys.readouterr()
    assert rc == 0, out.err
    return out.out


def delivered_to(fake_mx, domain):
    return [m for m in fake_mx.messages if all(r.endswith("@" + domain) for r in m.rcpt_tos)]


def inject(stack, mail_from, rcpts, raw=None, received_at=None):
    """An authenticated envelope straight onto the inbound queue (as submission would spool it)."""
    qid = uuid.uuid4().hex
    raw = raw or (f"From: {mail_from}\r\nTo: {', '.join(rcpts)}\r\nSubject: e2e {qid}\r\n"
                  f"Message-ID: <{qid}@test>\r\n\r\nhello\r\n").encode()
    key = stack.settings.spool_prefix + qid
    stack.clients.s3.put_object(Bucket=stack.settings.bucket, Key=key, Body=raw)
    env = Envelope(queue_id=qid, mail_from=mail_from, rcpt_to=tuple(rcpts), s3_key=key, size=len(raw),
                   received_at=received_at or clock.now(), auth_user=mail_from or "someone@x.test",
                   trace_headers="Received: from client by mail.example.test\r\n")
    stack.clients.sqs.send_message(QueueUrl=stack.settings.inbound_queue_url, MessageBody=env.to_json())
    return qid


def submit(stack, user, password, rcpts, subject="hello") -> str:
    msg = (f"From: {user}\r\nTo: {', '.join(rcpts)}\r\nSubject: {subject}\r\n"
           f"Message-ID: <{uuid.uuid4().hex}@test>\r\n\r\nbody of {subject}\r\n")
    with smtplib.SMTP(stack.host, stack.submission_port, timeout=10) as s:
        s.login(user, password)
        s.sendmail(user, rcpts, msg.encode())
    return msg


def inbox_reports(stack, user):
    from postern.errors import MailboxNotFound

    try:
        mb = stack.store.get_mailbox(user, "INBOX")
    except MailboxNotFound:  # nothing ever delivered to this user
        return []
    msgs = [email.message_from_bytes(stack.store.read(m), policy=policy.default) for m in stack.store.list_messages(mb)]
    return [m for m in msgs if m.get_content_type() == "multipart/report"]


def ds_blocks(report):
    return report.get_payload()[1].get_payload()


def test_submitted_mail_is_delivered_dkim_signed_and_traced(stack, new_user, remote, fake_mx, capsys):
    user, password = new_user("alice")
    domain = user.split("@")[1]
    printed = cli(stack, capsys, "domain", "dkim", domain)
    records = {line.split()[0]: lines_next for line, lines_next in zip(printed.splitlines(), printed.splitlines()[1:])
               if line.endswith(" TXT")}
    records = {k: v.strip() for k, v in records.items()}
    r = remote()
    submit(stack, user, password, [f"bob@{r}"], "signed")
    stack.drain()
    (got,) = delivered_to(fake_mx, r)
    assert got.mail_from == user and got.rcpt_tos == [f"bob@{r}"]
    assert got.data.startswith(b"DKIM-Signature:")
    assert dkim.verify_all(got.data, dkim.dnsfunc_for(records)) == [True]
    qid = [line for line in got.data.decode().splitlines() if "(Postern) id " in line][0].split(" id ")[1].rstrip(";")
    trace = cli(stack, capsys, "trace", qid)
    assert f"accepted from <{user}>" in trace and f"{r} attempt 1 via smarthost" in trace
    assert f"bob@{r}: delivered after 1 attempt(s): 250 2.0.0" in trace


def test_4xx_twice_then_success(stack, new_user, remote, fake_mx, capsys):
    user, _ = new_user()
    r = remote()
    fake_mx.script.on_rcpt(f"bob@{r}", "451 4.3.0 try later", "450 4.2.0 still busy")
    with timetravel.frozen(time.time()) as c:
        qid = inject(stack, user, [f"bob@{r}"])
        stack.drain()
        listing = cli(stack, capsys, "queue", "list")
        assert qid in listing and "451 4.3.0 try later" in listing
        c.advance(60)  # SQS's delay follows the clock: the retry body arrives by itself
        stack.drain()
        assert delivered_to(fake_mx, r) == []
        cli(stack, capsys, "queue", "retry", qid)  # the operator does not wait the 5 minutes
        stack.drain()
    assert len(delivered_to(fake_mx, r)) == 1
    assert qid not in cli(stack, capsys, "queue", "list")
    trace = cli(stack, capsys, "trace", qid)
    assert "attempt 3 via smarthost" in trace and f"bob@{r}: delivered after 3 attempt(s)" in trace
    assert inbox_reports(stack, user) == []


def test_5xx_bounce_lands_in_senders_mailbox_over_pop3(stack, new_user, remote, fake_mx):
    """The closing sequence: submit to a local user and a remote one; the remote one
    fails; the report is in the sender's INBOX, read with poplib."""
    user, password = new_user("sender")
    local, _ = new_user("friend", domain=user.split("@")[1])
    r = remote()
    fake_mx.script.on_rcpt(f"bob@{r}", f"550 5.1.1 <bob@{r}>: Recipient address rejected")
    submit(stack, user, password, [local, f"bob@{r}"], "mixed")
    stack.drain()
    assert len(list(stack.store.list_messages(stack.store.get_mailbox(local, "INBOX")))) == 1
    pop = poplib.POP3(stack.host, stack.pop3_port, timeout=10)
    try:
        pop.user(user)
        pop.pass_(password)
        count, _ = pop.stat()
        assert count == 1
        raw = b"\r\n".join(pop.retr(1)[1]) + b"\r\n"
    finally:
        pop.quit()
    report = email.message_from_bytes(raw, policy=policy.default)
    assert report["Return-Path"] == "<>" and report["Auto-Submitted"] == "auto-replied"
    assert report["From"].addresses[0].addr_spec == f"MAILER-DAEMON@{user.split('@')[1]}"
    assert report.get_content_type() == "multipart/report" and report.get_param("report-type") == "delivery-status"
    per_msg, rcpt = ds_blocks(report)
    assert per_msg["Reporting-MTA"] == f"dns; {stack.settings.hostname}"
    assert (rcpt["Final-Recipient"], rcpt["Action"], rcpt["Status"]) == (f"rfc822; bob@{r}", "failed", "5.1.1")
    assert rcpt["Diagnostic-Code"] == f"smtp; 550 5.1.1 <bob@{r}>: Recipient address rejected"
    assert rcpt["Remote-MTA"] == "dns; 127.0.0.1"  # the smarthost
    headers = report.get_payload()[2]
    assert headers.get_content_type() == "text/rfc822-headers"
    assert b"Subject: mixed" in headers.get_payload(decode=True) and b"body of mixed" not in raw


def test_timeout_defers(stack, new_user, remote, fake_mx, capsys):
    user, _ = new_user()
    r = remote()
    fake_mx.script.data_delay = 1.5  # POSTERN_OUTBOUND_TIMEOUT is 1 s in the e2e stack
    qid = inject(stack, user, [f"bob@{r}"])
    stack.drain()
    listing = cli(stack, capsys, "queue", "list")
    assert qid in listing and "timeout talking to 127.0.0.1" in listing
    cli(stack, capsys, "queue", "drop", qid)
    assert qid not in cli(stack, capsys, "queue", "list")
    assert inbox_reports(stack, user) == []  # drop without --bounce notifies nobody


def test_two_domains_one_failing(stack, new_user, remote, fake_mx):
    user, _ = new_user()
    good, bad = remote(), remote()
    fake_mx.script.on_rcpt(f"b@{bad}", f"550 5.1.2 {bad}: no such domain")
    inject(stack, user, [f"a@{good}", f"b@{bad}", f"c@{good}"])
    stack.drain()
    (got,) = delivered_to(fake_mx, good)
    assert got.rcpt_tos == [f"a@{good}", f"c@{good}"]  # one transaction for the domain
    (report,) = inbox_reports(stack, user)
    blocks = ds_blocks(report)
    assert [b["Final-Recipient"] for b in blocks[1:]] == [f"rfc822; b@{bad}"]
    assert blocks[1]["Status"] == "5.1.2"


def test_null_sender_original_gets_no_report(stack, new_user, remote, fake_mx, capsys):
    user, _ = new_user()
    r = remote()
    fake_mx.script.on_rcpt(f"bob@{r}", "550 5.1.1 no such user")
    qid = inject(stack, "", [f"bob@{r}"])
    stack.drain()
    assert stack.queue_count("NdrQueue") == 0
    trace = cli(stack, capsys, "trace", qid)
    assert f"bob@{r}: failed" in trace and "ndr" not in trace.split("final states")[0].split("deliver")[-1]
    assert " ndr " not in trace


def test_retry_schedule_and_delay_notice_with_controlled_time(stack, new_user, remote, fake_mx, capsys):
    """The waits come back by themselves through SQS delays (hops of at most 900 s) as the
    clock moves; past 4 h one delayed notice, never a second."""
    user, _ = new_user()
    r = remote()
    fake_mx.script.on_rcpt(f"bob@{r}", *["451 4.7.1 greylisted"] * 5)
    with timetravel.frozen(time.time()) as c:
        qid = inject(stack, user, [f"bob@{r}"])
        stack.drain()
        for wait in (60, 300, 4 * 3600):  # the last one late: past delay_notice_after
            c.advance(wait)
            stack.drain()
        from postern.deliverylog import DeliveryLog

        attempts = sorted((i for i in DeliveryLog(stack.settings, stack.clients).history(qid) if i.get("stage") == "deliver"),
                          key=lambda i: i["attempt"])
    assert [a["attempt"] for a in attempts] == [1, 2, 3, 4]
    assert [round(a["next_attempt"] - a["at"]) for a in attempts] == [60, 300, 900, 1800]
    (report,) = inbox_reports(stack, user)
    assert report["Subject"] == "Delayed Mail (still being retried)"
    rcpt = ds_blocks(report)[1]
    assert rcpt["Action"] == "delayed" and rcpt["Status"] == "4.7.1" and "Will-Retry-Until" in rcpt
    cli(stack, capsys, "queue", "drop", qid)


def test_the_end_of_the_retry_schedule_through_the_aws_rules_is_a_failure_notice(stack, new_user, remote, fake_mx):
    """The last day of the five, through the local stack with every SQS call through the
    AWS-rules proxy (a visibility change past 12 h or a DelaySeconds over 900 is refused there):
    each wait is a chain of re-enqueue hops, never an in-flight message, and when the message is
    5 days old the failure notice lands in the sender's mailbox. (The whole schedule, every wait,
    is walked on in-process moto: tests/unit/test_outbound_pipeline.py; 480 hops through the
    proxy would cost minutes.)"""
    from postern.deliverylog import DeliveryLog

    user, _ = new_user()
    r = remote()
    fake_mx.script.on_rcpt(f"bob@{r}", *["451 4.4.1 greylisted"] * 40)
    max_age = stack.settings.max_queue_age
    with timetravel.frozen(time.time()) as c:
        received = c() - max_age + 9 * 3600  # 9 hours left: attempts after 1m, 5m, 15m, 30m, 1h, 2h, 4h
        qid = inject(stack, user, [f"bob@{r}"], received_at=received)
        hops = 0
        for hops in range(200):
            stack.drain()
            if timetravel.skip(c, stack.settings.outbound_queue_url) is None:
                break
        else:
            pytest.fail("the outbound queue never emptied")
        stack.drain()
        ended = c() - received
    log = DeliveryLog(stack.settings, stack.clients)
    attempts = sorted((i for i in log.history(qid) if i.get("stage") == "deliver"), key=lambda i: i["attempt"])
    assert [a["attempt"] for a in attempts] == list(range(1, 10))
    assert max_age <= ended < max_age + 900 and hops >= 9 * 3600 // 900
    assert log.states(qid)[f"bob@{r}"].state == "failed"
    reports = inbox_reports(stack, user)
    assert [m["Subject"] for m in reports] == ["Delayed Mail (still being retried)",
                                                "Undelivered Mail Returned to Sender"]
    rcpt = ds_blocks(reports[1])[1]
    assert (rcpt["Action"], rcpt["Status"]) == ("failed", "4.4.1")
    assert stack.queue_count("OutboundQueue") == stack.queue_count("OutboundDLQ") == 0


def test_ses_transport_against_moto_sesv2(stack, new_user):
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    from postern.pipeline.deliver import Deliverer, handle_record

    user, _ = new_user()
    stack.clients.sesv2.create_email_identity(EmailIdentity=user.split("@")[1])
    qid = uuid.uuid4().hex
    raw = f"From: {user}\r\nTo: x@ses.example\r\nSubject: via ses\r\n\r\nhi\r\n".encode()
    key = stack.settings.spool_prefix + qid
    stack.clients.s3.put_object(Bucket=stack.settings.bucket, Key=key, Body=raw)
    from postern.envelope import OutboundJob

    job = OutboundJob(queue_id=qid, s3_key=key, mail_from=user, domain="ses.example", recipients=("x@ses.example",),
                      received_at=clock.now())
    d = Deliverer(stack.settings.replace(outbound_transport="ses"), stack.clients)
    out = handle_record({"body": job.to_json(), "receiptHandle": "unused", "attributes": {"ApproximateReceiveCount": "1"}}, d)
    assert out.delivered == ["x@ses.example"]
    sent = ses_backends[DEFAULT_ACCOUNT_ID][stack.settings.region].sent_messages
    assert sent[-1].raw_data.encode().endswith(raw) and "x@ses.example" in sent[-1].destinations


def test_local_failures_feed_the_ndr(stack, new_user, capsys):
    """Router (alias pointing nowhere) and store (over quota) failures come back as reports."""
    user, _ = new_user("sender")
    domain = user.split("@")[1]
    small, _ = new_user("small", domain=domain, quota=10)
    stack.directory.add_alias(f"lost@{domain}", [f"ghost@{domain}"])
    qid = inject(stack, user, [f"lost@{domain}", small])
    stack.drain()
    reports = inbox_reports(stack, user)
    statuses = sorted(ds_blocks(r)[1]["Status"] for r in reports)
    assert statuses == ["5.1.1", "5.2.2"]
    trace = cli(stack, capsys, "trace", qid)
    assert trace.count(" ndr ") == 2


def test_trace_shows_local_delivery(stack, new_user, remote, fake_mx, capsys):
    user, _ = new_user("sender")
    friend, _ = new_user("friend", domain=user.split("@")[1])
    r = remote()
    qid = inject(stack, user, [friend, f"bob@{r}"])
    stack.drain()
    trace = cli(stack, capsys, "trace", qid)
    assert f"store     {friend} INBOX uid 1" in trace
    assert f"router    local: {friend}#INBOX; remote: {r}" in trace
    assert f"bob@{r}: delivered after 1 attempt(s)" in trace


def test_a_forward_leaves_with_an_srs_sender_and_its_bounce_finds_the_way_back(stack, new_domain, remote, fake_mx):
    """Outside mail to an alias forwarding out (no login needed): the envelope sender becomes our
    SRS address; a bounce to it at our MX goes on to the original sender; a forged one is refused."""
    d = new_domain()
    r = remote()
    stack.directory.add_alias(f"fw@{d}", [f"bob@{r}"])
    msg = f"From: out@ext.example\r\nTo: fw@{d}\r\nSubject: via alias\r\n\r\nhello\r\n".encode()
    with smtplib.SMTP(stack.host, stack.smtp_port, timeout=10) as s:
        s.sendmail("out@ext.example", [f"fw@{d}"], msg)
    stack.drain()
    (fwd,) = delivered_to(fake_mx, r)
    assert fwd.mail_from.startswith("SRS0=") and fwd.mail_from.endswith(f"=ext.example=out@{d}")
    assert fwd.data.endswith(msg)  # smarthost: From: untouched (only ses needs the rewrite)
    bounce = (f"From: MAILER-DAEMON@{r}\r\nTo: {fwd.mail_from}\r\nSubject: Undelivered Mail\r\n"
              "Auto-Submitted: auto-replied\r\n\r\nbob: no such user\r\n").encode()
    with smtplib.SMTP(stack.host, stack.smtp_port, timeout=10) as s:
        s.sendmail("", [fwd.mail_from], bounce)
        forged = "SRS0=AAAA" + fwd.mail_from[len("SRS0=xxxx"):]
        with pytest.raises(smtplib.SMTPRecipientsRefused) as exc:
            s.sendmail("", [forged], bounce)
        assert exc.value.recipients[forged][0] == 550
    stack.drain()
    (back,) = [m for m in fake_mx.messages if m.rcpt_tos == ["out@ext.example"]]
    assert back.mail_from == "<>" and back.data.endswith(bounce)  # aiosmtpd keeps the null path as "<>"
