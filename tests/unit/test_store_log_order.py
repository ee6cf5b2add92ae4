"""Change numbers in commit order: concurrent writers on one mailbox while a watcher follows the log.

Four writers (each its own store instance, as gateway tasks and store Lambdas
are) append, flag and expunge on one mailbox through the DynamoDB store on moto;
a follower reads the account log after the last number it saw, exactly as the
IMAP watcher does. Every change is seen once, in number order, and replaying
what was seen gives the mailbox. (``bench/store_order.py`` prints the same run
with write units per change and the conflict rate.)
"""

from __future__ import annotations

import os

from postern.store.engine import LogStore
from postern_local.logrun import run


def test_concurrent_writers_every_change_seen_exactly_once_in_order():
    from moto import mock_aws

    from postern.aws import Clients
    from postern.config import Settings
    from postern.store.dynamo import DynamoMailStore
    from postern_local.moto_atomic import install
    from postern_local.template import load_template, resources_of_type

    install()
    with mock_aws():
        clients = Clients(Settings())
        props = resources_of_type(load_template(), "AWS::DynamoDB::Table")["MailTable"]["Properties"]
        clients.dynamodb.create_table(TableName="order-mail", AttributeDefinitions=props["AttributeDefinitions"],
                                      KeySchema=props["KeySchema"], BillingMode="PAY_PER_REQUEST")
        clients.s3.create_bucket(Bucket="order-bucket")
        settings = Settings.from_env({**os.environ, "POSTERN_MAIL_TABLE": "order-mail", "POSTERN_BUCKET": "order-bucket"})
        _run(DynamoMailStore(settings, clients))


def _run(dynamo_store) -> None:
    def make_store():
        return LogStore(dynamo_store.items, dynamo_store.blobs, spool_prefix=dynamo_store.spool_prefix,
                        message_prefix=dynamo_store.message_prefix)

    f = run(make_store, "order@example.test", writers=4, ops=6, seed=3)
    print("\n" + f.report())
    assert not f.errors, f.errors
    assert f.changes >= 16, f.report()  # appends, flag changes and expunges were made
    assert f.seen == f.changes and f.out_of_order == 0 and f.duplicates == 0 and f.missing == 0, f.report()
    assert f.replay_matches, f.report()
    assert f.conflicts > 0, "the writers never raced: the test did not test ordering"
