"""The local embedded mode's parts: Lambda-shaped SQS events, pollers (delete what
succeeded, keep what failed, DLQ redrive), handler loading, and the gateway app."""

from __future__ import annotations

import asyncio
import base64
import json
import poplib
import smtplib

import pytest

from postern_local.lambdas import FakeContext, LocalFunction, SqsSource, function_specs
from postern_local.pollers import Poller, Pollers, sqs_event


def _fn(handler, batch_size=10, report=True):
    return LocalFunction("TestFunction", handler, "m", 30.0, 256, [SqsSource("InboundQueue", batch_size, report)])


@pytest.fixture
def queue(aws):
    settings, clients, res = aws
    return clients.sqs, res.queues["InboundQueue"], res.queue_arns["InboundQueue"], res


def _send(sqs, url, *bodies, attrs=None):
    for b in bodies:
        kw = {"MessageAttributes": attrs} if attrs else {}
        sqs.send_message(QueueUrl=url, MessageBody=b, **kw)


def _count(sqs, url) -> int:
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages",
                                                                "ApproximateNumberOfMessagesNotVisible"])
    return sum(int(v) for v in a["Attributes"].values())


def test_event_has_lambdas_sqs_shape(queue):
    sqs, url, arn, _ = queue
    _send(sqs, url, "hello", attrs={"kind": {"DataType": "String", "StringValue": "x"},
                                    "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"}})
    events = []
    p = Poller(_fn(lambda e, c: events.append(e) or {"batchItemFailures": []}), SqsSource("InboundQueue"), url, arn,
               sqs)
    assert p.poll_once() == 1
    (rec,) = events[0]["Records"]
    assert set(rec) == {"messageId", "receiptHandle", "body", "attributes", "messageAttributes", "md5OfBody",
                        "eventSource", "eventSourceARN", "awsRegion"}
    assert (rec["body"], rec["eventSource"], rec["eventSourceARN"], rec["awsRegion"]) == ("hello", "aws:sqs", arn,
                                                                                          "us-east-1")
    assert {"ApproximateReceiveCount", "SentTimestamp", "ApproximateFirstReceiveTimestamp"} <= set(rec["attributes"])
    assert rec["attributes"]["ApproximateReceiveCount"] == "1"
    assert rec["messageAttributes"]["kind"]["stringValue"] == "x"
    assert base64.b64decode(rec["messageAttributes"]["blob"]["binaryValue"]) == b"\x00\x01"
    assert _count(sqs, url) == 0


def test_sqs_event_is_parsed_by_powertools():
    from aws_lambda_powertools.utilities.data_classes import SQSEvent

    msg = {"MessageId": "m1", "ReceiptHandle": "r1", "Body": "b", "MD5OfBody": "x",
           "Attributes": {"ApproximateReceiveCount": "3", "SentTimestamp": "1", "ApproximateFirstReceiveTimestamp": "2"}}
    ev = SQSEvent(sqs_event([msg], "arn:aws:sqs:us-east-1:123456789012:q", "us-east-1"))
    (r,) = list(ev.records)
    assert (r.message_id, r.body, r.attributes.approximate_receive_count, r.event_source_arn) == (
        "m1", "b", "3", "arn:aws:sqs:us-east-1:123456789012:q")


def test_reported_failures_stay_others_are_deleted(queue):
    sqs, url, arn, _ = queue
    _send(sqs, url, "good", "bad", "good2")

    def handler(event, ctx):
        return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in event["Records"] if r["body"] == "bad"]}

    p = Poller(_fn(handler), SqsSource("InboundQueue"), url, arn, sqs, failure_visibility=0)
    assert p.poll_once() == 3
    r = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
    assert [m["Body"] for m in r["Messages"]] == ["bad"]


def test_a_raising_handler_deletes_nothing(queue):
    sqs, url, arn, _ = queue
    _send(sqs, url, "a", "b")

    def handler(event, ctx):
        raise RuntimeError("boom")

    p = Poller(_fn(handler), SqsSource("InboundQueue"), url, arn, sqs, failure_visibility=0)
    assert p.poll_once() == 2
    assert _count(sqs, url) == 2


