"""The local Lambda runtime (postern_local.worker) and IAM from the template, end to end.

* Each function runs in its own warm worker process, reused across invocations.
* A handler past the template's Timeout is killed and its batch comes back after the
  queue's visibility timeout; one past MemorySize gets MemoryError and a fresh worker.
* Gateway log lines carry no Lambda context (issue 11: in one process the Powertools
  Logger of a handler decorated every ``postern.*`` logger).
* Removing a permission the pipeline needs from template.yaml makes the local stack
  refuse the operation, as AWS would: the mail never reaches the mailbox.

The altered stack (no gateway: the test spools as the gateway would) runs a copy of
template.yaml with two changes: RouterFunction loses
its SQSSendMessagePolicy for the store queue, and a ProbeFunction (tests/e2e/lambdas/probe,
Timeout 1 s, MemorySize 128 MB) consumes a ProbeQueue with a 2 s visibility timeout.
"""

from __future__ import annotations

import json
import logging
import smtplib
import time
import uuid

import pytest
import yaml

from postern_local.template import load_template

PROBE_VISIBILITY = 2


def _altered_template() -> dict:
    t = load_template()
    res = t["Resources"]
    router = res["RouterFunction"]["Properties"]
    router["Policies"] = [p for p in router["Policies"] if "StoreQueue" not in json.dumps(p)]
    res["ProbeQueue"] = {"Type": "AWS::SQS::Queue", "Properties": {"VisibilityTimeout": PROBE_VISIBILITY}}
    res["ProbeFunction"] = {"Type": "AWS::Serverless::Function", "Properties": {
        "CodeUri": "tests/e2e/lambdas/probe/", "Handler": "app.lambda_handler", "Timeout": 1, "MemorySize": 128,
        "Events": {"Probe": {"Type": "SQS", "Properties": {
            "Queue": {"Fn::GetAtt": ["ProbeQueue", "Arn"]}, "BatchSize": 1,
            "FunctionResponseTypes": ["ReportBatchItemFailures"]}}}}}
    return t


@pytest.fixture(scope="module")
def altered(stack, tmp_path_factory):
    """A second local stack running the altered template (the session stack stays as it was)."""
    from postern import aws
    from postern_local.stack import LocalStack

    path = tmp_path_factory.mktemp("template") / "template.yaml"
    path.write_text(yaml.safe_dump(_altered_template(), sort_keys=False))
    saved = aws._default
    s = LocalStack({"POSTERN_DEMO_PASSWORD": "demo-password"}, ephemeral_ports=True, background=False,
                   gateway=False, template=str(path)).start()
    try:
        yield s
    finally:
        s.stop()
        aws._default = saved


def _probe(stack, command: dict) -> None:
    stack.clients.sqs.send_message(QueueUrl=stack.queue_url("ProbeQueue"), MessageBody=json.dumps(command))


def _in_flight(stack, logical: str) -> int:
    a = stack.clients.sqs.get_queue_attributes(QueueUrl=stack.queue_url(logical),
                                               AttributeNames=["ApproximateNumberOfMessagesNotVisible"])
    return int(a["Attributes"]["ApproximateNumberOfMessagesNotVisible"])


# ---------------------------------------------------------------- warm workers
def test_each_function_runs_in_its_own_warm_worker(stack, new_user):
    import os

    user, _ = new_user()
    router = stack.workers["RouterFunction"]
    with smtplib.SMTP(stack.host, stack.smtp_port, timeout=30) as c:
        c.sendmail("a@remote.test", [user], b"Subject: one\r\n\r\nx\r\n")
    stack.drain()
    first = router.pids
    with smtplib.SMTP(stack.host, stack.smtp_port, timeout=30) as c:
        c.sendmail("a@remote.test", [user], b"Subject: two\r\n\r\nx\r\n")
    stack.drain()
    assert router.pids == first and first and os.getpid() not in first  # the same execution environment
    assert set(first).isdisjoint(stack.workers["StoreFunction"].pids)  # one process per function
    assert len(list(stack.store.list_messages(stack.store.get_mailbox(user, "INBOX")))) == 2


def _lambda_log_context() -> list[dict]:
    """What Powertools Loggers in this process would add to every ``postern.*`` log line."""
    out = []
    for h in logging.getLogger("postern").handlers:
        if type(h.formatter).__module__.startswith("aws_lambda_powertools"):
            out.append({k: v for k, v in getattr(h.formatter, "log_format", {}).items() if "function" in k})
    return out


