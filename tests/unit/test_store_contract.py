"""One contract suite, run against every mail store: in memory, and DynamoDB + S3 on moto.

What production relies on: UIDs and MODSEQs, dedup, quota, flags and keywords,
expunge and blob release, COPY and stable ids, hierarchy rename and delete
(freeing quota at once and blobs after the sweep), \\Recent arbitration, the
change log, missing blobs, concurrent appends, and a fault at every DynamoDB or
S3 write of every change (the process dies, the write is lost, or it lands and
its reply is lost) leaving a table and bucket the next writer completes, with
no spool copy of a committed APPEND left behind.
"""

from __future__ import annotations

import itertools
import os
import threading
import time

import pytest

from postern import mailboxes as MB
from postern.errors import (
    BlobMissing,
    KeywordLimit,
    MailboxExists,
    MailboxInvalid,
    MailboxLimit,
    MailboxNotFound,
    QuotaExceeded,
    StoreUnavailable,
)
from postern.items import MemoryItems
from postern.store.base import MAX_KEYWORDS, MessageMeta
from postern.store.memory import MemoryMailStore

from store_harness import FAULT_MODES, Crash, Harness, check_invariants

U = "alice@example.test"
MSG = b"From: a@example.org\r\nSubject: hi\r\nMessage-ID: <m1@example.org>\r\n\r\nbody line\r\n"


@pytest.fixture(scope="module")
def moto_env():
    """One moto for the module; each test gets its own mail table and bucket (creating every
    resource of the template per test would cost a second each)."""
    from moto import mock_aws

    from postern.aws import Clients
    from postern.config import Settings
    from postern_local.moto_atomic import install
    from postern_local.template import load_template, resources_of_type

    install()
    with mock_aws():
        clients = Clients(Settings())
        props = resources_of_type(load_template(), "AWS::DynamoDB::Table")["MailTable"]["Properties"]
        yield clients, props


_tables = itertools.count()


@pytest.fixture(params=["memory", "dynamo"])
def h(request) -> Harness:
    if request.param == "memory":
        return Harness(MemoryMailStore())
    from postern.config import Settings
    from postern.store.dynamo import DynamoMailStore

    clients, props = request.getfixturevalue("moto_env")
    n = next(_tables)
    table, bucket = f"mail-{n}", f"mail-bucket-{n}"
    clients.dynamodb.create_table(TableName=table, AttributeDefinitions=props["AttributeDefinitions"],
                                  KeySchema=props["KeySchema"], BillingMode="PAY_PER_REQUEST")
    clients.s3.create_bucket(Bucket=bucket)
    settings = Settings.from_env({**os.environ, "POSTERN_MAIL_TABLE": table, "POSTERN_BUCKET": bucket})
    return Harness(DynamoMailStore(settings, clients))


@pytest.fixture
def store(h):
    MB.ensure_defaults(h.store, U)
    return h.store


def inbox(store):
    return store.get_mailbox(U, "INBOX")


def test_first_delivery_creates_defaults_and_uids_ascend(h):
    s = h.store
    r1 = MB.append(s, U, "INBOX", MSG, prefix=b"Delivered-To: alice@example.test\r\n")
    r2 = MB.append(s, U, "inbox", MSG)
    assert (r1.uid, r2.uid) == (1, 2) and r2.modseq > r1.modseq
    names = {mb.name: mb.special_use for mb in s.list_mailboxes(U)}
    assert names == {"INBOX": None, "Sent": "\\Sent", "Drafts": "\\Drafts", "Trash": "\\Trash",
                     "Junk": "\\Junk", "Archive": "\\Archive"}
    assert set(s.list_subscriptions(U)) == set(names)
    mb = inbox(s)
    assert (mb.exists, mb.uidnext, mb.unseen, mb.highestmodseq) == (2, 3, 2, r2.modseq)
    assert mb.size == len(MSG) * 2 + len(b"Delivered-To: alice@example.test\r\n")
    check_invariants(h, U)


def test_read_is_prefix_plus_original_bytes(store):
    prefix = b"Return-Path: <a@example.org>\r\n"
    store.append(U, "INBOX", MSG, prefix=prefix)
    (meta,) = list(store.list_messages(inbox(store)))
    assert store.read(meta) == prefix + MSG and meta.size == len(prefix + MSG)
    assert meta.header == prefix + MSG[: MSG.index(b"\r\n\r\n") + 4]
    assert store.read(meta, 5, 20) == (prefix + MSG)[5:20]
    assert store.read(meta, len(prefix) + 2, meta.size - 3) == (prefix + MSG)[len(prefix) + 2: -3]


def test_dedup_key_makes_append_idempotent(store):
    a = store.append(U, "INBOX", MSG, dedup="q1#alice")
    b = store.append(U, "INBOX", MSG, dedup="q1#alice")
    assert b.duplicate and (b.uid, b.email_id, b.modseq) == (a.uid, a.email_id, a.modseq)
    assert inbox(store).exists == 1


def test_quota_is_permanent_failure(h, store):
    store.append(U, "INBOX", MSG, quota=len(MSG) * 2)
    store.append(U, "INBOX", MSG, quota=len(MSG) * 2)
    with pytest.raises(QuotaExceeded):
        store.append(U, "INBOX", MSG, quota=len(MSG) * 2)
    assert inbox(store).exists == 2 and store.usage(U) == 2 * len(MSG)
    assert not h.blob_keys(store.spool_prefix), "a refused APPEND left its bytes behind"
    check_invariants(h, U)


