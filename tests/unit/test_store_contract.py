"""One contract suite, run against every MailStore implementation."""

from __future__ import annotations

import pytest

from postern.errors import MailboxExists, MailboxInvalid, MailboxNotFound, QuotaExceeded
from postern.store.memory import MemoryMailStore

U = "alice@example.test"
MSG = b"From: a@example.org\r\nSubject: hi\r\n\r\nbody line\r\n"


@pytest.fixture(params=["memory", "dynamo"])
def store(request):
    if request.param == "memory":
        return MemoryMailStore()
    return request.getfixturevalue("dynamo_store")


def test_first_delivery_creates_defaults_and_uids_ascend(store):
    r1 = store.append(U, "INBOX", MSG, prefix=b"Delivered-To: alice@example.test\r\n")
    r2 = store.append(U, "inbox", MSG)
    assert (r1.uid, r2.uid) == (1, 2)
    assert r2.modseq > r1.modseq
    names = {mb.name: mb.special_use for mb in store.list_mailboxes(U)}
    assert names == {"INBOX": None, "Sent": "\\Sent", "Drafts": "\\Drafts", "Trash": "\\Trash",
                     "Junk": "\\Junk", "Archive": "\\Archive"}
    mb = store.get_mailbox(U, "INBOX")
    assert (mb.exists, mb.uidnext, mb.unseen) == (2, 3, 2)
    assert mb.size == len(MSG) * 2 + len(b"Delivered-To: alice@example.test\r\n")
    assert mb.highestmodseq == r2.modseq


def test_read_is_prefix_plus_original_bytes(store):
    prefix = b"Return-Path: <a@example.org>\r\n"
    store.append(U, "INBOX", MSG, prefix=prefix)
    mb = store.get_mailbox(U, "INBOX")
    (meta,) = list(store.list_messages(mb))
    assert store.read(meta) == prefix + MSG
    assert meta.size == len(prefix + MSG)
    assert meta.header == prefix + MSG[: MSG.index(b"\r\n\r\n") + 4]
    assert store.read(meta, 5, 20) == (prefix + MSG)[5:20]
    assert store.read(meta, len(prefix) + 2, meta.size - 3) == (prefix + MSG)[len(prefix) + 2: -3]


def test_dedup_key_makes_append_idempotent(store):
    a = store.append(U, "INBOX", MSG, dedup="q1#alice")
    b = store.append(U, "INBOX", MSG, dedup="q1#alice")
    assert b.duplicate and b.uid == a.uid
    assert store.get_mailbox(U, "INBOX").exists == 1


def test_quota_is_permanent_failure(store):
    store.append(U, "INBOX", MSG, quota=len(MSG) * 2)
    store.append(U, "INBOX", MSG, quota=len(MSG) * 2)
    with pytest.raises(QuotaExceeded):
        store.append(U, "INBOX", MSG, quota=len(MSG) * 2)
    assert store.get_mailbox(U, "INBOX").exists == 2
    assert store.usage(U) == 2 * len(MSG)


def test_flags_changes_since_and_unseen(store):
    for _ in range(3):
        store.append(U, "INBOX", MSG)
    mb = store.get_mailbox(U, "INBOX")
    metas = list(store.list_messages(mb))
    base = mb.highestmodseq
    res = store.store_flags(mb, metas[:2], ["\\Seen", "$Work"], "add")
    assert [c.uid for c in res.changed] == [1, 2]
    assert all(c.modseq > base for c in res.changed)
    changed = store.changes_since(mb, base)
    assert [m.uid for m in changed] == [1, 2]
    assert changed[0].flags == frozenset({"\\Seen", "$Work"})
    mb = store.get_mailbox(U, "INBOX")
    assert mb.unseen == 1
    # UNCHANGEDSINCE below the current modseq fails for that message (RFC 7162 §3.2).
    res = store.store_flags(mb, metas[:1], ["\\Flagged"], "add", unchanged_since=base)
    assert res.failed == [1] and not res.changed
    res = store.store_flags(mb, metas[:1], [], "replace")
    assert res.changed[0].flags == frozenset()
    assert store.get_mailbox(U, "INBOX").unseen == 2


