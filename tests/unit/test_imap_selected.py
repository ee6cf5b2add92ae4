"""The selected-mailbox view and the process index, without sockets or a store."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from postern.store.base import MailboxInfo, MessageMeta
from postern_gateway.imap.errors import BadCommand
from postern_gateway.imap.selected import Selected
from postern_gateway.imap.seqset import SeqSet
from postern_gateway.imap.watcher import MailboxIndex

MB = MailboxInfo(user="u@example.test", name="INBOX", mailbox_id="m1", uidvalidity=7, uidnext=6, highestmodseq=10)


def view(uids=(1, 2, 3, 4, 5), readonly=False, condstore=False):
    idx = MailboxIndex("u@example.test", "m1", 7)
    idx.apply([MessageMeta(uid=u, modseq=u) for u in uids])
    w = SimpleNamespace(index=idx)
    return Selected(w, MB, readonly, condstore), idx


def test_resolve_sequence_and_uid_sets():
    sel, _ = view(uids=(2, 4, 6, 8))
    assert sel.resolve(SeqSet.parse("2:*"), uid=False) == [(2, 4), (3, 6), (4, 8)]
    assert sel.resolve(SeqSet.parse("3:5,100:*"), uid=True) == [(2, 4), (4, 8)]  # n:* covers the top UID
    assert sel.resolve(SeqSet.parse("*:3"), uid=False) == [(3, 6), (4, 8)]
    with pytest.raises(BadCommand):
        sel.resolve(SeqSet.parse("5"), uid=False)
    empty, _ = view(uids=())
    assert empty.resolve(SeqSet.parse("1:*"), uid=False) == []
    assert empty.resolve(SeqSet.parse("1:*"), uid=True) == []


def test_expunge_held_back_until_allowed():
    sel, _ = view()
    sel.on_changes([MessageMeta(uid=2, modseq=11, expunged=True), MessageMeta(uid=4, modseq=12, expunged=True)])
    assert sel.flush(allow_expunge=False) == []  # RFC 3501 §7.4.1: not during FETCH/STORE/SEARCH
    assert sel.exists == 5 and sel.seq_of(4) == 4 and not sel.live(4)
    assert sel.flush(allow_expunge=True) == [b"* 2 EXPUNGE\r\n", b"* 3 EXPUNGE\r\n"]  # renumbered as sent
    assert sel.uids == [1, 3, 5]


def test_new_messages_exists_recent_and_flag_updates():
    sel, idx = view()
    assert sel.recent == {1, 2, 3, 4, 5} and idx.recent_claimed == 5
    sel2 = Selected(SimpleNamespace(index=idx), MB, False)
    assert sel2.recent == set()  # \Recent goes to one session only
    sel.on_changes([MessageMeta(uid=6, modseq=13), MessageMeta(uid=3, modseq=14, flags=frozenset({"\\Seen"}))])
    out = sel.flush(allow_expunge=False)
    assert out == [b"* 6 EXISTS\r\n", b"* 6 RECENT\r\n", b"* 3 FETCH (FLAGS (\\Seen \\Recent))\r\n"]
    # a change we reported ourselves is not repeated
    sel.told_flags(3, MessageMeta(uid=3, modseq=15, flags=frozenset({"\\Flagged"})))
    sel.on_changes([MessageMeta(uid=3, modseq=15, flags=frozenset({"\\Flagged"}))])
    assert sel.flush(allow_expunge=True) == []


def test_condstore_flag_updates_carry_uid_and_modseq():
    sel, _ = view(condstore=True, readonly=True)
    sel.on_changes([MessageMeta(uid=2, modseq=20, flags=frozenset({"$Work"}))])
    assert sel.flush(allow_expunge=True) == [b"* 2 FETCH (FLAGS ($Work) UID 2 MODSEQ (20))\r\n"]


def test_message_expunged_before_announced_new_is_never_shown():
    sel, _ = view()
    sel.on_changes([MessageMeta(uid=9, modseq=30)])
    sel.on_changes([MessageMeta(uid=9, modseq=31, expunged=True)])
    assert sel.flush(allow_expunge=True) == []


def test_index_dedupes_and_keeps_newest():
    idx = MailboxIndex("u", "m", 1)
    a = MessageMeta(uid=1, modseq=5, flags=frozenset({"\\Seen"}))
    assert idx.apply([MessageMeta(uid=1, modseq=3), a]) == [MessageMeta(uid=1, modseq=3), a]
    assert idx.apply([a]) == []  # a re-read through the lookback window is not news
    assert idx.apply([MessageMeta(uid=1, modseq=4)]) == []  # older than what we hold
    late = MessageMeta(uid=2, modseq=2)  # landed after modseq 5 was seen (allocation race)
    assert idx.apply([late]) == [late] and 2 in idx.metas
    assert idx.apply([MessageMeta(uid=1, modseq=6, expunged=True)])
    assert 1 not in idx.metas and idx.modseq == 6


def test_index_stable_watermark_waits_for_slow_writers(monkeypatch):
    from postern_gateway.imap import watcher as W

    idx = MailboxIndex("u", "m", 1)
    assert idx.observe(100.0, (10, 5, 4))  # counters moved: query
    assert idx.settled_at(100.0) == 0  # nothing is old enough to be final yet
    assert idx.observe(101.0, (10, 5, 4))  # unchanged but still settling: keep querying
    assert idx.settled_at(100.0 + W.SETTLE_SECONDS) == 10
    assert not idx.history and not idx.observe(120.0, (10, 5, 4))  # quiet: no query


def test_watcher_picks_up_a_late_writer_below_a_seen_modseq():
    """Item modseq 5 lands after modseq 6 was already read (block reservation race, DynamoDB store)."""
    import asyncio

    from postern_gateway.imap.watcher import Runtime, Watcher

    visible = [MessageMeta(uid=2, modseq=6)]
    mb = MailboxInfo(user="u", name="INBOX", mailbox_id="m", uidvalidity=1, uidnext=3, highestmodseq=6, exists=2)

    class Store:
        def get_mailbox(self, user, name):
            return mb

        def changes_since(self, m, modseq):
            return sorted((x for x in visible if x.modseq > modseq), key=lambda x: x.modseq)

    class Backend:
        store = Store()
        settings = SimpleNamespace(imap_poll_interval=60)

        async def run(self, fn, *a):
            return fn(*a)

    seen = []

    class Sink:
        def on_changes(self, changes):
            seen.extend(changes)

        def mark_gone(self):
            raise AssertionError("mailbox is still there")

    sink = Sink()

    async def go():
        w = Watcher(Runtime(Backend()), mb, MailboxIndex("u", "m", 1))
        w.sessions.add(sink)
        await w.refresh()
        assert [m.uid for m in seen] == [2]
        visible.append(MessageMeta(uid=1, modseq=5))  # the slow writer lands
        await w.refresh()  # counters unchanged, but still settling: re-read from the stable mark
        assert [m.uid for m in seen] == [2, 1]
        await w.refresh()
        assert [m.uid for m in seen] == [2, 1]  # deduped, not reported twice

    asyncio.run(go())