def test_gateway_log_lines_carry_no_lambda_context(stack, new_user):
    """Issue 11: in one process, a handler's Powertools Logger (service "postern") kept its last
    invocation's function_name and request id on the "postern" logger, which every gateway logger
    ("postern.limits" ...) propagates to. The handlers now run, and log, in their own processes."""
    import os

    from postern_local.worker import RemoteHandler

    user, _ = new_user()
    before = _lambda_log_context()
    with smtplib.SMTP(stack.host, stack.smtp_port, timeout=30) as c:
        c.sendmail("a@remote.test", [user], b"Subject: ctx\r\n\r\nx\r\n")
    assert stack.drain() >= 2  # router and store ran (and logged with their Lambda context)
    assert _lambda_log_context() == before  # ... without touching this process's loggers
    assert all(isinstance(w, RemoteHandler) and os.getpid() not in w.pids for w in stack.workers.values())


# ---------------------------------------------------------------- timeout and memory
def test_a_handler_past_its_timeout_is_killed_and_its_batch_returns_after_the_visibility_timeout(altered):
    probe = altered.workers["ProbeFunction"]
    _probe(altered, {"sleep": 5})
    t0 = time.monotonic()
    altered.drain()
    assert probe.timeouts == 1 and time.monotonic() - t0 < 4  # killed at Timeout (1 s), not after 5 s
    assert _in_flight(altered, "ProbeQueue") == 1  # not deleted, not made visible early
    time.sleep(PROBE_VISIBILITY + 0.5)
    (m,) = altered.clients.sqs.receive_message(QueueUrl=altered.queue_url("ProbeQueue"),
                                               AttributeNames=["ApproximateReceiveCount"])["Messages"]
    assert m["Attributes"]["ApproximateReceiveCount"] == "2"
    altered.clients.sqs.delete_message(QueueUrl=altered.queue_url("ProbeQueue"), ReceiptHandle=m["ReceiptHandle"])
    _probe(altered, {"sleep": 0})  # a fresh worker (cold start) serves the next batch
    cold = probe.cold_starts
    altered.drain()
    assert probe.cold_starts == cold + 1 and _in_flight(altered, "ProbeQueue") == 0


def test_a_handler_past_its_memory_size_fails_and_gets_a_fresh_worker(altered):
    probe = altered.workers["ProbeFunction"]
    _probe(altered, {"allocate_mb": 40})  # within MemorySize 128
    altered.drain()
    assert _in_flight(altered, "ProbeQueue") == 0
    before = probe.pids
    outcome = probe.invoke({"Records": [{"messageId": "m", "body": json.dumps({"allocate_mb": 400})}]})
    assert outcome.error is not None and outcome.error.type_name == "MemoryError"
    assert not set(before) & set(probe.pids)  # the worker that ran out was replaced


# ---------------------------------------------------------------- IAM from the template
def _spool(stack, rcpt: str) -> None:
    """What the gateway does for an accepted message: the bytes to S3, the envelope to the inbound queue."""
    from postern import clock
    from postern.envelope import Envelope

    qid = uuid.uuid4().hex
    raw = b"Subject: needs StoreQueue\r\n\r\nx\r\n"
    key = stack.settings.spool_prefix + qid
    stack.clients.s3.put_object(Bucket=stack.settings.bucket, Key=key, Body=raw)
    env = Envelope(queue_id=qid, mail_from="a@remote.test", rcpt_to=(rcpt,), s3_key=key, size=len(raw),
                   received_at=clock.now(), trace_headers="Received: from client by mail.example.test\r\n")
    stack.clients.sqs.send_message(QueueUrl=stack.settings.inbound_queue_url, MessageBody=env.to_json())


def test_removing_a_needed_permission_from_the_template_makes_delivery_fail(altered, stack, new_user):
    _spool(altered, altered.demo_user)
    altered.drain()
    refused = [r for r in altered.proxy.app.refusals if r.component == "RouterFunction"]
    assert refused and refused[-1].target == "sqs:SendMessage" and refused[-1].code == "AccessDenied"
    assert "postern" in refused[-1].message and "storequeue" in refused[-1].message
    assert list(altered.store.list_messages(altered.store.get_mailbox(altered.demo_user, "INBOX"))) == []
    assert altered.queue_count("InboundDLQ") == 1  # retried, then dead-lettered (and alarmed on AWS)
    # The same mail through the unaltered template is delivered.
    user, _ = new_user()
    _spool(stack, user)
    stack.drain()
    assert len(list(stack.store.list_messages(stack.store.get_mailbox(user, "INBOX")))) == 1
