"""X-Ray sampling: one decision per message at the gateway, carried on the inbound SQS message.

The functions run ``Tracing: PassThrough`` (template.yaml), so only messages whose
SQS message carries ``AWSTraceHeader ... Sampled=1`` are traced; the cost model
(bench/cost.py) counts traces as invocations x TraceSampleRate.
"""

from __future__ import annotations

import dataclasses
import re

from postern.tracing import sampled, trace_header, trace_id
from postern_gateway.smtp.spool import Spooler, new_queue_id


def test_sampling_rate_is_kept_and_stable_per_queue_id():
    ids = [new_queue_id() for _ in range(20_000)]
    share = sum(sampled(q, 0.01) for q in ids) / len(ids)
    assert 0.005 < share < 0.02
    assert all(sampled(q, 0.01) == sampled(q, 0.01) for q in ids[:100])
    assert all(sampled(q, 1.0) for q in ids[:100]) and not any(sampled(q, 0.0) for q in ids[:100])
    assert not sampled("not-hex!", 0.5)


def test_trace_header_is_an_xray_root_with_the_queue_id():
    q = "0123456789abcd0123456789"
    assert trace_id(q, 1_700_000_000) == f"1-{1_700_000_000:08x}-{q}"
    assert trace_header(q, 1_700_000_000, 1.0) == f"Root=1-{1_700_000_000:08x}-{q};Sampled=1"
    assert trace_header(q, 1_700_000_000, 0.0) is None


def _receive(settings, clients):
    r = clients.sqs.receive_message(QueueUrl=settings.inbound_queue_url, MaxNumberOfMessages=10,
                                    MessageSystemAttributeNames=["AWSTraceHeader"])
    return r.get("Messages", [])


def test_spool_stamps_sampled_messages_only(aws):
    settings, clients, _ = aws
    raw = b"Subject: x\r\n\r\nhi\r\n"
    traced = Spooler(dataclasses.replace(settings, trace_sample_rate=1.0), clients)
    env = traced.spool(raw, mail_from="a@b.test", rcpt_to=["u@example.test"])
    (m,) = _receive(settings, clients)
    header = m["Attributes"]["AWSTraceHeader"]
    assert re.fullmatch(r"Root=1-[0-9a-f]{8}-[0-9a-f]{24};Sampled=1", header) and env.queue_id in header
    clients.sqs.delete_message(QueueUrl=settings.inbound_queue_url, ReceiptHandle=m["ReceiptHandle"])
    # postern trace ID names the X-Ray trace of a sampled message (the same decision, replayed)
    from postern.cli_outbound import format_trace, trace_data

    data = trace_data(traced.settings, clients, env.queue_id)
    assert data["xray"] in header and f"x-ray     trace {data['xray']}" in format_trace(data)
    assert "xray" not in trace_data(dataclasses.replace(settings, trace_sample_rate=0.0), clients, env.queue_id)

    Spooler(dataclasses.replace(settings, trace_sample_rate=0.0), clients).spool(
        raw, mail_from="a@b.test", rcpt_to=["u@example.test"])
    (m,) = _receive(settings, clients)
    assert "AWSTraceHeader" not in m.get("Attributes", {})


def test_template_traces_by_the_gateways_decision():
    from postern_local.template import load_template

    t = load_template()
    assert t["Globals"]["Function"]["Tracing"] == "PassThrough"
    assert t["Parameters"]["TraceSampleRate"]["Default"] == 0.01
    env = t["Resources"]["GatewayMailTaskDefinition"]["Properties"]["ContainerDefinitions"][0]["Environment"]
    assert {"Name": "POSTERN_TRACE_SAMPLE", "Value": {"Ref": "TraceSampleRate"}} in env
