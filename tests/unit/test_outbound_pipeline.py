"""The deliver and NDR pipelines under moto, driven with real SQS records and a
fake MX; time comes from postern.clock and ``postern_local.timetravel`` moves
SQS's delays with it (no real waiting)."""

from __future__ import annotations

import json
from email import policy
from email.parser import BytesParser

import pytest

from postern.cli_outbound import format_queue, format_trace, queue_drop, queue_retry, queue_rows, trace_data
from postern.deliverylog import DeliveryLog
from postern.dns import StaticResolver
from postern.envelope import NoticeJob, OutboundJob, parse_body
from postern.pipeline.deliver import Deliverer, handle_record
from postern.pipeline.ndr import Reporter, report_id
from postern_local import timetravel
from postern_local.fakemx import FakeMX

T0 = 1_800_000_000.0
RAW = (b"From: Alice <alice@example.test>\r\nTo: bob@remote.test\r\nSubject: pipeline\r\n"
       b"Message-ID: <p1@example.test>\r\n\r\n" + b"body\r\n" * 50)


@pytest.fixture
def mx():
    with FakeMX("mx.remote.test") as server:
        yield server


@pytest.fixture
def frozen():
    with timetravel.frozen(T0) as c:  # SQS's delays follow the same clock
        yield c


@pytest.fixture
def env(aws, mx, frozen):
    settings, clients, res = aws
    settings = settings.replace(outbound_transport="mx", outbound_vpc=True, mx_port=mx.port, outbound_timeout=2.0,
                                mta_sts=False)
    resolver = StaticResolver(mx_records={"remote.test": [(10, "mx.remote.test")], "null.test": [(0, ".")]},
                              a_records={"mx.remote.test": ["127.0.0.1"]})
    calls = []  # every ChangeMessageVisibility (there must be none) and every re-enqueue's DelaySeconds
    clients.register_hook("provide-client-params.sqs.ChangeMessageVisibility",
                          lambda params, **kw: calls.append(("visibility", params["VisibilityTimeout"])))
    clients.register_hook("provide-client-params.sqs.SendMessage",
                          lambda params, **kw: calls.append(("delay", params.get("DelaySeconds", 0)))
                          if params["QueueUrl"] == settings.outbound_queue_url else None)
    d = Deliverer(settings, clients, resolver=resolver)
    return settings, clients, d, calls


def enqueue(settings, clients, rcpts=("bob@remote.test",), domain="remote.test", mail_from="alice@example.test",
            qid="Q1", received_at=T0, raw=RAW):
    key = settings.spool_prefix + qid
    clients.s3.put_object(Bucket=settings.bucket, Key=key, Body=raw,
                          Metadata={"postern-envelope": json.dumps({"queue_id": qid, "mail_from": mail_from,
                                                                    "rcpt_to": list(rcpts), "received_at": received_at,
                                                                    "size": len(raw)})})
    job = OutboundJob(queue_id=qid, s3_key=key, mail_from=mail_from, domain=domain, recipients=tuple(rcpts),
                      received_at=received_at, size=len(raw), trace_headers="Received: from client by gw\r\n")
    clients.sqs.send_message(QueueUrl=settings.outbound_queue_url, MessageBody=job.to_json())
    return job


def receive(settings, clients):
    """One record in Lambda's event shape, or None."""
    r = clients.sqs.receive_message(QueueUrl=settings.outbound_queue_url, MaxNumberOfMessages=1,
                                    AttributeNames=["All"], VisibilityTimeout=30)
    msgs = r.get("Messages", [])
    if not msgs:
        return None
    m = msgs[0]
    return {"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
            "attributes": m["Attributes"], "eventSource": "aws:sqs"}


def finish(settings, clients, record, outcome):
    """What the poller does after a handler that did not raise: delete the record."""
    clients.sqs.delete_message(QueueUrl=settings.outbound_queue_url, ReceiptHandle=record["receiptHandle"])


