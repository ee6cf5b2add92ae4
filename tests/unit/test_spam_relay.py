"""The spam lesson relay (postern_gateway/spam/relay.py): a task without rspamd (GatewayProfile=ha's
mailbox-access tasks) puts IMAP moves into and out of Junk on the learn queue; a task with rspamd reads
them and hands them to its Learner. SQS is moto's (in process); the Learner is a recorder (its own
tests teach a real rspamd: tests/protocol/test_spam*.py)."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import boto3
import pytest
from moto import mock_aws

from postern.errors import MailboxNotFound
from postern.junk import Lesson, decode, encode
from postern.store.base import MailboxInfo
from postern_gateway.spam import relay

USER = "alice@example.com"
INBOX = MailboxInfo(USER, "INBOX", "mb-inbox", 1)
JUNK = MailboxInfo(USER, "Junk", "mb-junk", 1, special_use="\\Junk")
TRASH = MailboxInfo(USER, "Trash", "mb-trash", 1, special_use="\\Trash")


class Store:
    def __init__(self, *mailboxes, fail: bool = False):
        self.by_id = {m.mailbox_id: m for m in mailboxes}
        self.fail = fail

    def get_mailbox_by_id(self, user, mailbox_id):
        if self.fail:
            raise OSError("DynamoDB unreachable")
        if user != USER or mailbox_id not in self.by_id:
            raise MailboxNotFound(mailbox_id)
        return self.by_id[mailbox_id]


class Learner:
    def __init__(self):
        self.taught = []

    async def teach(self, spam, mb, uids):
        self.taught.append((spam, mb.mailbox_id, uids))


@pytest.fixture
def queue():
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="postern-learn", Attributes={"VisibilityTimeout": "120"})["QueueUrl"]
        yield sqs, url


def backend(sqs, url, store=None):
    async def run(fn, /, *args, **kwargs):
        return fn(*args, **kwargs)

    return SimpleNamespace(settings=SimpleNamespace(learn_queue_url=url), store=store or Store(), run=run,
                           clients=SimpleNamespace(sqs=sqs, sqs_long_poll=sqs))


def bodies(sqs, url) -> list[dict]:
    r = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
    return sorted((json.loads(m["Body"]) for m in r.get("Messages", [])), key=lambda b: b["m"])


def test_the_task_without_rspamd_sends_each_lesson_and_never_the_message(queue):
    sqs, url = queue
    sender = relay.LessonSender(backend(sqs, url), url)

    async def moves():
        sender.after_copy(INBOX, JUNK, [(1, 5), (2, 6)])  # into Junk: spam
        sender.after_copy(JUNK, INBOX, [(5, 9)])  # out of Junk: ham
        sender.after_copy(JUNK, TRASH, [(6, 3)])  # out of Junk into Trash: nothing to learn
        sender.after_copy(INBOX, TRASH, [(1, 4)])  # nothing to do with Junk
        await sender.idle()

    asyncio.run(moves())
    assert bodies(sqs, url) == [{"u": USER, "m": "mb-inbox", "uids": [9], "spam": False},
                                {"u": USER, "m": "mb-junk", "uids": [5, 6], "spam": True}]
    assert sender.counts == {"sent": 3}


def test_a_failed_send_is_counted_and_the_move_never_sees_it(queue):
    sqs, _url = queue
    gone = "https://sqs.us-east-1.amazonaws.com/123456789012/gone"
    sender = relay.LessonSender(backend(sqs, gone), gone)

    async def move():
        sender.after_copy(INBOX, JUNK, [(1, 5)])  # returns at once: the send is a task of its own
        await sender.idle()

    asyncio.run(move())
    assert sender.counts == {"failed": 1}


def test_the_task_with_rspamd_teaches_what_arrives_and_deletes_what_it_handled(queue):
    sqs, url = queue
    for body in (*encode(Lesson(USER, "mb-junk", (5, 6), True)), *encode(Lesson(USER, "mb-deleted", (7,), True)),
                 "not a lesson"):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    learner = Learner()
    reader = relay.LessonReader(backend(sqs, url, Store(INBOX, JUNK)), learner, url)

    async def read():
        reader._loop = asyncio.get_running_loop()
        return await asyncio.to_thread(reader.receive_once, 1)  # the reader's thread waits on the loop

    assert asyncio.run(read()) == 3
    assert learner.taught == [(True, "mb-junk", [5, 6])]
    assert reader.counts == {"taught": 2, "dropped": 2}  # the deleted mailbox's lesson, the garbage
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert (attrs["ApproximateNumberOfMessages"], attrs["ApproximateNumberOfMessagesNotVisible"]) == ("0", "0")


def test_a_store_fault_leaves_the_lesson_on_the_queue_for_another_try(queue):
    sqs, url = queue
    sqs.send_message(QueueUrl=url, MessageBody=encode(Lesson(USER, "mb-junk", (5,), True))[0])
    learner = Learner()
    reader = relay.LessonReader(backend(sqs, url, Store(JUNK, fail=True)), learner, url)

    async def read():
        reader._loop = asyncio.get_running_loop()
        return await asyncio.to_thread(reader.receive_once, 1)

    assert asyncio.run(read()) == 0 and learner.taught == [] and reader.counts == {"failed": 1}
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessagesNotVisible"] == "1"  # back after the visibility timeout


def test_which_end_a_task_runs_follows_its_settings(queue):
    sqs, url = queue
    local = Learner()
    assert relay.relay_for(backend(sqs, ""), local) == (local, None)  # no queue: as before (small profile, make run)
    learner, reader = relay.relay_for(backend(sqs, url), local)  # mail-in: teaches, and reads the others' lessons
    assert learner is local and isinstance(reader, relay.LessonReader) and reader.learner is local
    learner, reader = relay.relay_for(backend(sqs, url), None)  # mailbox access: no rspamd, sends
    assert isinstance(learner, relay.LessonSender) and reader is None


@pytest.mark.parametrize("body", ["", "{}", '{"u": 1, "m": "x", "uids": [1], "spam": true}',
                                  '{"u": "a", "m": "x", "uids": ["z"], "spam": true}',
                                  '{"u": "a", "m": "x", "uids": [1], "spam": "yes"}', "[]"])
def test_a_body_that_is_not_a_lesson_decodes_to_none(body):
    assert decode(body) is None
