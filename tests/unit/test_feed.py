"""The change feed's function (functions/feed) and notice format (postern.feed), on moto.

The mail table's stream is read as the template's event source mapping reads it (its
FilterCriteria, Lambda's record shape: postern_local.streams), handed to the real handler,
and what reaches a queue subscribed to ChangeFeedTopic is decoded as a gateway task would.
"""

from __future__ import annotations

import sys

import pytest

from postern import feed
from postern_local.lambdas import FakeContext, function_specs, load_handler
from postern_local.streams import lambda_record, matches

STREAMS_ENDPOINT = "https://streams.dynamodb.us-east-1.amazonaws.com"  # moto's (not the account-based one)


@pytest.fixture
def feed_env(aws, handler_env):
    settings, clients = handler_env()
    _, _, res = aws
    topic = res.topics["ChangeFeedTopic"]
    q = clients.sqs.create_queue(QueueName="t-feed-unit")["QueueUrl"]
    arn = clients.sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    clients.sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
    # a task that serves no mailbox (POSTERN_CHANGE_FEED_MAIL=false) subscribes as the gateway does then
    from types import SimpleNamespace

    from postern_gateway.changefeed import ChangeFeed

    cred = ChangeFeed(SimpleNamespace(change_topic_arn=topic, change_queue_prefix="t-feed-", change_feed_mail=False),
                      clients, lambda _n: None, name="t-feed-credentials")
    cred.open()
    streams = clients._session.client("dynamodbstreams", region_name=settings.region, endpoint_url=STREAMS_ENDPOINT)
    sources = {src.table: src for src in function_specs()["FeedFunction"]["streams"]}
    state = {}
    for table in ("MailTable", "DirectoryTable"):
        stream = res.streams[table]
        shard = streams.describe_stream(StreamArn=stream)["StreamDescription"]["Shards"][0]["ShardId"]
        state[table] = streams.get_shard_iterator(StreamArn=stream, ShardId=shard,
                                                  ShardIteratorType="LATEST")["ShardIterator"]

    def records(table: str = "MailTable"):
        """What the table's event source mapping hands the function since the last call (filtered)."""
        r = streams.get_records(ShardIterator=state[table])
        state[table] = r["NextShardIterator"]
        out = [lambda_record(x, res.streams[table], settings.region) for x in r["Records"]]
        return [x for x in out if any(matches(f, x) for f in sources[table].filters)], len(out)

    def received(credentials: bool = False, queue: str = q):
        out = []
        while True:
            got = clients.sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
            if not got:
                return out
            for m in got:
                batch = feed.read(m["Body"])
                out += batch.credentials if credentials else batch.notices
                clients.sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])

    received.credentials_only = cred.queue_url
    return settings, clients, records, received


def handler():
    spec = function_specs()["FeedFunction"]
    return load_handler(spec["code_uri"], spec["handler"], "postern_fn_FeedFunction")


def test_each_committed_change_reaches_a_subscribed_queue_as_one_notice_per_account(feed_env, dynamo_store):
    settings, clients, records, received = feed_env
    dynamo_store.ensure_mailboxes("ann@example.test")
    dynamo_store.append("ann@example.test", "INBOX", b"Subject: one\r\n\r\nx\r\n")
    dynamo_store.append("ann@example.test", "INBOX", b"Subject: two\r\n\r\nx\r\n")
    dynamo_store.ensure_mailboxes("bob@example.test")
    recs, total = records()
    # only the change log's INSERTs pass the template's filter: entries, counters, blobs do not
    assert total > len(recs) >= 4
    assert all(r["dynamodb"]["Keys"]["pk"]["S"].startswith("L#") for r in recs)
    out = handler()({"Records": recs}, FakeContext("FeedFunction"))
    assert out == {"batchItemFailures": []}
    got = {n.user: n for n in received()}
    assert set(got) == {"ann@example.test", "bob@example.test"}
    assert received(queue=received.credentials_only) == []  # a task serving no mailbox reads no notice
    ann = dynamo_store.get_mailbox("ann@example.test", "INBOX")
    assert got["ann@example.test"].modseq == ann.pos == 3  # create, append, append: the highest number
    assert ann.mailbox_id in got["ann@example.test"].mailboxes
    # a flag change is a change too, and its notice names its mailbox
    meta = next(iter(dynamo_store.list_messages(ann, 0)))
    dynamo_store.store_flags(ann, [meta], ["\\Seen"], "add")
    recs, _ = records()
    handler()({"Records": recs}, FakeContext("FeedFunction"))
    assert received() == [feed.Notice("ann@example.test", 4, (ann.mailbox_id,))]


