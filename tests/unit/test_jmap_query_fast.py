"""Email/query's newest-first page (emailquery._newest_page) answers exactly what the general path does.

The general path is reached with the same filter written as an AND of one condition (the page path
only takes a bare ``{inMailbox: X}``), so both answer from the same store at the same moment. The data
goes through deliveries in and out of date order, equal dates, moves into and out of the mailbox, a
copy of a mailbox into itself, expunges and threads; each stage checks a grid of windows (position,
anchor and anchorOffset, limit, collapseThreads, calculateTotal), and that the page path did answer
where the store's order lets it (so the comparison is not the general path against itself).
"""

from __future__ import annotations

import random

import pytest

from postern import mailboxes
from postern.jmap import api, emailquery
from postern.jmap.account import Account
from postern.store import memory_store

USER = "alice@example.test"
USING = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"]
BASE = 1_700_000_000.0


@pytest.fixture
def env(monkeypatch):
    store = memory_store()
    mailboxes.ensure_defaults(store, USER)
    acct = Account(USER, store, senders=frozenset({USER}), name="Alice")
    used: list[bool] = []
    real = emailquery._newest_page

    def spy(*a, **kw):
        got = real(*a, **kw)
        used.append(got is not None)
        return got

    monkeypatch.setattr(emailquery, "_newest_page", spy)
    return store, acct, used


def _raw(i: int, thread_of: int | None) -> bytes:
    refs = f"References: <m{thread_of}@t.test>\r\n" if thread_of is not None else ""
    return (f"From: s{i}@remote.test\r\nTo: {USER}\r\nSubject: n{i}\r\nMessage-ID: <m{i}@t.test>\r\n{refs}"
            f"\r\nbody {i}\r\n").encode()


def _deliver(store, i: int, when: float, box: str = "INBOX", thread_of: int | None = None):
    return mailboxes.append(store, USER, box, _raw(i, thread_of), internaldate=when)


def _query(acct, args: dict) -> tuple[str, dict]:
    out = api.handle(acct, {"using": USING, "methodCalls": [["Email/query", {"accountId": acct.id, **args}, "q"]]})
    name, body, _ = out["methodResponses"][0]
    return name, body


def _inbox(store) -> str:
    return store.get_mailbox(USER, "INBOX").mailbox_id


def _compare(acct, used: list[bool], mbid: str) -> int:
    """Every window of the grid, page path against general path; returns how many the page path took."""
    general_filter = {"operator": "AND", "conditions": [{"inMailbox": mbid}]}
    sort = [{"property": "receivedAt", "isAscending": False}]
    _, everything = _query(acct, {"filter": general_filter, "sort": sort})
    anchors = everything["ids"][:1] + everything["ids"][2:3] + everything["ids"][41:42] + ["Enot-there"]
    taken = 0
    for collapse in (False, True):
        for total in (False, True):
            windows = [{"position": p, "limit": n} for p in (0, 7, 49, 200) for n in (1, 50)]
            windows += [{"anchor": a, "anchorOffset": o, "limit": 10} for a in anchors for o in (-3, 2)]
            windows += [{"position": -5, "limit": 3}, {"position": 0}]
            for w in windows:
                args = {**w, "collapseThreads": collapse, "calculateTotal": total, "sort": sort}
                before = len(used)
                fast = _query(acct, {**args, "filter": {"inMailbox": mbid}})
                taken += sum(used[before:])
                slow = _query(acct, {**args, "filter": general_filter})
                assert fast == slow, (args, fast, slow)
    return taken


def test_page_path_equals_general_path_through_moves_deletes_and_ties(env):
    store, acct, used = env
    rng = random.Random(15)
    inbox = _inbox(store)
    archive = store.get_mailbox(USER, "Archive").mailbox_id if any(
        m.name == "Archive" for m in store.list_mailboxes(USER)) else None
    if archive is None:
        store.create_mailboxes(USER, [("Archive", "\\Archive")])
        archive = store.get_mailbox(USER, "Archive").mailbox_id

    # 1. in date order, some replies (threads)
    for i in range(90):
        _deliver(store, i, BASE + i, thread_of=rng.randrange(i) if i and rng.random() < 0.4 else None)
    for i in range(90, 110):
        _deliver(store, i, BASE + i - 200, box="Archive")  # older mail, filed elsewhere
    assert _compare(acct, used, inbox) > 0  # the page path answered (most windows)
    assert _compare(acct, used, archive) >= 0

    # 2. expunge some of the newest and some old ones: the order holds
    box = store.get_mailbox(USER, "INBOX")
    metas = list(store.list_messages(box))
    store.expunge(box, [m for m in metas if m.uid % 7 == 0 or m.uid > 85])
    assert _compare(acct, used, inbox) > 0

    # 3. move old mail in (COPY keeps its date: out of UID order), then new deliveries above it
    arch = store.get_mailbox(USER, "Archive")
    moved = [m for m in store.list_messages(arch)][:8]
    store.copy(arch, moved, "INBOX")
    store.expunge(arch, moved)
    _compare(acct, used, inbox)
    for i in range(200, 260):
        _deliver(store, i, BASE + i)
    assert _compare(acct, used, inbox) > 0

    # 4. equal dates, an older APPEND, a copy of the mailbox into itself, then newer mail again
    _deliver(store, 300, BASE + 259)
    _deliver(store, 301, BASE + 259)
    _deliver(store, 302, BASE + 10, thread_of=3)
    box = store.get_mailbox(USER, "INBOX")
    store.copy(box, list(store.list_messages(box))[-3:], "INBOX")
    _compare(acct, used, inbox)
    for i in range(400, 470):
        _deliver(store, i, BASE + i, thread_of=400 if i % 3 == 0 and i > 400 else None)
    assert _compare(acct, used, inbox) > 0