def test_flags_changes_since_unseen_and_unchangedsince(store):
    for _ in range(3):
        store.append(U, "INBOX", MSG)
    mb = inbox(store)
    metas = list(store.list_messages(mb))
    base = mb.highestmodseq
    res = store.store_flags(mb, metas[:2], ["\\Seen", "$Work"], "add")
    assert [c.uid for c in res.changed] == [1, 2] and all(c.modseq > base for c in res.changed)
    assert res.keywords == {"$Work"}
    changed = store.changes_since(mb, base)
    assert [m.uid for m in changed] == [1, 2] and changed[0].flags == {"\\Seen", "$Work"}
    mb = inbox(store)
    assert mb.unseen == 1 and mb.keywords == {"$Work"}
    again = store.store_flags(mb, metas[:2], ["\\Seen"], "add")  # no change: no new MODSEQ (RFC 7162)
    assert not again.changed and inbox(store).highestmodseq == mb.highestmodseq
    res = store.store_flags(mb, metas[:1], ["\\Flagged"], "add", unchanged_since=base)
    assert res.failed == [1] and not res.changed  # RFC 7162 §3.1.3
    res = store.store_flags(mb, metas[:1], [], "replace")
    assert res.changed[0].flags == frozenset() and inbox(store).unseen == 2


def test_keywords_are_bounded_per_mailbox(store):
    store.append(U, "INBOX", MSG)
    mb = inbox(store)
    metas = list(store.list_messages(mb))
    store.store_flags(mb, metas, [f"$k{i}" for i in range(MAX_KEYWORDS)], "add")
    with pytest.raises(KeywordLimit):
        store.store_flags(mb, metas, ["$one-too-many"], "add")
    with pytest.raises(KeywordLimit):
        store.append(U, "INBOX", MSG, flags=["$another"])
    store.store_flags(mb, metas, ["$k0"], "remove")
    assert store.store_flags(mb, metas, ["$k0"], "add").changed  # a known keyword is fine
    assert len(inbox(store).keywords) == MAX_KEYWORDS


def test_expunge_leaves_tombstones_frees_quota_and_blob(h, store):
    for _ in range(3):
        store.append(U, "INBOX", MSG)
    mb = inbox(store)
    metas = list(store.list_messages(mb))
    base = mb.highestmodseq
    assert store.expunge(mb, [metas[1]]) == [2]
    assert store.expunge(mb, [metas[1]]) == []
    assert [m.uid for m in store.list_messages(mb)] == [1, 3]
    assert [(m.uid, m.expunged) for m in store.changes_since(mb, base)] == [(2, True)]
    mb = inbox(store)
    assert (mb.exists, mb.uidnext) == (2, 4) and store.usage(U) == 2 * len(MSG)
    assert metas[1].blob_key not in h.blob_keys()
    check_invariants(h, U)


def test_copy_keeps_email_and_thread_ids_and_shares_the_blob_until_the_last_reference(h, store):
    a = store.append(U, "INBOX", MSG)
    mb = inbox(store)
    metas = list(store.list_messages(mb))
    dest, pairs = store.copy(mb, metas, "Archive")
    assert pairs == [(1, 1)] and dest.exists == 1
    trash, _ = store.copy(dest, list(store.list_messages(dest)), "Trash")
    (copied,) = list(store.list_messages(dest))
    assert (copied.email_id, copied.thread_id, copied.blob_key) == (a.email_id, a.thread_id, metas[0].blob_key)
    assert copied.blob_id == metas[0].blob_id != ""
    store.expunge(mb, metas)  # COPY-then-expunge: the copy lives on, same id, same bytes
    assert store.read(copied) == MSG
    check_invariants(h, U)
    store.expunge(dest, [copied])
    assert metas[0].blob_key in h.blob_keys()  # Trash still holds it
    store.expunge(trash, list(store.list_messages(trash)))
    assert metas[0].blob_key not in h.blob_keys()  # the last reference released it
    assert store.usage(U) == 0
    check_invariants(h, U)


def test_find_emails_reads_the_email_id_index_not_the_mailboxes(h, store):
    a = store.append(U, "INBOX", MSG, flags=["\\Seen"])
    b = store.append(U, "INBOX", MSG.replace(b"<m1@", b"<m2@"))
    mb = inbox(store)
    dest, _ = store.copy(mb, store.get_messages(mb, [a.uid]), "Archive")
    found = store.find_emails(U, [a.email_id, b.email_id, "Enothere000000000000000000"])
    assert set(found) == {a.email_id, b.email_id}
    assert sorted(mbid for mbid, _ in found[a.email_id]) == sorted([mb.mailbox_id, dest.mailbox_id])
    (where, meta), = found[b.email_id]
    assert (where, meta.uid, meta.email_id, meta.light) == (mb.mailbox_id, b.uid, b.email_id, False)
    assert meta.prefix == b"" and store.read(meta).endswith(b"body line\r\n")  # full metadata: readable as is
    assert all(m.flags == frozenset({"\\Seen"}) for _, m in found[a.email_id])
    store.expunge(mb, store.get_messages(mb, [a.uid]))  # MOVE's second half: the copy alone remains
    assert [mbid for mbid, _ in store.find_emails(U, [a.email_id])[a.email_id]] == [dest.mailbox_id]
    MB.delete(store, U, "Archive")  # until the sweep, the JMAP view leaves out mailboxes that are gone
    store.sweep(U)
    assert store.find_emails(U, [a.email_id]) == {}
    check_invariants(h, U)