def test_expunge_leaves_tombstones_and_frees_quota(store):
    for _ in range(3):
        store.append(U, "INBOX", MSG)
    mb = store.get_mailbox(U, "INBOX")
    metas = list(store.list_messages(mb))
    base = mb.highestmodseq
    assert store.expunge(mb, [metas[1]]) == [2]
    assert store.expunge(mb, [metas[1]]) == []
    assert [m.uid for m in store.list_messages(mb)] == [1, 3]
    ch = store.changes_since(mb, base)
    assert [(m.uid, m.expunged) for m in ch] == [(2, True)]
    mb = store.get_mailbox(U, "INBOX")
    assert (mb.exists, mb.uidnext) == (2, 4)
    assert store.usage(U) == 2 * len(MSG)


def test_copy_shares_blob_until_last_reference(store):
    store.append(U, "INBOX", MSG)
    mb = store.get_mailbox(U, "INBOX")
    metas = list(store.list_messages(mb))
    dest, pairs = store.copy(mb, metas, "Archive")
    assert pairs == [(1, 1)] and dest.exists == 1
    store.expunge(mb, metas)
    (copied,) = list(store.list_messages(dest))
    assert store.read(copied) == MSG


def test_mailbox_lifecycle(store):
    store.ensure_mailboxes(U)
    store.create_mailbox(U, "Work/Projects")
    with pytest.raises(MailboxExists):
        store.create_mailbox(U, "Work/Projects")
    store.rename_mailbox(U, "Work/Projects", "Old/Projects")
    assert "Old/Projects" in {m.name for m in store.list_mailboxes(U)}
    with pytest.raises(MailboxNotFound):
        store.get_mailbox(U, "Work/Projects")
    store.delete_mailbox(U, "Old/Projects")
    with pytest.raises(MailboxInvalid):
        store.delete_mailbox(U, "INBOX")
    with pytest.raises(MailboxNotFound):
        store.append(U, "Nope", MSG)


def test_rename_inbox_moves_messages_and_leaves_it_empty(store):
    store.append(U, "INBOX", MSG)
    old = store.get_mailbox(U, "INBOX")
    store.rename_mailbox(U, "INBOX", "Old")
    moved = store.get_mailbox(U, "Old")
    assert moved.exists == 1 and moved.uidvalidity == old.uidvalidity
    inbox = store.get_mailbox(U, "INBOX")
    assert inbox.exists == 0 and inbox.uidvalidity != old.uidvalidity
    assert store.read(next(iter(store.list_messages(moved)))) == MSG


def test_subscriptions(store):
    store.subscribe(U, "Work")
    store.subscribe(U, "inbox")
    assert set(store.list_subscriptions(U)) >= {"Work", "INBOX"}
    store.unsubscribe(U, "Work")
    assert "Work" not in store.list_subscriptions(U)


def test_light_listing_and_get_messages(store):
    for _ in range(3):
        store.append(U, "INBOX", MSG, flags=["\\Seen"])
    mb = store.get_mailbox(U, "INBOX")
    light = list(store.list_messages(mb, since_uid=1, light=True))
    assert [m.uid for m in light] == [2, 3]
    assert all(m.flags == {"\\Seen"} and m.size == len(MSG) for m in light)
    full = store.get_messages(mb, [3, 1, 99])
    assert [m.uid for m in full] == [1, 3] and full[0].header is not None


def test_append_from_inline_header_equals_append_from_bytes(store):
    """The store Lambda indexes from the gateway's inline header; the result must match a full append."""
    from postern.store.summary import decode_inline_header, inline_header

    prefix = b"Delivered-To: alice@example.test\r\n"
    if isinstance(store, MemoryMailStore):
        store.put_spool("spool/q9", MSG)
    else:
        store._s3.put_object(Bucket=store.bucket, Key="spool/q9", Body=MSG)
    blob = store.adopt_spool("spool/q9", "q9")
    header = decode_inline_header(inline_header(MSG))
    assert header == MSG[: MSG.index(b"\r\n\r\n") + 4]
    store.append(U, "INBOX", None, blob_key=blob, header=header, raw_size=len(MSG), prefix=prefix)
    store.append(U, "INBOX", MSG, prefix=prefix)
    mb = store.get_mailbox(U, "INBOX")
    a, b = list(store.list_messages(mb))
    assert (a.size, a.header, a.header_len, a.raw_size) == (b.size, b.header, b.header_len, b.raw_size)
    assert store.read(a) == store.read(b) == prefix + MSG
    with pytest.raises(ValueError):
        store.append(U, "INBOX", None, header=header, raw_size=len(MSG))  # no blob to point at


def test_inline_header_is_left_out_when_large():
    from postern.store.summary import INLINE_HEADER_CAP, inline_header

    big = b"X-Big: " + b"a" * INLINE_HEADER_CAP + b"\r\n\r\nbody\r\n"
    assert inline_header(big) == ""
