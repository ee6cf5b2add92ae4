"""The queue pipeline through the embedded stack, without the SMTP listener:
an envelope on the inbound queue -> router -> store -> mailbox; poison -> DLQ."""

from __future__ import annotations

import time
import uuid

from postern.envelope import Envelope

RAW = b"From: bob@example.org\r\nTo: someone\r\nSubject: pipeline\r\n\r\nline one\r\n.dot line\r\n"


def _spool_and_enqueue(stack, rcpts, raw=RAW, mail_from="bob@example.org"):
    qid = uuid.uuid4().hex
    key = stack.settings.spool_prefix + qid
    stack.clients.s3.put_object(Bucket=stack.settings.bucket, Key=key, Body=raw)
    env = Envelope(queue_id=qid, mail_from=mail_from, rcpt_to=tuple(rcpts), s3_key=key, size=len(raw),
                   received_at=time.time(), trace_headers="Received: from test by mail.example.test\r\n")
    stack.clients.sqs.send_message(QueueUrl=stack.settings.inbound_queue_url, MessageBody=env.to_json())
    return qid


def _inbox(stack, user):
    mb = stack.store.get_mailbox(user, "INBOX")
    return [stack.store.read(m) for m in stack.store.list_messages(mb)]


def test_envelope_reaches_mailbox_with_trace_prefix(stack, new_user):
    user, _ = new_user()
    _spool_and_enqueue(stack, [user])
    stack.drain()
    (msg,) = _inbox(stack, user)
    prefix = f"Return-Path: <bob@example.org>\r\nDelivered-To: {user}\r\nReceived: from test by mail.example.test\r\n"
    assert msg == prefix.encode() + RAW


def test_poison_on_inbound_queue_ends_in_dlq(stack):
    before = stack.queue_count("InboundDLQ")
    stack.clients.sqs.send_message(QueueUrl=stack.settings.inbound_queue_url, MessageBody='{"v": 1, "type": "nonsense"}')
    stack.drain()
    assert stack.queue_count("InboundQueue") == 0
    assert stack.queue_count("InboundDLQ") == before + 1
    bodies = [m["Body"] for m in stack.receive("InboundDLQ")]
    assert '{"v": 1, "type": "nonsense"}' in bodies