def test_a_password_change_and_a_removed_user_reach_a_subscribed_queue_as_credential_changes(feed_env, aws):
    from postern.directory import dynamo_directory

    settings, clients, records, received = feed_env
    d = dynamo_directory(settings, clients)
    d.add_domain("example.test")
    d.add_user("ann@example.test", "one")
    d.add_user("bob@example.test", "two")
    d.add_alias("info@example.test", ["ann@example.test"])
    recs, total = records("DirectoryTable")
    assert recs == [] and total >= 4  # new items revoke nothing
    d.set_password("ann@example.test", "three")  # `postern user passwd`, JMAP Password/change
    d.set_quota("ann@example.test", 5)  # any change of the item counts (one password check, never unsafe)
    d.remove_user("bob@example.test")
    d.remove_alias("info@example.test")
    recs, _ = records("DirectoryTable")
    assert len(recs) == 3 and "NewImage" not in recs[0]["dynamodb"]  # KEYS_ONLY: no password hash leaves
    assert handler()({"Records": recs}, FakeContext("FeedFunction")) == {"batchItemFailures": []}
    assert received(credentials=True) == ["ann@example.test", "bob@example.test"]
    assert received(credentials=True, queue=received.credentials_only) == ["ann@example.test", "bob@example.test"]


class FlakySns:
    def __init__(self, fail_at: int):
        self.calls, self.fail_at = [], fail_at

    def publish(self, TopicArn, Message, MessageAttributes=None):  # noqa: N803 - boto3's names
        self.calls.append(Message)
        if len(self.calls) == self.fail_at:
            raise RuntimeError("throttled")


def _record(user: str, n: int, seq: int) -> dict:
    return {"eventName": "INSERT", "dynamodb": {
        "Keys": {"pk": {"S": f"L#{user}"}, "sk": {"S": f"{n:012d}"}}, "SequenceNumber": str(seq),
        "NewImage": {"u": {"S": user}, "ms": {"N": str(n)}, "mb": {"S": "mb1"}}}}


def test_a_failed_publish_retries_from_the_first_record_not_yet_published(monkeypatch, handler_env):
    handler_env()
    handler()
    mod = sys.modules["postern_fn_FeedFunction"]
    monkeypatch.setattr(feed, "MAX_BODY", 200)  # a few notices per message
    records = [_record(f"u{i}@example.test", 1, 100 + i) for i in range(12)]
    sns = FlakySns(fail_at=2)
    failed = mod.publish(records, sns, "arn:aws:sns:us-east-1:123456789012:t")
    sent = [n for body in sns.calls[:1] for n in feed.read(body).notices]
    assert sent and len(sent) < 12
    assert failed == [str(100 + len(sent))]  # Lambda retries from there: nothing is skipped
    assert mod.publish(records, FlakySns(fail_at=0), "t") == []


def test_notices_coalesce_per_account_and_bodies_stay_small():
    a1, a2 = feed.Notice("a@x", 5, ("m1",)), feed.Notice("a@x", 7, ("m2",))
    assert feed.coalesce([a1, feed.Notice("b@x", 2), a2]) == [feed.Notice("a@x", 7, ("m1", "m2")), feed.Notice("b@x", 2)]
    many = [feed.Notice(f"user{i}@example.test", i + 1, ("0123456789abcdef" * 2,)) for i in range(5000)]
    bodies = feed.encode(many)
    assert len(bodies) > 1 and all(len(b.encode()) <= feed.MAX_BODY for b, _ in bodies)
    assert [n for b, _ in bodies for n in feed.read(b).notices] == many
    assert sum(c for _, c in bodies) == len(many)


@pytest.mark.parametrize("body", ["", "{", "[]", '{"v": 2, "c": []}', '{"v": 1, "c": [{"u": 3, "n": "x"}, 5]}',
                                  "\x00" * 10])
def test_a_body_that_is_not_a_notice_is_ignored(body):
    assert feed.read(body) == feed.Batch()


def test_records_that_are_not_new_changes_give_no_notice():
    rec = _record("a@x", 3, 1)
    assert feed.notice_of(rec) == feed.Notice("a@x", 3, ("mb1",))
    assert feed.notice_of({**rec, "eventName": "REMOVE"}) is None
    other = {"eventName": "INSERT", "dynamodb": {"Keys": {"pk": {"S": "M#a@x#mb1"}}, "NewImage": {"u": {"S": "a@x"}}}}
    assert feed.notice_of(other) is None
