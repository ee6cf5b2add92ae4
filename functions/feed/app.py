"""feed - the one change feed: the mail table's change log, fanned out to every gateway task and JMAP socket.

READS
    A batch of the mail table's DynamoDB stream (NEW_IMAGE), filtered by the event
    source mapping to INSERTs of change-log records (pk ``L#<account>``): each is a
    change the store committed, numbered per account (postern/store/records.py).
    Or a batch of the directory table's stream (KEYS_ONLY), filtered to MODIFYs and
    REMOVEs of user items: a password changed (``postern user passwd``, JMAP
    Password/change) or a user removed.
WRITES
    Compact change notices (account, mailbox ids, the highest change number of the
    batch per account; postern/feed.py) and the accounts whose credentials changed to
    ChangeFeedTopic, one SNS Publish per up to 200 KiB, its message attribute saying which
    of the two it carries. Every gateway task's own queue is subscribed to the topic
    (postern_gateway/changefeed.py; a task that serves no mailbox, the ha profile's mail-in
    service, filters on that attribute for credential changes only); a task that reads a
    notice wakes the IMAP watchers of that account, which read the log after their last
    number; a credential change drops the task's cached logins of that account.
FAILURES
    A publish that fails reports the batch from its first record not yet published
    (ReportBatchItemFailures: Lambda retries from that sequence number, bisecting a
    batch whose invocation fails); after MaximumRetryAttempts the batch's description
    goes to FeedDLQ, which alarms. A notice published twice is harmless (a watcher that
    already has change n reads nothing); a notice lost only delays clients to the
    safety-net poll (POSTERN_CHANGE_FEED_POLL_INTERVAL), a lost credential change leaves a cached
    login usable until the gateway's safety-net check (the same interval after its last
    confirmation; postern_gateway/auth.py). A record that is not a change is
    skipped. A push never fails the batch: a connection that is gone (410) loses its registry
    item, any other post or registry fault is logged and counted (PushFailures); the client's
    next /changes call reads the log anyway.
CODE
    postern.feed, postern.push.
"""

from __future__ import annotations

import os

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit

from postern import feed, push
from postern.lambdalog import Logger
from postern.aws import get_clients
from postern.config import get_settings
from postern.errors import StoreUnavailable

logger = Logger()
metrics = Metrics()


def publish(records: list[dict], sns, topic: str) -> list[str]:
    """Publish the notices and credential changes of ``records``; the sequence numbers to retry
    from ([] when all went)."""
    notices, accounts, first_seq = [], [], {}
    for rec in records:
        seq = (rec.get("dynamodb") or {}).get("SequenceNumber", "")
        n = feed.notice_of(rec)
        if n is not None:
            notices.append(n)
            first_seq.setdefault(("c", n.user), seq)
            continue
        account = feed.credentials_of(rec)
        if account is not None:
            accounts.append(account)
            first_seq.setdefault(("cr", account), seq)
    merged, changed = feed.coalesce(notices), list(dict.fromkeys(accounts))
    items = [("c", n.user) for n in merged] + [("cr", a) for a in changed]  # encode's order
    start = 0
    for body, count in feed.encode(merged, changed):
        try:
            sns.publish(TopicArn=topic, Message=body, MessageAttributes=feed.attributes(body))
        except Exception as exc:  # noqa: BLE001 - any fault: retry from here
            pending = [first_seq[i] for i in items[start:] if first_seq.get(i)]
            logger.warning("change notices not published", error=str(exc), pending=len(items) - start)
            return [min(pending, key=int)] if pending else []
        start += count
    metrics.add_metric(name="ChangeNotices", unit=MetricUnit.Count, value=len(merged))
    if changed:
        metrics.add_metric(name="CredentialChanges", unit=MetricUnit.Count, value=len(changed))
    return []


def push_changes(records: list[dict], registry: push.Registry, post) -> push.Outcome:
    """The StateChange of each account in ``records`` to its push-enabled JMAP sockets (never raises)."""
    notices = feed.coalesce([n for n in map(feed.notice_of, records) if n is not None])
    try:
        out = push.fan_out(notices, registry, post)
    except StoreUnavailable as exc:  # the registry: the clients see the change at their next call
        logger.warning("push registry unavailable", error=exc.text)
        return push.Outcome(failed=len(notices))
    if out.failed:
        logger.warning("pushes failed", failed=out.failed, first=out.errors[:1])
    if out.posted or out.failed:
        metrics.add_metric(name="Pushes", unit=MetricUnit.Count, value=out.posted)
        metrics.add_metric(name="PushFailures", unit=MetricUnit.Count, value=out.failed)
    return out


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event, context):
    topic = os.environ["POSTERN_CHANGE_TOPIC_ARN"]
    records = event.get("Records") or []
    clients = get_clients()
    failed = publish(records, clients.sns, topic)
    endpoint = get_settings().push_endpoint
    if not failed and endpoint:  # a batch retried is pushed when it is published
        push_changes(records, push.registry_for(), push.connections_poster(clients.connections(endpoint)))
    return {"batchItemFailures": [{"itemIdentifier": seq} for seq in failed]}