def notices(settings, clients) -> list[NoticeJob]:
    out = []
    while True:
        r = clients.sqs.receive_message(QueueUrl=settings.ndr_queue_url, MaxNumberOfMessages=10)
        msgs = r.get("Messages", [])
        if not msgs:
            return out
        for m in msgs:
            out.append(parse_body(m["Body"]))
            clients.sqs.delete_message(QueueUrl=settings.ndr_queue_url, ReceiptHandle=m["ReceiptHandle"])


def attempt(env_):
    settings, clients, d, _ = env_
    rec = receive(settings, clients)
    assert rec is not None, "no message visible"
    out = handle_record(rec, d)
    finish(settings, clients, rec, out)
    return out


def test_success_prepends_trace_and_keeps_bytes(env, mx):
    settings, clients, d, calls = env
    enqueue(settings, clients)
    out = attempt(env)
    assert out.delivered == ["bob@remote.test"] and not out.retry and calls == [("delay", 0)]  # enqueue's own
    data = mx.messages[0].data
    assert data.endswith(b"Received: from client by gw\r\n" + RAW)
    assert data.startswith(b"Received: by mx.example.test (Postern) id Q1;")
    assert DeliveryLog(settings, clients).states("Q1")["bob@remote.test"].state == "delivered"
    assert queue_rows(settings, clients) == []


def test_4xx_twice_then_success_retries_only_the_pending_recipient(env, mx, frozen):
    settings, clients, d, calls = env
    mx.script.on_rcpt("carol@remote.test", "451 4.3.0 try later", "451 4.3.0 still busy")
    enqueue(settings, clients, rcpts=("bob@remote.test", "carol@remote.test"))
    out = attempt(env)
    assert (out.delivered, out.deferred, out.retry_delay) == (["bob@remote.test"], ["carol@remote.test"], 60)
    assert out.next_job.recipients == ("carol@remote.test",) and out.next_job.attempt == 2
    rows = queue_rows(settings, clients)
    assert [(r["queue_id"], r["recipients"], r["attempts"]) for r in rows] == [("Q1", ["carol@remote.test"], 1)]
    assert "451 4.3.0 try later" in format_queue(rows)
    assert receive(settings, clients) is None  # the next body waits in SQS's delay, not in flight
    frozen.advance(60)
    out = attempt(env)
    assert (out.attempt, out.skipped, out.deferred, out.retry_delay) == (2, [], ["carol@remote.test"], 300)
    frozen.advance(300)
    out = attempt(env)
    assert (out.attempt, out.delivered, out.retry) == (3, ["carol@remote.test"], False)
    assert calls == [("delay", 0), ("delay", 60), ("delay", 300)]  # the enqueue, two re-enqueues; no visibility change
    assert [m.rcpt_tos for m in mx.messages] == [["bob@remote.test"], ["carol@remote.test"]]  # nobody twice
    states = DeliveryLog(settings, clients).states("Q1")
    assert (states["carol@remote.test"].state, states["carol@remote.test"].attempts) == ("delivered", 3)
    assert queue_rows(settings, clients) == [] and notices(settings, clients) == []


def test_queue_retry_sends_now_and_the_waiting_body_goes_stale(env, mx, frozen):
    settings, clients, d, calls = env
    mx.script.on_rcpt("bob@remote.test", "451 4.3.0 try later")
    enqueue(settings, clients)
    attempt(env)
    assert receive(settings, clients) is None
    assert queue_retry(settings, clients, "Q1") == ["remote.test"]  # no waiting for the minute
    out = attempt(env)
    assert (out.attempt, out.delivered) == (2, ["bob@remote.test"])
    frozen.advance(60)  # the body the first attempt sent arrives: its token is not live
    out = attempt(env)
    assert out.stale and out.results == [] and len(mx.messages) == 1
    assert receive(settings, clients) is None and queue_rows(settings, clients) == []