def test_copy_is_all_or_nothing(h, store):
    for _ in range(3):
        store.append(U, "INBOX", MSG)
    mb = inbox(store)
    with pytest.raises(QuotaExceeded):
        store.copy(mb, list(store.list_messages(mb)), "Archive", quota=len(MSG) * 4)
    assert store.get_mailbox(U, "Archive").exists == 0
    with pytest.raises(MailboxNotFound):
        store.copy(mb, list(store.list_messages(mb)), "Nope")
    check_invariants(h, U)


def test_two_copies_of_one_blob_copied_in_one_change_each_keep_their_reference(h, store):
    """A message and its self-copy (one blob) copied together: each new copy holds a reference, so the last
    one left still reads after the others are expunged (the blob's reference update ran once per change)."""
    store.append(U, "INBOX", MSG)
    mb = inbox(store)
    store.copy(mb, list(store.list_messages(mb)), "INBOX")  # INBOX 1 and 2 share the blob
    mb = inbox(store)
    dest, pairs = store.copy(mb, list(store.list_messages(mb)), "Archive")
    assert len(pairs) == 2
    check_invariants(h, U)
    store.expunge(mb, list(store.list_messages(mb)))
    (first, last) = store.list_messages(dest)
    store.expunge(dest, [first])
    assert store.read(last) == MSG  # was BlobMissing: the blob went with the reference it never got
    check_invariants(h, U)


def test_a_users_copy_into_junk_is_junk_and_out_of_it_not_junk_in_the_same_change(h, store):
    """postern.junk through copy(by_user=True): $Junk set and $NotJunk cleared (any case) on the copy into
    Junk, the reverse out of it (not into Trash); the server's own copies keep the flags as they were."""
    store.append(U, "INBOX", MSG, flags=["\\Seen", "$notjunk", "Work"])
    mb = inbox(store)
    hm = store.get_mailbox(U, "Junk").highestmodseq
    junk, pairs = store.copy(mb, list(store.list_messages(mb)), "Junk", by_user=True)
    (m,) = store.get_messages(junk, [pairs[0][1]])
    assert m.flags == {"\\Seen", "$Junk", "Work"} and m.modseq == junk.highestmodseq > hm  # one change
    assert "$Junk" in junk.keywords
    back, pairs = store.copy(junk, [m], "INBOX", by_user=True)
    assert store.get_messages(back, [pairs[0][1]])[0].flags == {"\\Seen", "$NotJunk", "Work"}
    trash, pairs = store.copy(junk, [m], "Trash", by_user=True)  # deleting spam says nothing about it
    assert store.get_messages(trash, [pairs[0][1]])[0].flags == {"\\Seen", "$Junk", "Work"}
    server, pairs = store.copy(mb, list(store.list_messages(mb)), "Junk")  # not the user's: flags as they were
    assert store.get_messages(server, [pairs[0][1]])[0].flags == {"\\Seen", "$notjunk", "Work"}
    again, pairs = store.copy(junk, [m], "Junk", by_user=True)  # within Junk: nothing to say
    assert store.get_messages(again, [pairs[0][1]])[0].flags == m.flags
    check_invariants(h, U)


def test_replies_join_their_parents_thread(store):
    a = store.append(U, "INBOX", MSG)
    b = store.append(U, "INBOX", b"Subject: re\r\nMessage-ID: <m2@x>\r\nIn-Reply-To: <m1@example.org>\r\n\r\nx\r\n")
    c = store.append(U, "INBOX", b"Subject: re re\r\nReferences: <m1@example.org> <m2@x>\r\n\r\nx\r\n")
    d = store.append(U, "INBOX", b"Subject: other\r\n\r\nx\r\n")
    assert a.thread_id == b.thread_id == c.thread_id != d.thread_id
    assert len({a.email_id, b.email_id, c.email_id, d.email_id}) == 4


def test_a_thread_root_is_named_not_indexed_and_replies_join_it_in_any_order(h, store):
    """A message that replies to nothing writes no thread index item (one write less per delivery):
    its thread is named after its own Message-ID, which is what a reply names when it finds nothing
    indexed, even when the reply arrives first (RFC 5322 §3.6.4: References starts with the root)."""
    late_reply = store.append(U, "INBOX", b"Message-ID: <r1@x>\r\nReferences: <root@x>\r\n\r\nx\r\n")
    root = store.append(U, "INBOX", b"Message-ID: <root@x>\r\n\r\nx\r\n")
    deep = store.append(U, "INBOX", b"Message-ID: <r3@x>\r\nIn-Reply-To: <r2@x>\r\n"
                                    b"References: <root@x> <r2@x>\r\n\r\nx\r\n")
    child = store.append(U, "INBOX", b"Message-ID: <r4@x>\r\nIn-Reply-To: <r3@x>\r\n\r\nx\r\n")
    other = store.append(U, "INBOX", b"Message-ID: <other@x>\r\n\r\nx\r\n")
    assert late_reply.thread_id == root.thread_id == deep.thread_id == child.thread_id != other.thread_id
    thread_items = {k for k in h.items() if k[0].startswith("T#")}
    assert len(thread_items) == 3  # the three replies; neither root
    MB.ensure_defaults(store, "bob@example.test")
    again = store.append("bob@example.test", "INBOX", b"Message-ID: <root@x>\r\n\r\nx\r\n")
    assert again.thread_id != root.thread_id  # thread ids are the account's own


