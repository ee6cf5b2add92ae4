"""The AWS rules moto skips under concurrency, as postern_local.moto_atomic restores them."""

from __future__ import annotations

import threading

import boto3
import pytest
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends

from postern_local.moto_atomic import install


@pytest.fixture
def aws():
    install()
    with mock_aws():
        yield


def test_a_get_that_found_an_object_reads_it_after_an_overwrite(aws):
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="bkt")
    s3.put_object(Bucket="bkt", Key="k", Body=b"old")
    found = s3_backends[DEFAULT_ACCOUNT_ID]["aws"].get_object("bkt", "k")  # a GET mid-flight
    s3.put_object(Bucket="bkt", Key="k", Body=b"new")  # moto disposes the displaced key
    assert found.value == b"old"  # before install(): ValueError: I/O operation on closed file
    assert s3.get_object(Bucket="bkt", Key="k")["Body"].read() == b"new"
    s3.delete_object(Bucket="bkt", Key="k")
    assert found.value == b"old"


def test_concurrent_overwrites_and_reads_of_one_key_never_fail(aws):
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="bkt")
    s3.put_object(Bucket="bkt", Key="k", Body=b"v")
    errors: list[BaseException] = []

    def churn(n: int) -> None:
        client = boto3.client("s3", region_name="us-east-1")
        try:
            for _ in range(40):
                if n % 2:
                    client.put_object(Bucket="bkt", Key="k", Body=b"v")
                else:
                    assert client.get_object(Bucket="bkt", Key="k")["Body"].read() == b"v"
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=churn, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_dynamodb_conditional_updates_are_atomic_per_item(aws):
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    ddb.create_table(TableName="t", BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    applied = []

    def claim(n: int) -> None:
        client = boto3.client("dynamodb", region_name="us-east-1")
        for i in range(25):
            try:  # each writer tries to move the counter from the value it read to the next
                cur = int(client.get_item(TableName="t", Key={"pk": {"S": "c"}}, ConsistentRead=True)
                          .get("Item", {}).get("n", {}).get("N", "0"))
                client.update_item(TableName="t", Key={"pk": {"S": "c"}}, UpdateExpression="SET n = :new",
                                   ConditionExpression="attribute_not_exists(n) OR n = :cur",
                                   ExpressionAttributeValues={":new": {"N": str(cur + 1)}, ":cur": {"N": str(cur)}})
                applied.append(cur + 1)
            except client.exceptions.ConditionalCheckFailedException:
                pass

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # no two writers moved the counter to the same value, and every success is counted
    assert len(applied) == len(set(applied))
    final = int(ddb.get_item(TableName="t", Key={"pk": {"S": "c"}})["Item"]["n"]["N"])
    assert final == len(applied)
