"""No message lost or duplicated while AWS calls fail (short version of `make faults`).

Mail goes in over SMTP from a few concurrent clients while 10% of S3, SQS and
DynamoDB calls fail or time out and Lambda handlers sometimes crash after
their side effects; then every Message-ID is counted in its mailboxes. The
full campaign (2,000 messages, 20 clients) is bench/faults.py.
"""

from __future__ import annotations

from postern_local.faultrun import run_campaign


def test_accepted_mail_is_delivered_exactly_once_under_faults(stack):
    r = run_campaign(
        "s3=0.1,sqs=0.1,dynamodb=0.1,timeout=0.02,crash=0.05,seed=7",
        messages=40, clients=4, users=3, max_rcpts=2, time_limit=120, stack=stack,
    )
    report = r.report()
    assert sum(r.injected.get(s, {}).get("error", 0) for s in ("s3", "sqs", "dynamodb")) > 0, report
    assert r.accepted > 0, report
    # With faults on: nothing lost (absent and not in a DLQ), nothing twice, nothing stuck.
    assert (r.before.lost, r.before.duplicated, r.before.stuck) == (0, 0, 0), report
    assert r.before.delivered_anyway == 0, report
    # DLQ redriven with faults off: every accepted delivery is in its mailbox exactly once
    # (or twice where the client was told 4xx for an attempt that had landed and resent:
    # SMTP's own ambiguity, reported apart; rare, about 1e-4 per message at these rates).
    expected = sum(len(s.accepted_for) for s in r.sent)
    assert r.after.delivered + r.after.dup_after_4xx == expected, report
    assert (r.after.lost, r.after.duplicated, r.after.in_dlq) == (0, 0, 0), report
    for d in r.dlq:
        assert d["reason"] and "no failure recorded" not in d["reason"], report
