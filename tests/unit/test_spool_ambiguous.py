"""Spooler after an ambiguous SQS send (timeout after SQS executed it): resend, never duplicate.

Found by the fault campaign (bench/faults.py): answering 451 after a send that
did land made clients resend under a new queue id, so the mailbox got two copies.
"""

from __future__ import annotations

import pytest
from botocore.exceptions import ReadTimeoutError

from postern.errors import StoreUnavailable
from postern_gateway.smtp.spool import Spooler


def _late_timeouts(clients, n):
    """The first ``n`` SendMessage calls execute, then 'time out'."""
    left = {"n": n}

    def after_call(model=None, **kw):
        if model.name == "SendMessage" and left["n"] > 0:
            left["n"] -= 1
            raise ReadTimeoutError(endpoint_url="injected://sqs")

    clients.register_hook("after-call.sqs.SendMessage", after_call)


def _bodies(clients, settings):
    r = clients.sqs.receive_message(QueueUrl=settings.inbound_queue_url, MaxNumberOfMessages=10)
    return [m["Body"] for m in r.get("Messages", [])]


def test_ambiguous_send_is_resent_with_the_same_envelope(aws):
    settings, clients, _ = aws
    _late_timeouts(clients, 1)
    env = Spooler(settings, clients).spool(b"Subject: x\r\n\r\nhi\r\n", mail_from="a@b.test", rcpt_to=["u@example.test"])
    bodies = _bodies(clients, settings)
    assert len(bodies) == 2 and bodies[0] == bodies[1] == env.to_json()  # same queue id twice: deduplicated downstream


def test_ambiguous_every_time_keeps_the_object_and_fails(aws):
    settings, clients, _ = aws
    _late_timeouts(clients, 10)
    with pytest.raises(StoreUnavailable):
        Spooler(settings, clients).spool(b"Subject: x\r\n\r\nhi\r\n", mail_from="a@b.test", rcpt_to=["u@example.test"])
    keys = [o["Key"] for o in clients.s3.list_objects_v2(Bucket=settings.bucket).get("Contents", [])]
    assert len(keys) == 1 and keys[0].startswith(settings.spool_prefix)  # enqueued envelopes still find their object
