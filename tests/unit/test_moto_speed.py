"""postern_local.moto_speed: moto's answers unchanged, its cost per request independent of the backlog.

Each test asks the same questions of moto's own code (the patched functions' ``__wrapped__``)
and of the patched one, and compares; the cost tests count what grows with the backlog
(clock reads per message, items visited) rather than timing anything.
"""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from postern_local import moto_speed, timetravel

COUNTS = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
          "ApproximateNumberOfMessagesDelayed"]


@pytest.fixture
def aws():
    moto_speed.install()
    with mock_aws():
        yield


def moto_own(monkeypatch) -> None:
    """Put moto's own SQS and Query code back for the rest of the test."""
    from moto.dynamodb.models.table import Table
    from moto.sqs.models import Queue, SQSBackend

    for name in ("messages", "approximate_number_of_messages_delayed", "approximate_number_of_messages_not_visible",
                 "approximate_number_of_messages"):
        monkeypatch.setattr(Queue, name, property(Queue.__dict__[name].fget.__wrapped__))
    for name in ("get_queue_attributes", "is_message_valid_based_on_retention_period"):
        monkeypatch.setattr(SQSBackend, name, getattr(SQSBackend, name).__wrapped__)
    monkeypatch.setattr(Table, "query", Table.query.__wrapped__)
    monkeypatch.setattr(Table, "all_items", Table.all_items.__wrapped__)


def sqs_state(sqs, url: str) -> dict:
    out = {}
    for names in (COUNTS, ["All"], ["QueueArn", "VisibilityTimeout"], ["ApproximateNumberOfMessages"]):
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
        attrs.pop("LastModifiedTimestamp", None)
        out[",".join(names)] = attrs
    return out


def busy_queue(sqs) -> str:
    """A queue with visible, in-flight and delayed messages."""
    url = sqs.create_queue(QueueName="q", Attributes={"VisibilityTimeout": "300"})["QueueUrl"]
    for i in range(12):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{i}")
    for i in range(3):
        sqs.send_message(QueueUrl=url, MessageBody=f"late{i}", DelaySeconds=600)
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=5)["Messages"]
    assert len(got) == 5
    return url


def test_sqs_answers_are_moto_s_own(aws, monkeypatch):
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = busy_queue(sqs)
    fast = sqs_state(sqs, url)
    assert fast[",".join(COUNTS)] == {"ApproximateNumberOfMessages": "7", "ApproximateNumberOfMessagesNotVisible": "5",
                                      "ApproximateNumberOfMessagesDelayed": "3"}
    moto_own(monkeypatch)
    assert sqs_state(sqs, url) == fast
    with pytest.raises(sqs.exceptions.ClientError):
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["NoSuchAttribute"])


def test_sqs_receives_visible_messages_only_and_frozen_time_moves_the_timers(aws):
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="t")["QueueUrl"]
    with timetravel.frozen() as clock:
        sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=900)
        sqs.send_message(QueueUrl=url, MessageBody="now")
        first = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60)["Messages"]
        assert [m["Body"] for m in first] == ["now"]
        assert sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []) == []
        clock.advance(61)
        assert [m["Body"] for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                                       VisibilityTimeout=600)["Messages"]] == ["now"]
        clock.advance(900)
        bodies = sorted(m["Body"] for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"])
        assert bodies == ["later", "now"]


def test_sqs_cost_per_request_does_not_grow_with_the_backlog(aws, monkeypatch):
    from moto.sqs import models

    sqs = boto3.client("sqs", region_name="us-east-1")
    reads = {"n": 0}
    clock = models.unix_time_millis

    def counting(dt=None):
        reads["n"] += 1
        return clock(dt)

    def cost(call) -> int:
        reads["n"] = 0
        call()
        return reads["n"]

    monkeypatch.setattr(models, "unix_time_millis", counting)
    costs = []
    for depth in (20, 400):
        url = sqs.create_queue(QueueName=f"deep{depth}")["QueueUrl"]
        for start in range(0, depth, 10):
            sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": "x"}
                                                          for i in range(start, start + 10)])
        costs.append((cost(lambda: sqs.get_queue_attributes(QueueUrl=url, AttributeNames=COUNTS)),
                      cost(lambda: sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10))))
    assert costs[0] == costs[1]  # clock reads per request: the same at 20 and at 400 messages
    assert costs[1][0] <= 10 and costs[1][1] <= 40


def make_table(ddb) -> None:
    ddb.create_table(TableName="t", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                               {"AttributeName": "sk", "KeyType": "RANGE"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                           {"AttributeName": "sk", "AttributeType": "N"}],
                     BillingMode="PAY_PER_REQUEST")
    for p in ("a", "b", "c"):
        for k in (5, 1, 30, 2, 17, 8):
            ddb.put_item(TableName="t", Item={"pk": {"S": p}, "sk": {"N": str(k)}, "v": {"S": f"{p}{k}"}})


def queries(ddb) -> list:
    out = []
    for kwargs in ({}, {"ScanIndexForward": False}, {"Limit": 2}, {"KeyConditionExpression": "pk = :p AND sk > :k"},
                   {"FilterExpression": "v <> :x", "ExpressionAttributeValues": {":p": {"S": "b"}, ":x": {"S": "b8"}}}):
        args = {"TableName": "t", "KeyConditionExpression": "pk = :p",
                "ExpressionAttributeValues": {":p": {"S": "b"}, ":k": {"N": "4"}}, **kwargs}
        if "FilterExpression" not in kwargs and ":k" not in args["KeyConditionExpression"]:
            args["ExpressionAttributeValues"] = {":p": {"S": "b"}}
        r = ddb.query(**args)
        pages = [r["Items"]]
        while "LastEvaluatedKey" in r:
            r = ddb.query(**args, ExclusiveStartKey=r["LastEvaluatedKey"])
            pages.append(r["Items"])
        out.append(pages)
    out.append(ddb.query(TableName="t", KeyConditionExpression="pk = :p",
                         ExpressionAttributeValues={":p": {"S": "nobody"}})["Items"])
    return out