def test_a_body_not_yet_due_only_hops(env, mx, frozen):
    """A 2 h wait is 8 hops of 900 s; nothing is attempted before the time."""
    settings, clients, d, calls = env
    mx.script.on_rcpt("bob@remote.test", *["451 4.3.0 later"] * 6)
    enqueue(settings, clients)
    attempts, hops = [], []
    while True:
        rec = receive(settings, clients)
        if rec is None:
            if timetravel.skip(frozen, settings.outbound_queue_url) is None:
                break
            continue
        out = handle_record(rec, d)
        finish(settings, clients, rec, out)
        if out.hop is not None:
            hops.append(out.hop)
        elif out.results:
            attempts.append((out.attempt, frozen.t - T0))
        if out.delivered:
            break
    assert [(n, round(t)) for n, t in attempts] == [(1, 0), (2, 60), (3, 360), (4, 1260), (5, 3060), (6, 6660), (7, 13860)]
    assert max(hops) == 900 and [c for c in calls if c[0] == "visibility"] == []
    assert all(delay <= 900 for _, delay in calls)


def test_redelivered_record_after_success_sends_nothing(env, mx):
    settings, clients, d, _ = env
    enqueue(settings, clients)
    rec = receive(settings, clients)
    handle_record(rec, d)  # delivered, but (say) the delete was lost: SQS delivers it again
    out = handle_record(rec, d)
    assert out.skipped == ["bob@remote.test"] and out.results == [] and len(mx.messages) == 1


def test_5xx_bounces_at_once_with_status_and_diagnostic(env, mx):
    settings, clients, d, calls = env
    mx.script.on_rcpt("bob@remote.test", "550 5.1.1 <bob@remote.test>: no such user")
    enqueue(settings, clients)
    out = attempt(env)
    assert out.failed == ["bob@remote.test"] and not out.retry and calls == [("delay", 0)]
    (n,) = notices(settings, clients)
    assert n.kind == "failed" and n.mail_from == "alice@example.test"
    (f,) = n.failures()
    assert (f.recipient, f.status, f.diagnostic, f.remote_mta, f.action) == (
        "bob@remote.test", "5.1.1", "smtp; 550 5.1.1 <bob@remote.test>: no such user", "mx.remote.test", "failed")


def test_null_sender_failure_sends_no_notice(env, mx):
    settings, clients, d, _ = env
    mx.script.on_rcpt("bob@remote.test", "550 5.1.1 no such user")
    enqueue(settings, clients, mail_from="")
    out = attempt(env)
    assert out.failed == ["bob@remote.test"] and out.notices == [] and notices(settings, clients) == []


def test_null_mx_and_invalid_domain_fail_permanently(env):
    settings, clients, d, _ = env
    enqueue(settings, clients, rcpts=("x@null.test",), domain="null.test", qid="Q2")
    out = attempt(env)
    assert out.failed == ["x@null.test"]
    enqueue(settings, clients, rcpts=("x@foo.invalid",), domain="foo.invalid", qid="Q3")
    out = attempt(env)
    assert out.failed == ["x@foo.invalid"]
    statuses = sorted(f.status for n in notices(settings, clients) for f in n.failures())
    assert statuses == ["5.1.10", "5.1.2"]


