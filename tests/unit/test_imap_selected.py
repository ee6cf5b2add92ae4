"""The selected-mailbox view and the process index, without sockets (the store is the in-memory one)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from postern.store.base import MAX_KEYWORDS, Change, MailboxInfo, MessageMeta
from postern.store.memory import MemoryMailStore
from postern_gateway.imap.errors import BadCommand
from postern_gateway.imap.selected import Selected
from postern_gateway.imap.seqset import SeqSet
from postern_gateway.imap.watcher import MailboxIndex, Runtime

MB = MailboxInfo(user="u@example.test", name="INBOX", mailbox_id="m1", uidvalidity=7, uidnext=6, highestmodseq=10)


def view(uids=(1, 2, 3, 4, 5), readonly=False, condstore=False, keywords=()):
    idx = MailboxIndex("u@example.test", "m1", 7, keywords=set(keywords))
    idx.apply(Change(modseq=max(uids, default=1), kind="append", mailbox_id="m1",
                     messages=tuple(MessageMeta(uid=u, modseq=u) for u in uids)))
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
    sel, _ = view()
    sel.recent = {4, 5}  # what SELECT's claim won
    sel.on_changes([MessageMeta(uid=6, modseq=13), MessageMeta(uid=3, modseq=14, flags=frozenset({"\\Seen"}))],
                   recent={6})
    assert sel.flags_of(3) == frozenset()  # another session's change is shown when it is announced
    out = sel.flush(allow_expunge=False)
    assert out == [b"* 6 EXISTS\r\n", b"* 3 RECENT\r\n", b"* 3 FETCH (FLAGS (\\Seen))\r\n"]
    # a change we reported ourselves is not repeated
    sel.told_flags(3, MessageMeta(uid=3, modseq=15, flags=frozenset({"\\Flagged"})))
    sel.on_changes([MessageMeta(uid=3, modseq=15, flags=frozenset({"\\Flagged"}))])
    assert sel.flush(allow_expunge=True) == []


def test_a_new_keyword_is_announced_before_any_fetch_shows_it():
    """RFC 3501 §7.2.6: FLAGS and PERMANENTFLAGS first, whoever introduced the keyword."""
    sel, _ = view(keywords={"$Old"})
    sel.on_changes([MessageMeta(uid=2, modseq=20, flags=frozenset({"$New", "\\Seen"}))], keywords={"$New"})
    out = sel.flush(allow_expunge=True)
    assert out[0] == b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $New $Old)\r\n"
    assert out[1].startswith(b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $New $Old \\*)]")
    assert out[2] == b"* 2 FETCH (FLAGS (\\Seen $New))\r\n"
    assert sel.announce({"$New"}) == []  # told once
    assert sel.announce({"$Mine", "\\Seen"})[0].startswith(b"* FLAGS (")  # our own STORE's new keyword


def test_permanentflags_stop_offering_new_keywords_at_the_cap():
    """At MAX_KEYWORDS the mailbox takes no new keyword (NO [LIMIT]): PERMANENTFLAGS drops ``\\*``
    (RFC 3501 §7.1); read-only, PERMANENTFLAGS is empty."""
    under, _ = view(keywords={f"$k{i}" for i in range(MAX_KEYWORDS - 1)})
    assert b"\\*)]" in under.flag_lines()[1]
    full, _ = view(keywords={f"$k{i}" for i in range(MAX_KEYWORDS)})
    flags, perm = full.flag_lines()
    assert b"$k249" in flags and b"$k249" in perm and b"\\*" not in perm
    ro, _ = view(readonly=True, keywords={"$a"})
    assert ro.flag_lines()[1].startswith(b"* OK [PERMANENTFLAGS ()]")

def test_condstore_flag_updates_carry_uid_and_modseq():
    sel, _ = view(condstore=True, readonly=True)
    sel.on_changes([MessageMeta(uid=2, modseq=20, flags=frozenset({"\\Flagged"}))])
    assert sel.flush(allow_expunge=True) == [b"* 2 FETCH (FLAGS (\\Flagged) UID 2 MODSEQ (20))\r\n"]


def test_message_expunged_before_announced_new_is_never_shown():
    sel, _ = view()
    sel.on_changes([MessageMeta(uid=9, modseq=30)])
    sel.on_changes([MessageMeta(uid=9, modseq=31, expunged=True)])
    assert sel.flush(allow_expunge=True) == []


def test_index_applies_each_change_once_and_keeps_newest():
    idx = MailboxIndex("u", "m", 1)
    a = MessageMeta(uid=1, modseq=5, flags=frozenset({"\\Seen"}), size=10)
    assert idx.apply(Change(5, "append", "m", (a,))) == [a]
    assert idx.apply(Change(5, "append", "m", (a,))) == []  # the listing already had it: not news
    flag = MessageMeta(uid=1, modseq=6, flags=frozenset({"$K"}))
    (got,) = idx.apply(Change(6, "flags", "m", (flag,), keywords=frozenset({"$K"})))
    assert (got.flags, got.size, got.modseq) == ({"$K"}, 10, 6)  # flags merged into what the index has
    assert idx.keywords == {"$K"}
    assert idx.apply(Change(4, "flags", "m", (MessageMeta(uid=1, modseq=4),))) == []  # older than held
    assert idx.apply(Change(7, "expunge", "m", (MessageMeta(uid=1, modseq=7, expunged=True),)))
    assert 1 not in idx.metas and idx.modseq == 7


class _Sink:
    readonly = False

    def __init__(self):
        self.seen: list[int] = []
        self.recent: set[int] = set()
        self.gone = False

    def on_changes(self, changes, keywords=(), recent=()):
        self.seen.extend(m.uid for m in changes)
        self.recent |= set(recent)

    def mark_gone(self):
        self.gone = True


def test_watcher_follows_the_account_log_across_tasks():
    """Two gateway tasks (two Runtimes) over one store: each sees every change once, in order; \\Recent
    is won by one of them; a DELETE ends the selection."""
    store = MemoryMailStore()
    store.ensure_mailboxes("u")
    backend = SimpleNamespace(store=store, settings=SimpleNamespace(imap_poll_interval=60), mail=None)

    from postern_gateway.backend import MailFacade
    from postern_gateway.blocking import Blocking

    async def go():
        b1 = SimpleNamespace(**vars(backend))
        b2 = SimpleNamespace(**vars(backend))
        b1.mail = MailFacade(store, Blocking(2))
        b2.mail = MailFacade(store, Blocking(2))
        rt1, rt2 = Runtime(b1), Runtime(b2)
        mb = store.get_mailbox("u", "INBOX")
        w1, w2 = await rt1.open(mb), await rt2.open(mb)
        s1, s2 = _Sink(), _Sink()
        w1.sessions.add(s1)
        w2.sessions.add(s2)
        for i in range(3):
            store.append("u", "INBOX", b"Subject: %d\r\n\r\nx\r\n" % i)
        inbox = store.get_mailbox("u", "INBOX")
        store.store_flags(inbox, store.get_messages(inbox, [2]), ["\\Seen"], "add")
        store.expunge(inbox, store.get_messages(inbox, [1]))
        await w1.refresh()
        await w2.refresh()
        assert s1.seen == s2.seen == [1, 2, 3, 2, 1]  # appends, the flag change, the expunge
        await w1.refresh()
        assert s1.seen == [1, 2, 3, 2, 1]  # nothing twice
        assert (s1.recent | s2.recent) == {1, 2, 3} and not (s1.recent & s2.recent)
        from postern import mailboxes as MB

        MB.rename(store, "u", "INBOX", "Moved")  # the selection follows the id...
        await w1.refresh()
        assert w1.mb.name == "Moved" and not s1.gone
        MB.delete(store, "u", "Moved")  # ...and ends when it is deleted
        await w2.refresh()
        assert s2.gone

    asyncio.run(go())