def test_hierarchy_create_rename_delete(h, store):
    MB.create(store, U, "Work/Projects/2024")
    assert {"Work", "Work/Projects", "Work/Projects/2024"} <= {m.name for m in store.list_mailboxes(U)}
    with pytest.raises(MailboxExists):
        MB.create(store, U, "Work/Projects")
    store.append(U, "Work/Projects", MSG)
    before = store.get_mailbox(U, "Work/Projects")
    moved = MB.rename(store, U, "Work", "Old/Work")
    assert moved == [("Work", "Old/Work"), ("Work/Projects", "Old/Work/Projects"),
                     ("Work/Projects/2024", "Old/Work/Projects/2024")]
    names = {m.name for m in store.list_mailboxes(U)}
    assert {"Old", "Old/Work", "Old/Work/Projects", "Old/Work/Projects/2024"} <= names
    assert not any(n.startswith("Work") for n in names)
    after = store.get_mailbox(U, "Old/Work/Projects")
    assert (after.mailbox_id, after.uidvalidity, after.exists) == (before.mailbox_id, before.uidvalidity, 1)
    assert store.get_mailbox_by_id(U, before.mailbox_id).name == "Old/Work/Projects"
    with pytest.raises(MailboxNotFound):
        store.get_mailbox(U, "Work/Projects")
    with pytest.raises(MailboxInvalid):
        MB.rename(store, U, "Old", "Old/Inner")
    MB.delete(store, U, "Old/Work/Projects")
    with pytest.raises(MailboxInvalid):
        MB.delete(store, U, "INBOX")
    with pytest.raises(MailboxNotFound):
        store.append(U, "Nope", MSG)
    store.sweep(U)
    check_invariants(h, U)


def test_rename_inbox_moves_messages_and_leaves_it_empty(h, store):
    store.append(U, "INBOX", MSG)
    old = inbox(store)
    MB.rename(store, U, "INBOX", "Old")
    moved = store.get_mailbox(U, "Old")
    assert moved.exists == 1 and (moved.mailbox_id, moved.uidvalidity) == (old.mailbox_id, old.uidvalidity)
    new = inbox(store)
    assert new.exists == 0 and new.uidvalidity != old.uidvalidity and new.mailbox_id != old.mailbox_id
    assert store.read(next(iter(store.list_messages(moved)))) == MSG
    check_invariants(h, U)


def test_delete_frees_quota_at_once_and_blobs_after_the_sweep(h, store):
    MB.create(store, U, "Big")
    for _ in range(5):
        store.append(U, "Big", MSG)
    store.append(U, "INBOX", MSG)
    keep = list(store.list_messages(inbox(store)))[0].blob_key
    assert store.usage(U) == 6 * len(MSG)
    MB.delete(store, U, "Big")
    assert store.usage(U) == len(MSG)  # RFC 9208: deleting a mailbox frees its storage
    assert "Big" not in {m.name for m in store.list_mailboxes(U)}
    assert len(h.blob_keys()) == 6  # not yet released
    assert store.sweep(U) == 5
    assert h.blob_keys() == {keep}
    MB.create(store, U, "Big")  # the name is free again, with a new UIDVALIDITY
    assert store.get_mailbox(U, "Big").exists == 0
    check_invariants(h, U)


def test_subscriptions_and_the_one_name_validator(store):
    MB.subscribe(store, U, "Work")  # the mailbox need not exist (RFC 3501 §6.3.6)
    MB.subscribe(store, U, "inbox")
    assert {"Work", "INBOX"} <= set(store.list_subscriptions(U))
    MB.unsubscribe(store, U, "Work")
    assert "Work" not in store.list_subscriptions(U)
    for bad in ["a\x00b", "x*", "y%z", "a//b", "/a", "", "é" * 300, "a/" * 40 + "a", "tab\there"]:
        with pytest.raises(MailboxInvalid):
            MB.subscribe(store, U, bad)
        with pytest.raises(MailboxInvalid):
            MB.create(store, U, bad)


def test_light_listing_and_get_messages(store):
    for _ in range(3):
        store.append(U, "INBOX", MSG, flags=["\\Seen"])
    mb = inbox(store)
    light = list(store.list_messages(mb, since_uid=1, light=True))
    assert [m.uid for m in light] == [2, 3]
    assert all(m.flags == {"\\Seen"} and m.size == len(MSG) for m in light)
    full = store.get_messages(mb, [3, 1, 99])
    assert [m.uid for m in full] == [1, 3] and full[0].header is not None


