"""The gateway's end of the change feed (postern_gateway.changefeed) against scripted SQS/SNS answers.

What AWS may do that moto does not: leave the subscription pending (a confirmation message
arrives first), and queues of tasks that died without deleting theirs.
"""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

from postern import feed
from postern_gateway.changefeed import ALIVE_TAG, STALE, ChangeFeed

TOPIC = "arn:aws:sns:us-east-1:123456789012:stack-changefeedtopic"
BASE = "https://sqs.us-east-1.amazonaws.com/123456789012"


class QueueGone(Exception):
    pass


class FakeSqs:
    exceptions = SimpleNamespace(QueueDoesNotExist=QueueGone)

    def __init__(self, messages=(), tags=None):
        self.messages = list(messages)
        self.tags = tags or {}
        self.deleted_queues, self.deleted_messages = [], []

    def receive_message(self, **kw):
        out, self.messages = self.messages, []
        return {"Messages": out}

    def delete_message_batch(self, QueueUrl, Entries):  # noqa: N803 - boto3's names
        self.deleted_messages += [e["ReceiptHandle"] for e in Entries]

    def create_queue(self, QueueName, Attributes, tags):  # noqa: N803
        self.created = Attributes
        return {"QueueUrl": f"{BASE}/{QueueName}"}

    def list_queue_tags(self, QueueUrl):  # noqa: N803
        name = QueueUrl.rsplit("/", 1)[-1]
        if name not in self.tags:
            raise QueueGone(name)
        return {"Tags": self.tags[name]}

    def delete_queue(self, QueueUrl):  # noqa: N803
        self.deleted_queues.append(QueueUrl.rsplit("/", 1)[-1])


class FakeSns:
    def __init__(self, subscriptions=()):
        self.subscriptions = list(subscriptions)
        self.confirmed, self.unsubscribed = [], []

    def confirm_subscription(self, TopicArn, Token):  # noqa: N803
        self.confirmed.append(Token)
        return {"SubscriptionArn": f"{TopicArn}:confirmed"}

    def list_subscriptions_by_topic(self, TopicArn, NextToken=None):  # noqa: N803
        return {"Subscriptions": self.subscriptions}

    def unsubscribe(self, SubscriptionArn):  # noqa: N803
        self.unsubscribed.append(SubscriptionArn)

    def subscribe(self, **kw):
        self.subscribed = kw
        return {"SubscriptionArn": f"{kw['TopicArn']}:sub"}


class Loop:
    def call_soon_threadsafe(self, fn, *args):
        fn(*args)


def make(sqs, sns, got):
    settings = SimpleNamespace(change_topic_arn=TOPIC, change_queue_prefix="stack-feed-")
    clients = SimpleNamespace(sqs=sqs, sqs_long_poll=sqs, sns=sns)
    cf = ChangeFeed(settings, clients, got.extend, name="stack-feed-me")
    cf.queue_url, cf._loop = f"{BASE}/stack-feed-me", Loop()
    return cf


def test_notices_reach_the_loop_and_a_pending_subscription_is_confirmed():
    (body, _), = feed.encode([feed.Notice("a@x", 9, ("m",))])
    confirm = json.dumps({"Type": "SubscriptionConfirmation", "TopicArn": TOPIC, "Token": "tok"})
    sqs = FakeSqs([{"Body": confirm, "ReceiptHandle": "r1"}, {"Body": body, "ReceiptHandle": "r2"},
                   {"Body": "not ours", "ReceiptHandle": "r3"}])
    sns, got = FakeSns(), []
    cf = make(sqs, sns, got)
    assert cf.receive_once(0) == 1
    assert got == [feed.Notice("a@x", 9, ("m",))]
    assert sns.confirmed == ["tok"] and cf.subscription == f"{TOPIC}:confirmed"
    assert sqs.deleted_messages == []  # nothing read is read again, without a DeleteMessage (below)


def test_a_notice_read_stays_hidden_until_sqs_has_dropped_it():
    """No DeleteMessage per poll (one SQS request per notice and task less): a received notice stays
    invisible for longer than the queue retains any message, so it can never be received twice."""
    sqs, sns = FakeSqs(), FakeSns()
    cf = make(sqs, sns, [])
    cf.open()
    assert int(sqs.created["VisibilityTimeout"]) > int(sqs.created["MessageRetentionPeriod"]) == 60
    assert sns.subscribed["Attributes"] == {"RawMessageDelivery": "true"}  # every notice: this task serves mailboxes


def test_the_sweep_removes_dead_and_vanished_queues_only():
    now = int(time.time())
    tags = {"stack-feed-me": {ALIVE_TAG: "0"},  # ours: never swept, whatever its tag says
            "stack-feed-live": {ALIVE_TAG: str(now - 60)},
            "stack-feed-dead": {ALIVE_TAG: str(now - STALE - 60)},
            "other-queue": {}}
    subs = [{"Protocol": "sqs", "Endpoint": f"arn:aws:sqs:us-east-1:123456789012:{n}", "SubscriptionArn": f"{TOPIC}:{n}"}
            for n in ("stack-feed-me", "stack-feed-live", "stack-feed-dead", "stack-feed-vanished", "other-queue")]
    subs.append({"Protocol": "email", "Endpoint": "ops@example.test", "SubscriptionArn": f"{TOPIC}:mail"})
    sqs, sns = FakeSqs(tags=tags), FakeSns(subs)
    cf = make(sqs, sns, [])
    assert cf.sweep() == 2
    assert sorted(sns.unsubscribed) == [f"{TOPIC}:stack-feed-dead", f"{TOPIC}:stack-feed-vanished"]
    assert sorted(sqs.deleted_queues) == ["stack-feed-dead", "stack-feed-vanished"]