def test_failures_reach_the_dlq_after_max_receive_count(queue):
    sqs, url, arn, res = queue
    _send(sqs, url, "poison")
    seen = []

    def handler(event, ctx):
        seen.append(event["Records"][0]["attributes"]["ApproximateReceiveCount"])
        return {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}

    pollers = Pollers([Poller(_fn(handler), SqsSource("InboundQueue"), url, arn, sqs, failure_visibility=0)])
    pollers.drain()
    assert seen == ["1", "2", "3", "4", "5"]  # maxReceiveCount 5 in template.yaml
    assert _count(sqs, url) == 0
    dlq = res.queues["InboundDLQ"]
    assert [m["Body"] for m in sqs.receive_message(QueueUrl=dlq)["Messages"]] == ["poison"]


def test_function_specs_follow_the_template():
    specs = function_specs()
    assert specs["RouterFunction"]["code_uri"] == "functions/router/"
    assert specs["RouterFunction"]["handler"] == "app.lambda_handler"
    (src,) = specs["StoreFunction"]["sources"]
    assert (src.queue, src.batch_size, src.report_failures) == ("StoreQueue", 10, True)


def test_fake_context():
    c = FakeContext(function_name="RouterFunction", timeout=30)
    assert c.invoked_function_arn == "arn:aws:lambda:us-east-1:123456789012:function:RouterFunction"
    assert 0 < c.get_remaining_time_in_millis() <= 30000
    assert c.aws_request_id and c.memory_limit_in_mb == 256


# --- the gateway app ------------------------------------------------------------------
def test_gateway_starts_plain_listeners_and_skips_tls_ones_without_a_certificate():
    from postern.config import Settings
    from postern.directory import memory_directory
    from postern.store.memory import MemoryMailStore
    from postern_gateway.app import Gateway
    from postern_gateway.backend import Backend
    from postern_gateway.blocking import Blocking

    settings = Settings().replace(bind="127.0.0.1", smtp_port=0, submission_port=0, submissions_port=0, imap_port=0,
                                  imaps_port=0, pop3_port=-1, pop3s_port=0, managesieve_port=0, allow_plaintext_auth=True,
                                  login_fail_delay=0.0, limits_backend="memory")
    directory = memory_directory()
    directory.add_domain("example.test")
    directory.add_user("alice@example.test", "pw")
    backend = Backend(settings, MemoryMailStore(), directory, Blocking(2))

    async def scenario():
        gw = Gateway(settings, clients=object(), backend=backend)
        ports = await gw.start()
        try:
            assert set(ports) == {"smtp", "submission", "imap", "managesieve"}  # pop3 off (-1), TLS ones skipped
            loop = asyncio.get_running_loop()

            def talk():
                with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=10) as s:
                    return s.ehlo()[0]

            assert await loop.run_in_executor(None, talk) == 250
        finally:
            await gw.stop()
        return ports

    ports = asyncio.run(scenario())
    with pytest.raises(OSError):
        poplib.POP3("127.0.0.1", ports["smtp"], timeout=2).quit()  # closed


def test_the_env_file_says_where_outbound_mail_goes(tmp_path):
    """make run: `.postern-local/env` (and the banner) name the transport: the local sink by default."""
    from types import SimpleNamespace

    from postern_local.__main__ import write_env_file

    exported = {"AWS_ENDPOINT_URL": "http://127.0.0.1:4566", "POSTERN_BUCKET": "b"}
    sink = SimpleNamespace(env={"POSTERN_OUTBOUND_TRANSPORT": "smarthost", "POSTERN_SMARTHOST": "127.0.0.1:2526"},
                           smarthost_sink=object(), outbound_dir=tmp_path / "outbound", exported_env=lambda: exported)
    text = write_env_file(sink, tmp_path).read_text()
    assert "# Outbound mail of this stack: smarthost 127.0.0.1:2526 (local sink: nothing leaves this machine" in text
    assert "export AWS_ENDPOINT_URL=http://127.0.0.1:4566\n" in text
    real = SimpleNamespace(env={"POSTERN_OUTBOUND_TRANSPORT": "smarthost", "POSTERN_SMARTHOST": "relay.example:587"},
                           smarthost_sink=None, outbound_dir=None, exported_env=lambda: exported)
    assert "# Outbound mail of this stack: smarthost relay.example:587\n" in write_env_file(real, tmp_path).read_text()