def test_append_from_inline_header_equals_append_from_bytes(h, store):
    """The store Lambda indexes from the gateway's inline header; the result must match a full append."""
    from postern.store.summary import decode_inline_header, inline_header

    prefix = b"Delivered-To: alice@example.test\r\n"
    store.blobs.put("spool/q9", MSG)
    header = decode_inline_header(inline_header(MSG))
    store.append(U, "INBOX", None, spool_key="spool/q9", header=header, raw_size=len(MSG), prefix=prefix, dedup="q9#a")
    store.append(U, "INBOX", MSG, prefix=prefix)
    a, b = list(store.list_messages(inbox(store)))
    assert (a.size, a.header, a.header_len, a.raw_size) == (b.size, b.header, b.header_len, b.raw_size)
    assert store.read(a) == store.read(b) == prefix + MSG
    with pytest.raises(ValueError):
        store.append(U, "INBOX", None, header=header, raw_size=len(MSG))  # no spool object to point at
    check_invariants(h, U)


def test_a_missing_blob_is_one_domain_error(h, store):
    store.append(U, "INBOX", MSG)
    (meta,) = store.get_messages(inbox(store), [1])
    store.blobs.delete(meta.blob_key)
    with pytest.raises(BlobMissing):
        store.read(meta, 0, meta.size)  # past the stored header block: needs the blob
    with pytest.raises(BlobMissing):
        store.read_spool("spool/never-written")


def test_recent_is_claimed_once_across_sessions_and_tasks(h, store):
    for _ in range(3):
        store.append(U, "INBOX", MSG)
    mb = inbox(store)
    other_task = h.twin()
    assert store.claim_recent(mb, 2) == 0  # this session owns UIDs 1..2
    assert other_task.claim_recent(mb, 3) == 2  # the other owns 3
    assert store.claim_recent(mb, 3) == 3  # nothing left
    assert inbox(store).recent_uid == 3


def test_the_change_log_is_self_describing_and_in_order(store):
    pos = inbox(store).pos
    r = store.append(U, "INBOX", MSG, flags=["$Label"])
    mb = inbox(store)
    store.store_flags(mb, list(store.list_messages(mb)), ["\\Seen"], "add")
    store.expunge(mb, list(store.list_messages(mb)))
    MB.create(store, U, "X")
    changes = store.follow(U, pos)
    assert [c.modseq for c in changes] == list(range(pos + 1, pos + 5))
    assert [c.kind for c in changes] == ["append", "flags", "expunge", "create"]
    app = changes[0]
    assert app.mailbox_id == mb.mailbox_id and app.keywords == {"$Label"}
    assert (app.messages[0].uid, app.messages[0].email_id, app.messages[0].size) == (1, r.email_id, len(MSG))
    assert changes[1].messages[0].flags == {"\\Seen", "$Label"}
    assert changes[2].messages[0].expunged
    assert changes[3].names[0][2] == "X"


def test_concurrent_appends_get_distinct_uids(h, store):
    errors = []

    def deliver(n):
        try:
            for i in range(4):
                store.append(U, "INBOX", MSG, dedup=f"q{n}-{i}#alice")
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=deliver, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    mb = inbox(store)
    assert [m.uid for m in store.list_messages(mb)] == list(range(1, 17)) and mb.exists == 16
    check_invariants(h, U)


OPERATIONS = {
    "append": lambda s: s.append(U, "INBOX", MSG, flags=["$New"]),
    "delivery": lambda s: MB.append(s, U, "INBOX", None, spool_key="spool/q1", header=MSG[:70], raw_size=len(MSG),
                                     dedup="q1#alice#INBOX"),
    "flags": lambda s: s.store_flags(inbox(s), list(s.list_messages(inbox(s))), ["\\Seen", "$K"], "add"),
    "expunge": lambda s: s.expunge(inbox(s), list(s.list_messages(inbox(s)))[:2]),
    "copy": lambda s: s.copy(inbox(s), list(s.list_messages(inbox(s))), "Archive"),
    "rename": lambda s: MB.rename(s, U, "Work", "Old/Work"),
    "rename-inbox": lambda s: MB.rename(s, U, "INBOX", "Moved"),
    "delete": lambda s: MB.delete(s, U, "Work"),
    "create": lambda s: MB.create(s, U, "New/Deep/Box"),
}


def _seed(s) -> None:
    MB.ensure_defaults(s, U)
    MB.create(s, U, "Work/Sub")
    s.blobs.put("spool/q1", MSG)
    for i in range(3):
        s.append(U, "INBOX", MSG, flags=["\\Seen"] if i == 0 else [])
    s.append(U, "Work", MSG)
    s.copy(inbox(s), list(s.list_messages(inbox(s)))[:1], "Trash")


# The engine is one implementation over both item layers; every fault point of every operation runs
# in memory, and the DynamoDB layer (whose conditions and updates the in-memory twin mirrors) for two.
FAULTS = [pytest.param(op, mode, "memory", id=f"{op}-{mode}-memory") for op in sorted(OPERATIONS)
          for mode in FAULT_MODES] + [
    pytest.param(op, "crash", "dynamo", id=f"{op}-crash-dynamo") for op in ("delivery", "rename")]


