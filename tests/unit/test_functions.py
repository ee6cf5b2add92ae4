"""Each Lambda handler on the sample events in events/, under moto's mock_aws."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from postern.envelope import NoticeJob, OutboundJob, StoreJob
from postern_local.lambdas import FakeContext, load_handler
from postern_local.lambdas import drain_queue as drain

REPO = Path(__file__).resolve().parents[2]
RAW = b"From: bob@example.org\r\nTo: alice@example.test\r\nSubject: hi\r\n\r\nHello.\r\n"


def event(name: str) -> dict:
    return json.loads((REPO / "events" / name).read_text())


@pytest.fixture
def env(handler_env):
    """The handlers' process environment: what the template's Globals set, on the mock."""
    from postern.directory import dynamo_directory

    s, c = handler_env()
    d = dynamo_directory(s, c)
    d.add_domain("example.test")
    d.add_user("alice@example.test", "pw-alice")
    d.add_user("small@example.test", "pw-small", quota=10)
    d.add_alias("team@example.test", ["alice@example.test", "dave@example.net"])
    for ev in ("store/normal.json", "store/duplicate.json", "store/over-quota.json"):
        for r in event(ev)["Records"]:
            job = StoreJob.from_json(r["body"])
            c.s3.put_object(Bucket=s.bucket, Key=job.s3_key, Body=RAW)
    return s, c


def handler(function: str):
    return load_handler(f"functions/{function}", "app.lambda_handler", f"postern_fn_test_{function}")


def counting(clients) -> Counter:
    calls: Counter = Counter()

    def hook(event_name, model, **kwargs):
        calls[f"{event_name.split('.')[1]}.{model.name}"] += 1

    clients.register_hook("before-call", hook)
    return calls


def ctx(name: str) -> FakeContext:
    return FakeContext(function_name=name)


# --- router -----------------------------------------------------------------------
def test_router_local_recipient_one_store_job_in_two_requests(env):
    s, c = env
    calls = counting(c)
    r = handler("router")(event("router/local.json"), ctx("router"))
    assert r == {"batchItemFailures": []}
    assert calls == Counter({"dynamodb.BatchGetItem": 1, "sqs.SendMessage": 1})
    (job,) = drain(c, s.store_queue_url)
    assert isinstance(job, StoreJob)
    assert (job.user, job.mailbox, job.original_recipient) == ("alice@example.test", "INBOX", "alice@example.test")
    assert job.trace_headers.startswith("Received: from client.example.org")
    assert drain(c, s.outbound_queue_url) == [] and drain(c, s.ndr_queue_url) == []


def test_router_alias_local_and_forwarded_target(env):
    s, c = env
    assert handler("router")(event("router/alias.json"), ctx("router")) == {"batchItemFailures": []}
    (job,) = drain(c, s.store_queue_url)
    assert (job.user, job.original_recipient) == ("alice@example.test", "team@example.test")
    (out,) = drain(c, s.outbound_queue_url)
    assert isinstance(out, OutboundJob)
    assert (out.domain, out.recipients, out.original_recipients) == ("example.net", ("dave@example.net",),
                                                                     ("team@example.test",))


def test_router_authenticated_submission_relays(env):
    s, c = env
    assert handler("router")(event("router/remote-auth.json"), ctx("router")) == {"batchItemFailures": []}
    (out,) = drain(c, s.outbound_queue_url)
    assert out.recipients == ("carol@example.net",) and out.auth_user == "alice@example.test"
    (job,) = drain(c, s.store_queue_url)
    assert job.user == "alice@example.test"


def test_router_unknown_recipient_bounces(env):
    s, c = env
    assert handler("router")(event("router/unknown.json"), ctx("router")) == {"batchItemFailures": []}
    assert drain(c, s.store_queue_url) == []
    (notice,) = drain(c, s.ndr_queue_url)
    assert isinstance(notice, NoticeJob) and notice.kind == "failed"
    (f,) = notice.failures()
    assert (f.recipient, f.status) == ("nobody@example.test", "5.1.1")
    assert f.diagnostic.startswith("smtp; 550 5.1.1")


def test_router_poison_is_a_batch_item_failure(env):
    ev = event("router/local.json")
    ev["Records"].append({**ev["Records"][0], "messageId": "poison-1", "body": "{}"})
    r = handler("router")(ev, ctx("router"))
    assert r == {"batchItemFailures": [{"itemIdentifier": "poison-1"}]}


# --- store ------------------------------------------------------------------------
def _messages(s, c, user):
    from postern.store.dynamo import DynamoMailStore

    store = DynamoMailStore(s, c)
    mb = store.get_mailbox(user, "INBOX")
    return [store.read(m) for m in store.list_messages(mb)]


def test_store_normal_appends_prefix_plus_original_bytes(env):
    s, c = env
    assert handler("store")(event("store/normal.json"), ctx("store")) == {"batchItemFailures": []}
    (msg,) = _messages(s, c, "alice@example.test")
    job = StoreJob.from_json(event("store/normal.json")["Records"][0]["body"])
    prefix = f"Return-Path: <bob@example.org>\r\nDelivered-To: alice@example.test\r\n{job.trace_headers}".encode()
    assert msg == prefix + RAW
    # the raw spool bytes are unchanged, and are the mailbox blob: referenced in place, never copied
    assert c.s3.get_object(Bucket=s.bucket, Key=job.s3_key)["Body"].read() == RAW
    from postern import keys
    from postern.store.dynamo import DynamoMailStore

    store = DynamoMailStore(s, c)
    (meta,) = store.list_messages(store.get_mailbox("alice@example.test", "INBOX"))
    assert meta.blob_key == job.s3_key
    assert c.s3.list_objects_v2(Bucket=s.bucket, Prefix=s.message_prefix).get("KeyCount", 0) == 0
    assert store.items.get(keys.blob_key(job.s3_key))["refs"] == {f"{meta_mailbox(store)}/{meta.uid}"}


def meta_mailbox(store) -> str:
    return store.get_mailbox("alice@example.test", "INBOX").mailbox_id


def test_store_steady_state_request_count(env):
    s, c = env
    h = handler("store")
    h(event("store/normal.json"), ctx("store"))  # first delivery creates the mailboxes
    ev = event("store/duplicate.json")
    ev["Records"] = ev["Records"][:1]
    calls = counting(c)
    assert h(ev, ctx("store")) == {"batchItemFailures": []}
    # read the account marker, then (one batch) the mailbox name, its state, the dedup marker and the
    # thread index; write the change record (the commit), then the blob reference (the spool object
    # is the blob: no CopyObject), the entry, dedup marker + thread id, mailbox state and account
    # (postern/store/engine.py), and the thread's members item in the mailbox (JMAP's thread counts,
    # postern/store/counts.py: read in the same batch as the state, one UpdateItem). No transaction.
    # Plus one BatchGetItem: the user's active Sieve script and managed rules (postern.sieve.delivery).
    assert calls == Counter({"s3.GetObject": 1, "dynamodb.GetItem": 1,
                             "dynamodb.BatchGetItem": 2, "dynamodb.PutItem": 2, "dynamodb.BatchWriteItem": 1,
                             "dynamodb.UpdateItem": 4})


def test_store_duplicate_job_creates_one_message(env):
    s, c = env
    h = handler("store")
    assert h(event("store/duplicate.json"), ctx("store")) == {"batchItemFailures": []}
    assert h(event("store/duplicate.json"), ctx("store")) == {"batchItemFailures": []}  # redelivered batch
    assert len(_messages(s, c, "alice@example.test")) == 1


def test_store_over_quota_bounces_and_is_done(env):
    s, c = env
    assert handler("store")(event("store/over-quota.json"), ctx("store")) == {"batchItemFailures": []}
    (notice,) = drain(c, s.ndr_queue_url)
    (f,) = notice.failures()
    assert (f.recipient, f.status, notice.mail_from) == ("small@example.test", "5.2.2", "bob@example.org")
    from postern.errors import MailboxNotFound
    from postern.store.dynamo import DynamoMailStore

    store = DynamoMailStore(s, c)
    try:
        mb = store.get_mailbox("small@example.test", "INBOX")
    except MailboxNotFound:
        return
    assert mb.exists == 0


def test_store_poison_records_fail(env):
    from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

    ev = event("store/poison.json")
    # Every record failed: Powertools raises, so Lambda (and the local poller) keep the whole batch.
    with pytest.raises(BatchProcessingError):
        handler("store")(ev, ctx("store"))
    good = event("store/normal.json")["Records"][0]
    ev["Records"].append(good)
    r = handler("store")(ev, ctx("store"))
    assert sorted(f["itemIdentifier"] for f in r["batchItemFailures"]) == sorted(
        x["messageId"] for x in ev["Records"][:2])


def test_store_backend_fault_is_a_retry(env):
    s, c = env
    ev = event("store/normal.json")
    job = json.loads(ev["Records"][0]["body"])
    job["s3_key"] = "spool/does-not-exist"
    ev["Records"][0]["body"] = json.dumps(job)
    ev["Records"].append({**event("store/duplicate.json")["Records"][0], "messageId": "good-1"})
    r = handler("store")(ev, ctx("store"))
    assert r == {"batchItemFailures": [{"itemIdentifier": ev["Records"][0]["messageId"]}]}
    assert len(_messages(s, c, "alice@example.test")) == 1


def test_store_with_inline_header_reads_nothing_from_s3(env):
    """The gateway sends the header section inline, so indexing costs no GetObject."""
    from postern.store.summary import inline_header

    s, c = env
    h = handler("store")
    h(event("store/normal.json"), ctx("store"))  # mailboxes exist from here on
    ev = event("store/duplicate.json")
    ev["Records"] = ev["Records"][:1]
    body = json.loads(ev["Records"][0]["body"])
    body["header"] = inline_header(RAW)
    body["size"] = len(RAW)  # what the gateway's spooler records
    ev["Records"][0]["body"] = json.dumps(body)
    calls = counting(c)
    assert h(ev, ctx("store")) == {"batchItemFailures": []}
    assert calls == Counter({"dynamodb.GetItem": 1, "dynamodb.BatchGetItem": 2,  # + Sieve; no S3 at all
                             "dynamodb.PutItem": 2, "dynamodb.BatchWriteItem": 1, "dynamodb.UpdateItem": 4})
    stored = [m for m in _messages(s, c, "alice@example.test") if m.endswith(RAW)]
    assert len(stored) == 2 and all(m.startswith(b"Return-Path: <") for m in stored)


# --- junk: the daily store housekeeping ---------------------------------------------
def test_daily_housekeeping_sweeps_a_mailbox_whose_delete_was_never_swept(env):
    """The gateway that took a DELETE died before its sweep: the daily run releases the messages
    and their blobs (the quota was freed at DELETE), then expires Junk as before."""
    from postern import mailboxes
    from postern.store.dynamo import DynamoMailStore

    s, c = env
    store = DynamoMailStore(s, c)
    mailboxes.create(store, "alice@example.test", "Old")
    for i in range(3):
        store.append("alice@example.test", "Old", RAW)
    mailboxes.delete(store, "alice@example.test", "Old")  # no sweep after it
    assert store.usage("alice@example.test") == 0
    blobs = c.s3.list_objects_v2(Bucket=s.bucket, Prefix=s.message_prefix).get("KeyCount", 0)
    assert blobs == 3
    out = handler("junk")(event("junk/schedule.json"), ctx("JunkExpiryFunction"))
    assert out["released"] == 3 and out["errors"] == 0 and out["users"] >= 2
    assert c.s3.list_objects_v2(Bucket=s.bucket, Prefix=s.message_prefix).get("KeyCount", 0) == 0
    again = handler("junk")(event("junk/schedule.json"), ctx("JunkExpiryFunction"))
    assert again["released"] == 0  # nothing pending: the sweep is done for good


def test_daily_housekeeping_sweeps_spool_objects_past_the_window_that_no_mailbox_holds(env):
    """No bucket lifecycle rule expires the spool (a delivered message's spool object is its blob):
    the daily run deletes spool objects past the spool window that nothing references, keeps the ones
    a mailbox holds and the ones still inside the window (deliver and NDR may read them)."""
    import time

    from postern import mailboxes
    from postern.queueid import key_at
    from postern.store.dynamo import DynamoMailStore

    s, c = env
    store = DynamoMailStore(s, c)
    mailboxes.ensure_defaults(store, "alice@example.test")
    old = time.time() - (s.spool_retention_days + 2) * 86400
    held, lone, young = (key_at(s.spool_prefix, t) + "0a0b0c0d0e" for t in (old, old + 1, time.time() - 3600))
    for k in (held, lone, young):
        c.s3.put_object(Bucket=s.bucket, Key=k, Body=RAW)
    store.append("alice@example.test", "INBOX", None, spool_key=held, header=RAW[:RAW.index(b"\r\n\r\n") + 4],
                 raw_size=len(RAW), dedup=f"{held[len(s.spool_prefix):]}#alice@example.test#INBOX")
    out = handler("junk")(event("junk/schedule.json"), ctx("JunkExpiryFunction"))
    assert out["spool_swept"] == 1 and out["errors"] == 0
    left = {o["Key"] for o in c.s3.list_objects_v2(Bucket=s.bucket, Prefix=s.spool_prefix).get("Contents", [])}
    assert {held, young} <= left and lone not in left
    (meta,) = [m for m in store.list_messages(store.get_mailbox("alice@example.test", "INBOX")) if m.blob_key == held]
    assert store.read(meta).endswith(RAW)
