"""Every SQS batch delivered twice (legal for SQS): no duplicate in any mailbox, no double send.

The stack's handlers are wrapped so each batch is handled twice in a row
(the second time with ApproximateReceiveCount + 1), as when SQS hands the
same message to two pollers; inbound mail then goes to one and three local
recipients, and outbound mail to a fake remote MX through the smarthost
transport.
"""

from __future__ import annotations

import smtplib
from collections import Counter
from email.parser import BytesHeaderParser
from email.policy import default

import pytest

from postern_local.evidence import Evidence
from postern_local.fakemx import FakeMX
from postern_local.faultrun import mailbox_ids, make_message
from postern_local.faults import FaultSpec


@pytest.fixture
def twice():
    from postern import aws
    from postern_local.stack import LocalStack

    saved = aws._default  # the session stack's process-wide clients: give them back afterwards
    ev = Evidence(FaultSpec(redeliver=2), probe=False)
    with FakeMX() as mx:
        s = LocalStack(
            {"POSTERN_OUTBOUND_TRANSPORT": "smarthost", "POSTERN_SMARTHOST": f"127.0.0.1:{mx.port}",
             "POSTERN_SMARTHOST_TLS": "none", "POSTERN_LOGIN_FAIL_DELAY": "0",
             "POSTERN_DEMO_PASSWORD": "demo-password"},
            ephemeral_ports=True, background=False, handler_wrapper=ev.handler_wrapper,
        ).start()
        try:
            ev.attach(s)
            yield s, ev, mx
        finally:
            s.stop()
            aws._default = saved


def test_redelivered_batches_store_once_and_send_once(twice):
    stack, ev, mx = twice
    domain = stack.demo_user.split("@", 1)[1]
    users = [stack.demo_user] + [f"r{i}@{domain}" for i in range(2)]
    for u in users[1:]:
        stack.directory.add_user(u, "pw")
    sent = []
    with smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=30) as c:
        for rcpts in (users[:1], users, users[1:2]):
            mid, raw = make_message("far@remote.test", rcpts)
            c.sendmail("far@remote.test", rcpts, raw)
            sent.append((mid, rcpts))
    outbound = []
    with smtplib.SMTP("127.0.0.1", stack.submission_port, timeout=30) as c:
        c.login(stack.demo_user, "demo-password")
        for rcpts in (["x@remote.test"], ["y@remote.test", "z@other.test"]):
            mid, raw = make_message(stack.demo_user, rcpts)
            c.sendmail(stack.demo_user, rcpts, raw)
            outbound.append((mid, rcpts))
    stack.drain()

    assert ev.handler_faults.redeliveries["RouterFunction"] >= 1
    assert ev.handler_faults.redeliveries["StoreFunction"] >= 1
    assert ev.handler_faults.redeliveries["DeliverFunction"] >= 1
    boxes = mailbox_ids(stack.store, users)
    for mid, rcpts in sent:
        for r in rcpts:
            assert boxes[r][mid] == 1, (r, mid, boxes[r])

    parser = BytesHeaderParser(policy=default)
    got = Counter()
    for m in mx.messages:
        mid = str(parser.parsebytes(m.data).get("Message-ID")).strip()
        for r in m.rcpt_tos:
            got[(mid, r)] += 1
    for mid, rcpts in outbound:
        for r in rcpts:
            assert got[(mid, r)] == 1, (mid, r, got)