@pytest.mark.parametrize(("op", "mode", "h"), FAULTS, indirect=["h"])
def test_a_fault_at_any_write_is_completed_by_the_next_writer(h, op, mode):
    """Fail the writer's 1st, 2nd, ... write (DynamoDB or S3): the process dies there (crash), or the
    write is lost, or it is applied and its reply lost (both StoreUnavailable to the caller, whose
    error handling then runs). The next writer finishes the change (or it never happened), and the
    table, counters, quota, blobs and spool copies agree. No transaction involved."""
    _seed(h.store)
    check_invariants(h, U)
    base = h.items()
    # every write in memory; on moto (seconds per point) the first writes and a spread of later ones
    points = range(1, 60) if isinstance(h.store.items, MemoryItems) else (1, 2, 3, 4, 6, 9, 13, 18, 25, 35, 50)
    for fail_at in points:
        faulty, faults = h.faulty(fail_at, mode)
        try:
            OPERATIONS[op](faulty)
        except Crash:
            pass
        except StoreUnavailable:
            assert mode != "crash" and faults.fired  # the injected fault, passed on as the domain error
        if not faults.fired:
            break  # the operation needs fewer writes: every fault point was tried
        after = h.twin()
        after.append(U, "Drafts", MSG)  # the next writer of the account
        after.sweep(U)
        check_invariants(h, U)
        _reset(h, base)
    else:
        pytest.fail("operation never completed")
    assert fail_at > 2


def test_a_commit_whose_reply_was_lost_is_not_made_twice(h):
    """The change record is written but its reply lost: the append raises StoreUnavailable, the
    next writer finds and completes it, and its spool copy goes; the message exists once."""
    MB.ensure_defaults(h.store, U)
    faulty, _ = h.faulty(2, "ambiguous")  # 1 spool copy, 2 the change record
    with pytest.raises(StoreUnavailable):
        faulty.append(U, "INBOX", MSG)
    h.twin().append(U, "Drafts", MSG)
    assert inbox(h.store).exists == 1
    check_invariants(h, U)


def _expiring_rules() -> list[dict]:
    from postern_local.template import load_template, resources_of_type

    bucket = resources_of_type(load_template(), "AWS::S3::Bucket")
    rules = [r for b in bucket.values() for r in b["Properties"].get("LifecycleConfiguration", {}).get("Rules", ())]
    return [r for r in rules if r.get("Status") == "Enabled" and r.get("ExpirationInDays")]


def test_bucket_lifecycle_expires_append_bytes_but_never_a_delivered_spool_object():
    """An APPEND whose change never committed leaves its bytes only under the spool prefix's ``a/``, which
    the bucket's lifecycle rule expires: no orphan for good. A delivered message's spool object is its
    mailbox blob, so no expiring rule may cover ``spool/<queue id>`` (the spool sweep does that job)."""
    from postern.config import Settings
    from postern.queueid import new_queue_id
    from postern.store.engine import APPEND_SPOOL

    spool = Settings().spool_prefix
    rules = _expiring_rules()
    assert all(r.get("Prefix") for r in rules), rules  # no rule expires the whole bucket
    assert any(f"{spool}{APPEND_SPOOL}E1".startswith(r["Prefix"]) for r in rules), rules
    assert not any(f"{spool}{new_queue_id()}".startswith(r["Prefix"]) for r in rules), rules


def test_spool_window_sweep_and_references_never_delete_a_message_a_mailbox_holds(h):
    """The spool object is the stored message (no copy). Past the spool window, the bucket's expiring
    rules and the spool sweep run: every object a mailbox references stays readable (shared by two
    accounts, COPYed), an unreferenced one goes; inside the window nothing goes, even unreferenced or
    expunged (deliver/NDR may still read it); the last reference to an old one deletes it at once."""
    import secrets

    from postern.queueid import key_at

    s = h.store
    V = "victor@example.test"
    for u in (U, V):
        MB.ensure_defaults(s, u)
    now = time.time()
    header = MSG[: MSG.index(b"\r\n\r\n") + 4]

    def spooled(days_ago: float) -> str:
        key = key_at(s.spool_prefix, now - days_ago * 86400) + secrets.token_hex(5)
        s.blobs.put(key, MSG)
        return key

    def deliver(key: str, user: str) -> None:
        qid = key[len(s.spool_prefix):]
        s.append(user, "INBOX", None, spool_key=key, header=header, raw_size=len(MSG), dedup=f"{qid}#{user}#INBOX")

    old_copied, old_shared, old_gone, old_lone, young_gone, young_lone = (
        spooled(18), spooled(18), spooled(18), spooled(18), spooled(1), spooled(1))  # window 14 days
    deliver(old_copied, U)
    s.copy(inbox(s), list(s.list_messages(inbox(s))), "Archive")
    deliver(old_shared, U)
    deliver(old_shared, V)
    deliver(old_gone, U)
    deliver(young_gone, U)
    mine = {m.blob_key: m for m in s.list_messages(inbox(s))}
    assert set(mine) == {old_copied, old_shared, old_gone, young_gone}  # referenced in place: no copy
    assert not h.blob_keys(s.message_prefix)
    s.expunge(inbox(s), [mine[old_gone], mine[young_gone], mine[old_shared]])
    assert not s.blobs.exists(old_gone)  # past the window, last reference: deleted at once
    assert s.blobs.exists(young_gone)  # inside the window: kept for the pipeline

    for r in _expiring_rules():  # what the bucket lifecycle would expire by then (every object is old enough)
        for k in h.blob_keys(r["Prefix"]):
            s.blobs.delete(k)
    assert s.sweep_spool(now) == 1  # old_lone: past the window (and a day), no reference
    left = h.blob_keys(s.spool_prefix)
    assert left == {old_copied, old_shared, young_gone, young_lone}
    for box, user in ((inbox(s), U), (s.get_mailbox(U, "Archive"), U), (s.get_mailbox(V, "INBOX"), V)):
        for m in s.list_messages(box):
            assert s.read(m) == MSG, (user, box.name)
    assert s.sweep_spool(now + 16 * 86400) == 2  # the young ones' window has passed: unreferenced, both go
    assert h.blob_keys(s.spool_prefix) == {old_copied, old_shared}
    check_invariants(h, U)
    check_invariants(h, V)
    for box in (inbox(s), s.get_mailbox(U, "Archive")):
        s.expunge(box, list(s.list_messages(box)))
    assert h.blob_keys(s.spool_prefix) == {old_shared}  # V still holds it
    s.expunge(s.get_mailbox(V, "INBOX"), list(s.list_messages(s.get_mailbox(V, "INBOX"))))
    assert not h.blob_keys(s.spool_prefix)
    check_invariants(h, U)


