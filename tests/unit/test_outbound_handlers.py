"""The deliver and ndr Lambda handlers on the sample events in events/deliver and
events/ndr, under mock_aws (settings as a deployed stack's: ses transport)."""

from __future__ import annotations

import json
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest

from postern.envelope import NoticeJob, OutboundJob, parse_body
from postern_local.lambdas import FakeContext, load_handler
from postern_local.lambdas import drain_queue as drain

REPO = Path(__file__).resolve().parents[2]
RAW = b"From: Alice <alice@example.test>\r\nTo: dave@example.net\r\nSubject: hi\r\n\r\nHello.\r\n"


def event(name: str) -> dict:
    return json.loads((REPO / "events" / name).read_text())


@pytest.fixture
def env(handler_env):
    from postern.directory import dynamo_directory

    s, c = handler_env(POSTERN_OUTBOUND_TRANSPORT="ses")
    d = dynamo_directory(s, c)
    d.add_domain("example.test")
    d.add_user("alice@example.test", "pw-alice")
    for name in ("deliver/ses.json", "deliver/invalid-domain.json", "ndr/failed-local.json", "ndr/delayed-remote.json"):
        for r in event(name)["Records"]:
            job = parse_body(r["body"])
            c.s3.put_object(Bucket=s.bucket, Key=job.s3_key, Body=RAW)
    return s, c


def handler(function: str):
    return load_handler(f"functions/{function}", "app.lambda_handler", f"postern_fn_test_out_{function}")


def ctx(name):
    return FakeContext(function_name=name)


def test_deliver_ses_event(env):
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    s, c = env
    c.sesv2.create_email_identity(EmailIdentity="example.test")
    assert handler("deliver")(event("deliver/ses.json"), ctx("deliver")) == {"batchItemFailures": []}
    sent = ses_backends[DEFAULT_ACCOUNT_ID][s.region].sent_messages[-1]
    assert sent.raw_data.encode().endswith(b"Received: from client by mx.example.test\r\n" + RAW)
    assert {"dave@example.net", "erin@example.net"} <= set(sent.destinations)
    assert drain(c, s.ndr_queue_url) == []


def test_deliver_invalid_domain_event_bounces_once(env):
    s, c = env
    assert handler("deliver")(event("deliver/invalid-domain.json"), ctx("deliver")) == {"batchItemFailures": []}
    (notice,) = drain(c, s.ndr_queue_url)  # the second copy of the record found the recipient final
    assert isinstance(notice, NoticeJob) and notice.failures()[0].status == "5.1.2"


def test_deliver_poison_event(env):
    ev = event("deliver/poison.json")
    out = handler("deliver")(ev, ctx("deliver"))
    assert sorted(f["itemIdentifier"] for f in out["batchItemFailures"]) == sorted(r["messageId"] for r in ev["Records"])


def test_ndr_failed_local_event(env):
    s, c = env
    assert handler("ndr")(event("ndr/failed-local.json"), ctx("ndr")) == {"batchItemFailures": []}
    from postern.store.dynamo import DynamoMailStore

    store = DynamoMailStore(s, c)
    mb = store.get_mailbox("alice@example.test", "INBOX")
    (meta,) = list(store.list_messages(mb))
    report = BytesParser(policy=policy.default).parsebytes(store.read(meta))
    block = report.get_payload()[1].get_payload()[1]
    assert (block["Status"], block["Original-Recipient"]) == ("5.1.1", "rfc822; team@example.test")


def test_ndr_delayed_remote_event_goes_outbound(env):
    s, c = env
    assert handler("ndr")(event("ndr/delayed-remote.json"), ctx("ndr")) == {"batchItemFailures": []}
    (job,) = drain(c, s.outbound_queue_url)
    assert isinstance(job, OutboundJob) and job.mail_from == "" and job.recipients == ("bob@example.org",)


def test_ndr_null_sender_event_is_dropped(env):
    s, c = env
    assert handler("ndr")(event("ndr/null-sender.json"), ctx("ndr")) == {"batchItemFailures": []}
    assert drain(c, s.outbound_queue_url) == []


def test_ndr_ses_bounce_event_becomes_a_failure_report_once(env):
    """What the ses transport recorded at send time + SES's Bounce event -> alice's report."""
    from postern.deliverylog import DeliveryLog
    from postern.store.dynamo import DynamoMailStore
    from postern.transports.base import RecipientResult

    s, c = env
    qid, mid = "0190000000000bbbb0003", "0100018cexample-ses-message-id-000000"
    c.s3.put_object(Bucket=s.bucket, Key=f"spool/{qid}", Body=RAW)
    job = OutboundJob(queue_id=qid, s3_key=f"spool/{qid}", mail_from="alice@example.test", domain="example.net",
                      recipients=("dave@example.net",), original_recipients=("team@example.test",),
                      received_at=1800000000.0)
    sent = [RecipientResult("dave@example.net", ok=True, code=250, status="2.0.0", text=f"Ok {mid}")]
    dlog = DeliveryLog(s, c)
    dlog.record(job, 1, sent, {"dave@example.net": "delivered"}, {}, 1800000001.0, transport="ses",
                ses_ids={mid: ["dave@example.net"]})
    for _ in range(2):  # SNS/SQS deliver at least once: the second copy gives no second report
        assert handler("ndr")(event("ndr/ses-bounce.json"), ctx("ndr")) == {"batchItemFailures": []}
    store = DynamoMailStore(s, c)
    (meta,) = list(store.list_messages(store.get_mailbox("alice@example.test", "INBOX")))
    report = BytesParser(policy=policy.default).parsebytes(store.read(meta))
    block = report.get_payload()[1].get_payload()[1]
    assert (block["Action"], block["Status"], block["Original-Recipient"]) == ("failed", "5.1.1",
                                                                              "rfc822; team@example.test")
    assert block["Diagnostic-Code"].startswith("smtp; 550 5.1.1 <dave@example.net>")
    assert block["Remote-MTA"] == "dns; a8-1.smtp-out.amazonses.com"
    assert dlog.states(qid)["dave@example.net"].state == "failed"


def test_ndr_ses_event_for_an_unknown_message_is_dropped(env):
    assert handler("ndr")(event("ndr/ses-bounce.json"), ctx("ndr")) == {"batchItemFailures": []}