def test_schedule_delay_notice_once_and_failure_at_max_age(env, mx, frozen, reporter_for):
    """Every attempt 4xx, for real through SQS: the waits follow postern.retry, each carried
    by re-enqueue hops of at most 900 s (no visibility change, nothing in flight between
    attempts), one delayed notice after 4 h, then the failure notice when the message is
    5 days old, which the NDR delivers into the sender's mailbox."""
    settings, clients, d, calls = env
    mx.script.on_rcpt("bob@remote.test", *["451 4.4.1 greylisted"] * 40)
    enqueue(settings, clients)
    times, got = [], []
    hops = 0
    while True:
        rec = receive(settings, clients)
        if rec is None:
            if timetravel.skip(frozen, settings.outbound_queue_url) is None:
                break  # nothing left anywhere in the queue
            continue
        assert rec["attributes"]["ApproximateReceiveCount"] == "1"  # maxReceiveCount never sees the schedule
        out = handle_record(rec, d)
        finish(settings, clients, rec, out)
        hops += out.hop is not None
        if out.results:
            times.append(frozen.t - T0)
        got += notices(settings, clients)
    waits = [round(b - a) for a, b in zip(times, times[1:])]
    assert waits[:9] == [60, 300, 900, 1800, 3600, 7200, 14400, 28800, 43200]
    assert len(times) == 18 and times[-1] == pytest.approx(5 * 86400, abs=1)
    assert [n.kind for n in got] == ["delayed", "failed"]
    assert [c for c in calls if c[0] == "visibility"] == [] and max(c[1] for c in calls) <= 900
    assert hops > 400  # five days in hops of at most 900 s
    assert DeliveryLog(settings, clients).states("Q1")["bob@remote.test"].state == "failed"
    assert queue_rows(settings, clients) == []
    # the failure notice, through the NDR, lands in the sender's INBOX
    reporter, store = reporter_for("alice@example.test")
    ndr = reporter.handle(got[-1])
    assert ndr.local == ["alice@example.test"]
    (meta,) = list(store.list_messages(store.get_mailbox("alice@example.test", "INBOX")))
    report = BytesParser(policy=policy.default).parsebytes(store.read(meta))
    block = report.get_payload()[1].get_payload()[1]
    assert (block["Action"], block["Status"]) == ("failed", "4.4.1")
    assert "gave up after 120 hours" in block["Diagnostic-Code"]


def test_queue_drop_marks_recipients_and_skips_them(env, mx):
    settings, clients, d, _ = env
    mx.script.on_rcpt("bob@remote.test", "451 4.3.0 later")
    enqueue(settings, clients)
    attempt(env)
    jobs = queue_drop(settings, clients, "Q1", bounce=True)
    assert jobs[0]["recipients"] == ["bob@remote.test"]
    assert queue_rows(settings, clients) == []
    (n,) = notices(settings, clients)
    assert n.failures()[0].status == "5.3.0"
    assert DeliveryLog(settings, clients).states("Q1")["bob@remote.test"].state == "dropped"
    with pytest.raises(LookupError):
        queue_retry(settings, clients, "Q1")


def test_trace_shows_acceptance_attempts_and_states(env, mx, frozen):
    settings, clients, d, _ = env
    mx.script.on_rcpt("bob@remote.test", "451 4.3.0 later")
    enqueue(settings, clients)
    attempt(env)
    frozen.advance(60)
    attempt(env)
    data = trace_data(settings, clients, "Q1")
    text = format_trace(data)
    assert "gateway   accepted from <alice@example.test> for bob@remote.test" in text
    assert "remote.test attempt 1 via mx" in text and "remote.test attempt 2 via mx" in text
    assert "bob@remote.test: deferred - 451 4.3.0 later (mx.remote.test)" in text
    assert "bob@remote.test: delivered after 2 attempt(s)" in text


# --- NDR --------------------------------------------------------------------------
@pytest.fixture
def reporter_for(aws, dynamo_store, directory):
    def make(user: str):
        settings, clients, _ = aws
        directory.add_domain(user.split("@")[1])
        directory.add_user(user, "pw")
        return Reporter(settings, clients, directory=directory, store=dynamo_store), dynamo_store

    return make


@pytest.fixture
def reporter(aws, frozen, dynamo_store, directory):
    settings, clients, _ = aws
    directory.add_domain("example.test")
    directory.add_user("alice@example.test", "pw")
    return settings, clients, Reporter(settings, clients, directory=directory, store=dynamo_store), dynamo_store


def failed_notice(settings, clients, mail_from="alice@example.test", kind="failed"):
    key = settings.spool_prefix + "Q9"
    clients.s3.put_object(Bucket=settings.bucket, Key=key, Body=RAW)
    return NoticeJob(queue_id="Q9", s3_key=key, mail_from=mail_from, received_at=T0 - 60, kind=kind, recipients=(
        {"recipient": "bob@remote.test", "status": "5.1.1", "diagnostic": "smtp; 550 5.1.1 no such user",
         "original_recipient": "", "remote_mta": "mx.remote.test", "action": kind, "last_attempt": T0},))