def _reset(h, base) -> None:
    """Back to the seeded table (and its blobs) for the next crash point."""
    now = h.items()
    for k in set(now) - set(base):
        h.store.items.delete({"pk": k[0], "sk": k[1]})
    for k, v in base.items():
        if now.get(k) != v:
            h.store.items.put(v)
    referenced = {i["bl"] for i in base.values() if "bl" in i and not i.get("x") and i["sk"] != "#"}
    for key in h.blob_keys() - referenced:
        h.store.blobs.delete(key)
    for key in referenced - h.blob_keys():
        h.store.blobs.put(key, MSG)


def test_readers_see_a_half_done_rename_as_done(h):
    """RENAME committed, its writer killed before any name moved: IMAP shows the new names at once."""
    _seed(h.store)
    crashing = h.crashing(2)  # write 1 is the change record itself
    with pytest.raises(Crash):
        MB.rename(crashing, U, "Work", "Old/Work")
    names = {m.name for m in h.store.list_mailboxes(U)}
    assert {"Old/Work", "Old/Work/Sub", "Old"} <= names and "Work" not in names
    assert h.store.get_mailbox(U, "Old/Work").exists == 1
    with pytest.raises(MailboxNotFound):
        h.store.get_mailbox(U, "Work/Sub")


def test_a_reader_missing_a_committed_message_rolls_it_forward(h):
    _seed(h.store)
    mb = inbox(h.store)
    with pytest.raises(Crash):
        h.crashing(3).append(U, "INBOX", MSG)  # 1 spool copy, 2 change record: killed before its entry
    (ch,) = h.store.follow(U, mb.pos)  # a watcher sees it in the log...
    uid = ch.messages[0].uid
    (meta,) = h.store.get_messages(mb, [uid])  # ...and a FETCH finds it
    assert h.store.read(meta) == MSG
    check_invariants(h, U)


def test_unsupported_mailbox_changes_are_refused_cleanly(store):
    with pytest.raises(MailboxExists):
        MB.create(store, U, "inbox")
    with pytest.raises(MailboxExists):
        MB.rename(store, U, "Sent", "INBOX")
    with pytest.raises(MailboxNotFound):
        MB.rename(store, U, "Nope", "Other")
    with pytest.raises(MailboxExists):
        MB.rename(store, U, "Sent", "Trash")
    with pytest.raises(MailboxNotFound):
        store.expunge(store.get_mailbox(U, "Sent").__class__(U, "Gone", "no-such-id", 1),
                      [MessageMeta(uid=1, modseq=1)])


def test_mailboxes_per_account_and_names_per_change_are_bounded(h, store, monkeypatch):
    """NO [LIMIT] past MAX_MAILBOXES (superiors count), and a RENAME whose change record would pass
    DynamoDB's item size is refused before any write: nothing changes."""
    from postern.store import records

    have = len(store.list_mailboxes(U))
    monkeypatch.setattr(MB, "MAX_MAILBOXES", have + 2)
    MB.create(store, U, "A")
    with pytest.raises(MailboxLimit):
        MB.create(store, U, "B/C")  # B and B/C: one too many
    MB.create(store, U, "B")
    with pytest.raises(MailboxLimit):
        MB.rename(store, U, "B", "New/B")  # would create the superior New
    for name in ("A", "Later/One"):  # subscriptions need no mailbox, so they have their own count
        MB.subscribe(store, U, name)
    MB.subscribe(store, U, "A")  # already subscribed: no new item
    with pytest.raises(MailboxLimit):
        MB.subscribe(store, U, "Later/Two")
    monkeypatch.setattr(MB, "MAX_MAILBOXES", 1000)
    for i in range(12):
        MB.create(store, U, f"A/child-{i:02d}-" + "x" * 40)
    before = {m.name for m in store.list_mailboxes(U)}
    monkeypatch.setattr(records, "MAX_RECORD_BYTES", 1500)
    with pytest.raises(MailboxLimit):
        MB.rename(store, U, "A", "Z")
    assert {m.name for m in store.list_mailboxes(U)} == before
    check_invariants(h, U)


