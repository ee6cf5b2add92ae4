"""Concurrent writers on one mailbox while a watcher follows the change log (evidence for the store).

In:   a factory of mail stores over one table and bucket (each writer and the
      follower get their own instance, as separate gateway tasks or Lambdas
      would), a user, the number of writers and operations each.
Out:  :func:`run` -> :class:`Figures`: changes committed, what the follower saw
      (every number exactly once, in order?), the writers' results found in the
      log, the final mailbox equal to the log replayed, log-slot conflicts, and,
      given a :class:`~postern_local.requests.RequestCounter` on the clients,
      DynamoDB write units per change.
Fails: never on a discrepancy: it is counted in the figures (the test asserts
      on them, ``bench/store_order.py`` prints them).

Each writer appends (half of its operations), flags (3 in 10) and expunges
(2 in 10) messages of the one mailbox, chosen among those any writer appended.
The follower reads ``follow(user, last)`` in a loop, as the IMAP watcher does,
and checks each change's number is the one after the last it saw.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

from postern import mailboxes

MSG = b"From: w@example.org\r\nSubject: order %d.%d\r\nMessage-ID: <%d.%d@example.org>\r\n\r\nbody\r\n"


@dataclass
class Figures:
    writers: int = 0
    operations: int = 0
    changes: int = 0  # committed by the writers (no-op operations commit nothing)
    seen: int = 0  # changes the follower read
    out_of_order: int = 0  # a change whose number was not the one after the last seen
    duplicates: int = 0
    missing: int = 0  # writers' changes the follower never saw
    replay_matches: bool = False  # the follower's index == the mailbox's entries at the end
    conflicts: int = 0
    failed_writes: int = 0
    repairs: int = 0
    wru: float = 0.0
    wru_by_kind: dict = field(default_factory=dict)
    seconds: float = 0.0
    errors: list = field(default_factory=list)

    @property
    def conflict_rate(self) -> float:
        attempts = self.changes + self.conflicts
        return self.conflicts / attempts if attempts else 0.0

    @property
    def wru_per_change(self) -> float:
        return self.wru / self.changes if self.changes else 0.0

    def report(self) -> str:
        lines = [
            f"writers                      {self.writers}",
            f"operations                   {self.operations}",
            f"changes committed            {self.changes}",
            f"seen by the follower         {self.seen} (out of order {self.out_of_order}, twice "
            f"{self.duplicates}, missing {self.missing})",
            f"log replay == mailbox        {self.replay_matches}",
            f"log-slot conflicts           {self.conflicts} ({self.conflict_rate:.1%} of commit attempts; "
            f"{self.failed_writes} found by a failed conditional write)",
            f"roll-forwards for others     {self.repairs}",
        ]
        if self.wru or self.wru_by_kind:  # measured only with a request counter (bench/store_order.py)
            lines.append(f"DynamoDB write units         {self.wru:.0f} ({self.wru_per_change:.2f} per change)")
        for kind, (n, w) in sorted(self.wru_by_kind.items()):
            lines.append(f"  {kind:<26} {w / n:.2f} WRU per change ({n} measured alone)")
        lines.append(f"seconds                      {self.seconds:.1f}")
        return "\n".join(lines)


def run(make_store, user: str, writers: int = 4, ops: int = 25, seed: int = 1, counter=None) -> Figures:
    f = Figures(writers=writers, operations=writers * ops)
    setup = make_store()
    mailboxes.ensure_defaults(setup, user)
    start = setup.get_mailbox(user, "INBOX").pos
    appended: list[int] = []
    committed: list[tuple[int, str, tuple[int, ...]]] = []
    lock = threading.Lock()
    done = threading.Event()
    seen: list = []
    stores = [make_store() for _ in range(writers)]

    def writer(n: int, store) -> None:
        rng = random.Random(seed * 1000 + n)
        try:
            for i in range(ops):
                r = rng.random()
                with lock:
                    pool = list(appended)
                mb = store.get_mailbox(user, "INBOX")
                if r < 0.5 or len(pool) < 3:
                    res = store.append(user, "INBOX", MSG % (n, i, n, i), flags=["$w%d" % n] if i % 5 == 0 else ())
                    with lock:
                        appended.append(res.uid)
                        committed.append((res.modseq, "append", (res.uid,)))
                elif r < 0.8:
                    uids = rng.sample(pool, min(3, len(pool)))
                    res = store.store_flags(mb, store.get_messages(mb, uids), [rng.choice(["\\Seen", "\\Flagged"])],
                                            rng.choice(["add", "remove"]))
                    for modseq in sorted({c.modseq for c in res.changed}):
                        with lock:
                            committed.append((modseq, "flags", tuple(c.uid for c in res.changed if c.modseq == modseq)))
                else:
                    uid = rng.choice(pool)
                    gone = store.expunge(mb, store.get_messages(mb, [uid]))
                    if gone:
                        with lock:
                            appended.remove(uid)
                        # the expunge's number is the mailbox's HIGHESTMODSEQ right after it, or later
                        committed.append((-1, "expunge", tuple(gone)))
        except Exception as exc:  # noqa: BLE001 - counted, and the test fails on it
            f.errors.append(repr(exc))

    def follower(store) -> None:
        last = start
        quiet = 0
        while quiet < 3:
            changes = store.follow(user, last)
            if not changes:
                if done.is_set():
                    quiet += 1
                time.sleep(0.05)  # the IMAP watcher's interval is 0.5 s; faster only loads moto
                continue
            for ch in changes:
                if ch.modseq != last + 1:
                    f.out_of_order += 1
                last = max(last, ch.modseq)
                seen.append(ch)

    before = counter.snapshot() if counter is not None else None
    t0 = time.monotonic()
    follow_store = make_store()
    ft = threading.Thread(target=follower, args=(follow_store,), name="follower")
    ft.start()
    threads = [threading.Thread(target=writer, args=(n, stores[n]), name=f"writer-{n}") for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    ft.join()
    f.seconds = time.monotonic() - t0
    if counter is not None:
        f.wru = counter.snapshot().minus(before).total().ddb_wru
    f.changes = sum(s.stats.commits for s in stores)
    f.conflicts = sum(s.stats.conflicts for s in stores)
    f.failed_writes = sum(s.stats.failed_writes for s in stores)
    f.repairs = sum(s.stats.repairs for s in stores)
    f.seen = len(seen)
    numbers = [ch.modseq for ch in seen]
    f.duplicates = len(numbers) - len(set(numbers))
    by_number = {ch.modseq: ch for ch in seen}
    for modseq, kind, uids in committed:
        if modseq < 0:
            if not any(c.kind == kind and {m.uid for m in c.messages} >= set(uids) for c in seen):
                f.missing += 1
        elif modseq not in by_number or by_number[modseq].kind != kind:
            f.missing += 1
    if f.seen != f.changes:
        f.missing += abs(f.changes - f.seen)
    f.replay_matches = _replay(seen, setup, user)
    if counter is not None:
        f.wru_by_kind = _alone(make_store(), user, counter)
    return f


def _replay(seen, store, user: str) -> bool:
    """The follower's view, built from the log alone, equals the mailbox's entries."""
    mb = store.get_mailbox(user, "INBOX")
    view: dict[int, frozenset] = {}
    for ch in seen:
        if ch.mailbox_id != mb.mailbox_id:
            continue
        for m in ch.messages:
            if m.expunged:
                view.pop(m.uid, None)
            else:
                view[m.uid] = m.flags
    actual = {m.uid: m.flags for m in store.list_messages(mb, light=True)}
    return view == actual


def _alone(store, user: str, counter) -> dict:
    """Write units of one change of each kind with no contention (what a change costs)."""
    out = {}
    for kind in ("append", "flags", "expunge"):
        n = 5
        with counter.measure() as m:
            for i in range(n):
                mb = store.get_mailbox(user, "INBOX")
                if kind == "append":
                    store.append(user, "INBOX", MSG % (9, i, 9, i))
                else:
                    meta = list(store.list_messages(mb))[-1]
                    if kind == "flags":
                        store.store_flags(mb, [meta], ["\\Answered"], "remove" if i % 2 else "add")
                    else:
                        store.expunge(mb, [meta])
        out[kind] = (n, m.usage.total().ddb_wru)
    return out
