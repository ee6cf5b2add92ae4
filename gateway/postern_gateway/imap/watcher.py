"""Change notification across sessions and gateway tasks, without full mailbox reads.

In:   the mail store (through the Backend's executor) and the sessions that
      have a mailbox selected.
Out:  :class:`Runtime` (one per Backend, i.e. per gateway process) holding
      * a cache of :class:`MailboxIndex` (uid -> MessageMeta, highest applied
        modseq) keyed by (user, mailbox_id, uidvalidity): SELECT of a mailbox
        this process has seen costs ``get_mailbox`` + one ``changes_since``
        (O(changes)), not a listing of every message;
      * ONE :class:`Watcher` per selected mailbox: while any session has it
        selected it polls ``store.get_mailbox`` every ``imap_poll_interval``
        and, when HIGHESTMODSEQ/UIDNEXT/EXISTS moved, reads
        ``store.changes_since`` (the ``bymodseq`` GSI) and fans the changes
        out to every session's :class:`~.selected.Selected`;
      * small LRU caches of full metadata (header blocks) and BODYSTRUCTUREs.
Fails: StoreUnavailable during a poll is logged and retried on the next tick;
      a mailbox deleted/renamed away (or whose UIDVALIDITY changed) marks the
      subscribed sessions' views ``gone`` (they send BYE).

Modseq allocation race (DynamoDB store): a writer reserves modseqs (a block
of n for a STORE on n messages) before its items land, so a poll can see
HIGHESTMODSEQ=N+k while items below N+k are still being written, and a later
item may carry a *lower* modseq than one already seen. So the index keeps a
``stable`` watermark: a HIGHESTMODSEQ value becomes stable once it was observed
at least ``SETTLE_SECONDS`` ago (every item it covers has landed by then);
each poll after a change queries ``changes_since(stable)`` (re-reading the last
few seconds of changes), dedupes by (uid, modseq), and only then advances
``stable``. Once quiet, a poll is one GetItem. A writer stalled longer than
``SETTLE_SECONDS`` between reserving and writing could still be missed; a
message-count mismatch after settling triggers a full reload.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field, replace

from postern.errors import MailboxNotFound, PosternError
from postern.store.base import MailboxInfo, MessageMeta

log = logging.getLogger("postern.imap.watcher")

SETTLE_SECONDS = 10.0
RELOAD_LOOKBACK = 32  # after a full listing, re-read this many modseqs while settling
LOOKBACK = RELOAD_LOOKBACK
MAX_INDEXES = 256
HEADER_CACHE_BYTES = 64 * 1024 * 1024
STRUCTURE_CACHE_ITEMS = 2048


MAX_INDEX_ENTRIES = 500_000  # light metas kept across all cached mailboxes (~100-150 MB)


def light(m: MessageMeta) -> MessageMeta:
    """The index keeps what FLAGS/UID/SIZE/INTERNALDATE/MODSEQ need; headers live in the bounded header cache."""
    if m.expunged or (m.header is None and not m.prefix and m.structure is None):
        return m
    return replace(m, header=None, prefix=b"", structure=None, light=True)


@dataclass
class MailboxIndex:
    user: str
    mailbox_id: str
    uidvalidity: int
    metas: dict[int, MessageMeta] = field(default_factory=dict)
    modseq: int = 0  # highest modseq applied
    polled_hms: int = -1  # mailbox HIGHESTMODSEQ at the last poll
    polled: tuple = ()
    stable: int = 0  # every change with modseq <= stable is applied and final
    history: deque = field(default_factory=deque)  # (monotonic time, HIGHESTMODSEQ) not yet stable
    applied: set = field(default_factory=set)  # (uid, modseq) seen above ``stable``
    recent_claimed: int = 0  # highest UID already given \Recent to a session of this process
    keywords: set = field(default_factory=set)  # keywords ever seen here (for SELECT's FLAGS)

    def apply(self, changes: list[MessageMeta]) -> list[MessageMeta]:
        fresh = []
        for m in changes:
            key = (m.uid, m.modseq)
            if key in self.applied:
                continue
            self.applied.add(key)
            cur = self.metas.get(m.uid)
            if m.expunged:
                if cur is not None and cur.modseq < m.modseq:
                    del self.metas[m.uid]
                    fresh.append(m)
                elif cur is None:
                    fresh.append(m)
            elif cur is None or cur.modseq < m.modseq:
                self.metas[m.uid] = light(m)
                if m.flags:
                    self.keywords.update(f for f in m.flags if f[:1] != "\\")
                fresh.append(self.metas[m.uid])
            self.modseq = max(self.modseq, m.modseq)
        if len(self.applied) > 4096:
            self.applied = {k for k in self.applied if k[1] > self.stable}
        return fresh

    def observe(self, now: float, counters: tuple) -> bool:
        """Record the mailbox counters; True when a query is due (changed, or still settling)."""
        if counters != self.polled:
            self.polled = counters
            self.history.append((now, counters[0]))
            return True
        return bool(self.history)

    def settled_at(self, now: float) -> int:
        """The watermark that is safe once a query made at ``now`` has been applied."""
        stable = self.stable
        while self.history and self.history[0][0] <= now - SETTLE_SECONDS:
            stable = max(stable, self.history.popleft()[1])
        return stable


class Watcher:
    def __init__(self, runtime: Runtime, mb: MailboxInfo, index: MailboxIndex):
        self.runtime = runtime
        self.backend = runtime.backend
        self.mb = mb
        self.index = index
        self.sessions: set = set()
        self.lock = asyncio.Lock()
        self.task: asyncio.Task | None = None

    @property
    def key(self):
        return (self.mb.user, self.mb.mailbox_id)

    def subscribe(self, sel) -> None:
        self.sessions.add(sel)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._poll(), name=f"imap-watch-{self.mb.mailbox_id}")

    def unsubscribe(self, sel) -> None:
        self.sessions.discard(sel)
        if not self.sessions:
            if self.task is not None:
                self.task.cancel()
                self.task = None
            if self.runtime.watchers.get(self.key) is self:
                del self.runtime.watchers[self.key]

    async def _poll(self) -> None:
        interval = max(0.05, float(self.backend.settings.imap_poll_interval))
        while self.sessions:
            await asyncio.sleep(interval)
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a poll must never kill the watcher
                log.warning("imap watcher poll failed mailbox=%s", self.mb.mailbox_id, exc_info=True)

    async def refresh(self, force: bool = False) -> None:
        """Bring the index up to date and tell every subscribed session what changed."""
        async with self.lock:
            store = self.backend.store
            try:
                cur = await self.backend.run(store.get_mailbox, self.mb.user, self.mb.name)
            except MailboxNotFound:
                cur = None
            if cur is None or cur.mailbox_id != self.mb.mailbox_id or cur.uidvalidity != self.mb.uidvalidity:
                for sel in list(self.sessions):
                    sel.mark_gone()
                return
            self.mb = cur
            idx = self.index
            now = time.monotonic()
            if not idx.observe(now, (cur.highestmodseq, cur.uidnext, cur.exists)):
                return  # quiet: nothing changed and nothing is settling (one GetItem per poll)
            next_stable = idx.settled_at(now)
            changes = await self.backend.run(store.changes_since, cur, idx.stable)
            fresh = idx.apply(changes)
            idx.stable = max(idx.stable, next_stable)
            if not idx.history and len(idx.metas) != cur.exists:
                fresh += await self.runtime.reload(cur, idx)
            if fresh:
                for sel in list(self.sessions):
                    sel.on_changes(fresh)


class Runtime:
    """Per-process IMAP state shared by all sessions of one Backend."""

    def __init__(self, backend):
        self.backend = backend
        self.indexes: OrderedDict = OrderedDict()
        self.watchers: dict = {}
        self.headers: OrderedDict = OrderedDict()  # (mailbox_id, uidvalidity, uid) -> full MessageMeta
        self.headers_bytes = 0
        self.structures: OrderedDict = OrderedDict()  # (blob_key, prefix_len, extended) -> bytes

    @classmethod
    def of(cls, backend) -> Runtime:
        rt = backend.__dict__.get("_imap_runtime")
        if rt is None:
            rt = backend.__dict__["_imap_runtime"] = cls(backend)
        return rt

    async def reload(self, mb: MailboxInfo, idx: MailboxIndex) -> list[MessageMeta]:
        """Full listing (first SELECT in this process, or a drift repair): returns the differences."""

        def listing():
            return list(self.backend.store.list_messages(mb, 0, light=True))

        metas = await self.backend.run(listing)
        new = {m.uid: light(m) for m in metas}
        diff: list[MessageMeta] = []
        for uid, m in idx.metas.items():
            if uid not in new:
                diff.append(MessageMeta(uid=uid, modseq=max(m.modseq, idx.modseq), expunged=True))
        for uid, m in new.items():
            old = idx.metas.get(uid)
            if old is None or old.flags != m.flags or old.modseq != m.modseq:
                diff.append(m)
        idx.metas = new
        for m in new.values():
            if m.flags:
                idx.keywords.update(f for f in m.flags if f[:1] != "\\")
        idx.modseq = max([mb.highestmodseq, idx.modseq] + [m.modseq for m in metas])
        idx.polled = (mb.highestmodseq, mb.uidnext, mb.exists)
        # writes in flight during the listing land below HIGHESTMODSEQ: re-read a window while settling
        idx.stable = max(0, mb.highestmodseq - RELOAD_LOOKBACK)
        idx.history = deque([(time.monotonic(), mb.highestmodseq)])
        idx.applied = {(m.uid, m.modseq) for m in metas if m.modseq > idx.stable}
        return diff

    async def open(self, mb: MailboxInfo) -> Watcher:
        """The watcher for ``mb`` with an up-to-date index (O(changes) when cached)."""
        w = self.watchers.get((mb.user, mb.mailbox_id))
        if w is not None and w.mb.uidvalidity == mb.uidvalidity:
            await w.refresh(force=True)
            return w
        key = (mb.user, mb.mailbox_id, mb.uidvalidity)
        idx = self.indexes.get(key)
        w = Watcher(self, mb, idx or MailboxIndex(mb.user, mb.mailbox_id, mb.uidvalidity))
        if idx is None:
            idx = w.index
            await self.reload(mb, idx)
            self.indexes[key] = idx
            self._evict()
        else:
            self.indexes.move_to_end(key)
            idx.polled = ()
            await w.refresh(force=True)
        other = self.watchers.get(w.key)
        if other is not None and other.mb.uidvalidity == mb.uidvalidity:
            return other  # a concurrent SELECT registered one while we were loading: share it
        self.watchers[w.key] = w
        return w

    def renamed(self, user: str, old: str, new: str) -> None:
        """RENAME keeps mailbox ids (RFC 3501 §6.3.5): point this process's watchers at the new names."""
        for w in self.watchers.values():
            if w.mb.user != user:
                continue
            if w.mb.name == old or w.mb.name.startswith(old + "/"):
                w.mb = replace(w.mb, name=new + w.mb.name[len(old):])
                for sel in w.sessions:
                    sel.mb = w.mb

    def _evict(self) -> None:
        """Drop least recently used indexes of mailboxes nobody here has selected (bounded memory)."""
        watched = {(w.mb.user, w.mb.mailbox_id, w.mb.uidvalidity) for w in self.watchers.values()}
        total = sum(len(i.metas) for i in self.indexes.values())
        for key in list(self.indexes):
            if len(self.indexes) <= 1 or (len(self.indexes) <= MAX_INDEXES and total <= MAX_INDEX_ENTRIES):
                break
            if key in watched:
                continue
            total -= len(self.indexes.pop(key).metas)

    async def notify(self, user: str, mailbox_id: str) -> None:
        """After this process wrote to a mailbox: refresh its watcher now (local sessions see it next command)."""
        w = self.watchers.get((user, mailbox_id))
        if w is not None:
            w.index.polled = ()
            try:
                await w.refresh(force=True)
            except PosternError:
                log.warning("imap refresh after write failed", exc_info=True)

    # --- caches ---------------------------------------------------------------
    async def full_metas(self, mb: MailboxInfo, metas: list[MessageMeta]) -> dict[int, MessageMeta]:
        """Full metadata (prefix, header block) for these messages: cache, then one batched read."""
        out: dict[int, MessageMeta] = {}
        missing = []
        for m in metas:
            if not m.light and (m.header is not None or m.header_len or m.prefix):
                out[m.uid] = m
                continue
            hit = self.headers.get((mb.mailbox_id, mb.uidvalidity, m.uid))
            if hit is not None:
                self.headers.move_to_end((mb.mailbox_id, mb.uidvalidity, m.uid))
                out[m.uid] = hit
            else:
                missing.append(m.uid)
        if missing:
            for i in range(0, len(missing), 1000):
                got = await self.backend.run(self.backend.store.get_messages, mb, missing[i : i + 1000])
                for g in got:
                    out[g.uid] = g
                    key = (mb.mailbox_id, mb.uidvalidity, g.uid)
                    if key not in self.headers:
                        self.headers[key] = g
                        self.headers_bytes += len(g.header or b"") + len(g.prefix) + 200
                while self.headers_bytes > HEADER_CACHE_BYTES and self.headers:
                    _, old = self.headers.popitem(last=False)
                    self.headers_bytes -= len(old.header or b"") + len(old.prefix) + 200
        return out

    def structure_get(self, key):
        v = self.structures.get(key)
        if v is not None:
            self.structures.move_to_end(key)
        return v

    def structure_put(self, key, value: bytes) -> None:
        self.structures[key] = value
        while len(self.structures) > STRUCTURE_CACHE_ITEMS:
            self.structures.popitem(last=False)