def test_a_query_answers_as_moto_s_own(aws, monkeypatch):
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    make_table(ddb)
    fast = queries(ddb)
    assert [i["sk"]["N"] for i in fast[0][0]] == ["1", "2", "5", "8", "17", "30"]
    assert [len(p) for p in fast[2]] == [2, 2, 2]  # Limit 2: three pages
    moto_own(monkeypatch)
    assert queries(ddb) == fast


def test_a_query_reads_its_own_partition_only(aws, monkeypatch):
    from moto.dynamodb.models.dynamo_type import DynamoType

    ddb = boto3.client("dynamodb", region_name="us-east-1")
    make_table(ddb)
    for k in range(200):
        ddb.put_item(TableName="t", Item={"pk": {"S": "big"}, "sk": {"N": str(k)}})
    compared = {"n": 0}
    eq = DynamoType.__eq__

    def counting(self, other):
        compared["n"] += 1
        return eq(self, other)

    monkeypatch.setattr(DynamoType, "__eq__", counting)
    items = ddb.query(TableName="t", KeyConditionExpression="pk = :p",
                      ExpressionAttributeValues={":p": {"S": "a"}})["Items"]
    assert len(items) == 6
    assert compared["n"] < 50  # moto's own compares the key of every item of the table (218)


def make_string_table(ddb, n: int = 40) -> None:
    """A string sort key, as the mail table's: a partition of mixed prefixes (an account's items)."""
    ddb.create_table(TableName="s", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                               {"AttributeName": "sk", "KeyType": "RANGE"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                           {"AttributeName": "sk", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST")
    for p in ("a", "b"):
        for i in range(n):
            for prefix in ("E#", "M#in#", "M#old#", "T#"):
                ddb.put_item(TableName="s", Item={"pk": {"S": p}, "sk": {"S": f"{prefix}{i:04d}"},
                                                  "v": {"S": f"{p}{prefix}{i}"}})
    ddb.put_item(TableName="s", Item={"pk": {"S": "a"}, "sk": {"S": "M#in#\u00e9t\u00e9"}})  # past ASCII


def string_queries(ddb) -> list:
    out = []
    conds = [("pk = :p AND begins_with(sk, :a)", {":a": {"S": "M#in#"}}),
             ("pk = :p AND sk BETWEEN :a AND :b", {":a": {"S": "M#in#0005"}, ":b": {"S": "M#old#0003"}}),
             ("pk = :p AND sk > :a", {":a": {"S": "M#old#0030"}}), ("pk = :p AND sk >= :a", {":a": {"S": "T#0039"}}),
             ("pk = :p AND sk < :a", {":a": {"S": "E#0003"}}), ("pk = :p AND sk <= :a", {":a": {"S": "E#0003"}}),
             ("pk = :p AND sk = :a", {":a": {"S": "M#in#0007"}}), ("pk = :p AND begins_with(sk, :a)", {":a": {"S": "X"}})]
    for cond, values in conds:
        for extra in ({}, {"Limit": 7}, {"Limit": 7, "ScanIndexForward": False}, {"ScanIndexForward": False},
                      {"Limit": 1}, {"Limit": 5, "FilterExpression": "v <> :x", "ExpressionAttributeValues":
                                     {":p": {"S": "a"}, ":x": {"S": "aM#in#3"}, **values}}):
            args = {"TableName": "s", "KeyConditionExpression": cond,
                    "ExpressionAttributeValues": {":p": {"S": "a"}, **values}, **extra}
            r = ddb.query(**args)
            pages = [(r["Items"], r.get("LastEvaluatedKey"))]
            while "LastEvaluatedKey" in r:
                r = ddb.query(**args, ExclusiveStartKey=r["LastEvaluatedKey"])
                pages.append((r["Items"], r.get("LastEvaluatedKey")))
            out.append(pages)
    return out


def test_a_string_key_condition_query_answers_as_moto_s_own(aws, monkeypatch):
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    make_string_table(ddb)
    fast = string_queries(ddb)
    assert sum(len(items) for items, _ in fast[0]) == 41  # begins_with M#in#: 40 + the accented one
    assert [len(items) for items, _ in fast[1]] == [7, 7, 7, 7, 7, 6]  # Limit 7 over 41
    moto_own(monkeypatch)
    assert string_queries(ddb) == fast


def test_a_page_query_reads_its_page_not_the_partition(aws, monkeypatch):
    """A Query of one page (begins_with + Limit, either direction, with a start key) sizes a few
    items however many the partition holds: moto's own sized each item of the partition."""
    from moto.dynamodb.models.dynamo_type import Item

    ddb = boto3.client("dynamodb", region_name="us-east-1")
    make_string_table(ddb, n=300)
    sized = {"n": 0}
    size = Item.size

    def counting(self):
        sized["n"] += 1
        return size(self)

    monkeypatch.setattr(Item, "size", counting)
    for forward in (True, False):
        args = {"TableName": "s", "KeyConditionExpression": "pk = :p AND begins_with(sk, :a)",
                "ExpressionAttributeValues": {":p": {"S": "a"}, ":a": {"S": "M#in#"}}, "Limit": 5,
                "ScanIndexForward": forward}
        first = ddb.query(**args)
        second = ddb.query(**args, ExclusiveStartKey=first["LastEvaluatedKey"])
        assert len(first["Items"]) == len(second["Items"]) == 5
    assert sized["n"] < 100  # moto's own: every item of the 1,200-item partition, each Query