def test_inline_header_is_left_out_when_large():
    from postern.store.summary import INLINE_HEADER_CAP, inline_header

    big = b"X-Big: " + b"a" * INLINE_HEADER_CAP + b"\r\n\r\nbody\r\n"
    assert inline_header(big) == ""


def test_newest_first_pages_and_date_order_fields(store):
    """list_messages_desc is list_messages reversed across its page boundary (64) and past tombstones;
    sorted_above / self_copied follow appends out of date order, ties and a copy into the same mailbox
    (records.order_fields), and expunges leave them alone."""
    for i in range(70):
        MB.append(store, U, "INBOX", MSG, internaldate=1_700_000_000.0 + i)
    mb = inbox(store)
    assert (mb.sorted_above, mb.self_copied) == (0, False)
    store.expunge(mb, [m for m in store.list_messages(mb) if m.uid % 5 == 0 or m.uid > 66])
    mb = inbox(store)
    assert [m.uid for m in store.list_messages_desc(mb)] == [m.uid for m in store.list_messages(mb)][::-1]
    assert mb.sorted_above == 0 and len(list(store.list_messages_desc(mb))) == mb.exists == 53
    MB.append(store, U, "INBOX", MSG, internaldate=1_700_000_069.0)  # later than every live one, not the latest
    assert inbox(store).sorted_above == 71
    MB.append(store, U, "INBOX", MSG, internaldate=1_700_000_100.0)
    MB.append(store, U, "INBOX", MSG, internaldate=1_700_000_100.0)  # a tie
    assert inbox(store).sorted_above == 73
    store.copy(inbox(store), list(store.list_messages(inbox(store)))[:1], "INBOX")
    mb = inbox(store)
    assert (mb.sorted_above, mb.self_copied) == (74, True)
    assert [m.uid for m in store.list_messages_desc(mb)][:3] == [74, 73, 72]


def test_a_deliverys_marker_rides_in_its_spool_objects_item_and_outlives_the_message_in_the_window(h):
    """A delivery writes its spool object's ``B#`` reference anyway: its dedup marker rides there (no
    ``X#`` item: one write unit less per delivery). Only the first few do, so the item stays under 1 KB
    (each update of a bigger item costs more); the rest write ``X#``. Every delivery run again is a
    duplicate, before and after the message is expunged inside the spool window; past the window the
    spool sweep deletes the object and what is left of its item."""
    import json
    import secrets

    from postern import keys
    from postern.queueid import key_at
    from postern.store import records as R

    s = h.store
    now = time.time()
    key = key_at(s.spool_prefix, now) + secrets.token_hex(5)
    qid = key[len(s.spool_prefix):]
    s.blobs.put(key, MSG)
    header = MSG[: MSG.index(b"\r\n\r\n") + 4]
    users = [f"u{i}@example.test" for i in range(R.DEDUP_IN_BLOB + 1)]

    def deliver(user: str):
        return MB.append(s, user, "INBOX", None, spool_key=key, header=header, raw_size=len(MSG),
                         dedup=f"{qid}#{user}#INBOX")

    first = {u: deliver(u) for u in users}
    items = h.items()
    blob = items[tuple(keys.blob_key(key).values())]
    assert set(R.dedup_markers(blob)) == {f"{u}#INBOX" for u in users[: R.DEDUP_IN_BLOB]}
    assert {sk for (pk, sk) in items if pk == keys.dedup_pk(qid)} == {f"{u}#INBOX" for u in users[R.DEDUP_IN_BLOB:]}
    assert len(json.dumps(blob, default=sorted)) < 1024  # one write unit per update
    for u in users:
        again = deliver(u)
        assert again.duplicate and (again.uid, again.modseq, again.email_id, again.thread_id) == (
            first[u].uid, first[u].modseq, first[u].email_id, first[u].thread_id)
        box = s.get_mailbox(u, "INBOX")
        assert box.exists == 1
        s.expunge(box, list(s.list_messages(box)))
    assert s.blobs.exists(key)  # inside the window: the pipeline may still read it
    for u in users:
        assert deliver(u).duplicate and s.get_mailbox(u, "INBOX").exists == 0, u
        check_invariants(h, u)
    assert s.sweep_spool(now + 16 * 86400) == 1
    assert not s.blobs.exists(key) and tuple(keys.blob_key(key).values()) not in h.items()


@pytest.mark.parametrize("h", ["memory", "dynamo"], indirect=True)
def test_a_delivery_run_again_after_a_fault_at_any_write_stores_it_once_and_completes_it(h):
    """SQS runs a store job again when its first run died: at whatever write the first run died, the
    second stores the message exactly once and leaves the account materialised (a duplicate found by its
    marker rolls forward the change its first run left unfinished), without another writer's help."""
    _seed(h.store)
    base = h.items()
    points = range(1, 40) if isinstance(h.store.items, MemoryItems) else (1, 2, 3, 4, 5, 6, 40)
    for fail_at in points:
        faulty, faults = h.faulty(fail_at, "crash")
        try:
            OPERATIONS["delivery"](faulty)
        except Crash:
            pass
        if not faults.fired:
            break
        OPERATIONS["delivery"](h.twin())  # the job, run again
        check_invariants(h, U)  # before any reader (a reader that misses an item repairs the account)
        assert inbox(h.store).exists == 4, fail_at
        _reset(h, base)
    else:
        pytest.fail("the delivery never completed")
    assert fail_at > 3