def test_local_sender_gets_report_in_inbox_once(reporter):
    settings, clients, r, store = reporter
    job = failed_notice(settings, clients)
    out = r.handle(job)
    assert out.local == ["alice@example.test"] and out.report_id == report_id("Q9", "failed", ["bob@remote.test"])
    r.handle(job)  # SQS retried the notice: still one report
    mb = store.get_mailbox("alice@example.test", "INBOX")
    (meta,) = list(store.list_messages(mb))
    msg = BytesParser(policy=policy.default).parsebytes(store.read(meta))
    assert msg["Return-Path"] == "<>" and msg["From"].addresses[0].addr_spec == "MAILER-DAEMON@example.test"
    assert msg["Auto-Submitted"] == "auto-replied"
    ds = msg.get_payload()[1].get_payload()
    assert ds[1]["Status"] == "5.1.1" and ds[1]["Diagnostic-Code"] == "smtp; 550 5.1.1 no such user"
    headers = msg.get_payload()[2].get_payload(decode=True)
    assert headers.startswith(b"From: Alice <alice@example.test>") and b"body" not in headers  # headers only


def test_remote_sender_gets_report_through_outbound(reporter):
    settings, clients, r, _ = reporter
    out = r.handle(failed_notice(settings, clients, mail_from="carol@elsewhere.test"))
    assert out.remote == ["carol@elsewhere.test"]
    m = clients.sqs.receive_message(QueueUrl=settings.outbound_queue_url)["Messages"][0]
    job = parse_body(m["Body"])
    assert isinstance(job, OutboundJob) and job.mail_from == "" and job.domain == "elsewhere.test"
    body = clients.s3.get_object(Bucket=settings.bucket, Key=job.s3_key)["Body"].read()
    assert body == out.raw and b"MAILER-DAEMON@example.test" in body  # our host's domain
    r.handle(failed_notice(settings, clients, mail_from="carol@elsewhere.test"))  # SQS retried the notice
    attrs = clients.sqs.get_queue_attributes(QueueUrl=settings.outbound_queue_url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    assert sum(int(v) for v in attrs.values()) == 1  # still the one OutboundJob


def test_null_sender_notice_is_dropped(reporter):
    settings, clients, r, _ = reporter
    out = r.handle(failed_notice(settings, clients, mail_from=""))
    assert out.dropped == "null sender" and out.raw == b""


def test_delayed_report_says_will_retry_until(reporter):
    settings, clients, r, _ = reporter
    out = r.handle(failed_notice(settings, clients, kind="delayed"))
    msg = BytesParser(policy=policy.default).parsebytes(out.raw)
    block = msg.get_payload()[1].get_payload()[1]
    assert block["Action"] == "delayed" and "Will-Retry-Until" in block


def test_job_without_received_at_ages_from_sqs_sent_timestamp(env, mx, frozen):
    settings, clients, d, _ = env
    mx.script.on_rcpt("bob@remote.test", "451 4.3.0 later")
    job = OutboundJob(queue_id="Q7", s3_key="spool/Q7", mail_from="alice@example.test", domain="remote.test",
                      recipients=("bob@remote.test",))
    clients.s3.put_object(Bucket=settings.bucket, Key="spool/Q7", Body=RAW)
    sent_ms = str(int((T0 - 5 * 86400) * 1000))  # queued five days ago
    out = handle_record({"body": job.to_json(), "receiptHandle": "x",
                         "attributes": {"ApproximateReceiveCount": "3", "SentTimestamp": sent_ms}}, d)
    assert out.failed == ["bob@remote.test"] and not out.retry  # expired: failure notice, no retry
    assert [n.kind for n in notices(settings, clients)] == ["failed"]
