"""Change notification across sessions and gateway tasks: the account change log, followed.

In:   the mail store through the Backend's facade (``backend.mail``), and the
      sessions that have a mailbox selected.
Out:  :class:`Runtime` (one per Backend, i.e. per gateway process) holding
      * a cache of :class:`MailboxIndex` (uid -> light MessageMeta, the mailbox's
        keyword set, the log position it is exact at) keyed by (user, mailbox_id,
        uidvalidity): SELECT of a mailbox this process has seen costs
        ``get_mailbox`` + the log since the index's position (O(changes)), not a
        listing of every message;
      * ONE :class:`Feed` per account with a mailbox selected here: it reads the
        account's change log after the last change number it saw
        (``follow(user, pos)``, one strongly consistent Query) when the change feed
        says the account has a newer change (:meth:`Runtime.wake`, from
        postern_gateway/changefeed.py), and every ``change_feed_poll_interval`` as a
        safety net; without a live change feed, every ``imap_poll_interval``. It
        hands each change to the :class:`Watcher` of
        its mailbox, which updates the index and tells every session that has the
        mailbox selected (``Selected.on_changes``);
      * \\Recent claims, made through the store once per process and batch, so that
        across gateway tasks one session is the first to be told of a message;
      * small LRU caches of full metadata (header blocks) and BODYSTRUCTUREs.
Fails: StoreUnavailable during a poll is logged and retried on the next tick; a
      mailbox deleted (a ``destroy`` change) marks the subscribed sessions'
      views ``gone`` (they send BYE); a RENAME keeps them: they follow the id.

Exactly once, in order: the store writes change n+1 only after n exists, so
"everything after the last number seen" is never missing a change that will
appear later; changes are applied to the index only when newer than what it
holds for that message (a listing taken while changes land is reconciled).
There is no settle window and no lookback.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass, field, replace

from postern.errors import PosternError
from postern.store.base import Change, MailboxInfo, MessageMeta

log = logging.getLogger("postern.imap.watcher")

MAX_INDEXES = 256
MAX_INDEX_ENTRIES = 500_000  # light metas kept across all cached mailboxes (~100-150 MB)
HEADER_CACHE_BYTES = 64 * 1024 * 1024
STRUCTURE_CACHE_ITEMS = 2048
FOLLOW_PAGE = 1000


def light(m: MessageMeta) -> MessageMeta:
    """The index keeps what FLAGS/UID/SIZE/INTERNALDATE/MODSEQ need; headers live in the bounded header cache."""
    if m.expunged or (m.header is None and not m.prefix):
        return m
    return replace(m, header=None, prefix=b"", light=True)


@dataclass
class MailboxIndex:
    user: str
    mailbox_id: str
    uidvalidity: int
    metas: dict[int, MessageMeta] = field(default_factory=dict)
    modseq: int = 0  # HIGHESTMODSEQ of the mailbox as applied here
    pos: int = 0  # account change number this index is exact at
    keywords: set = field(default_factory=set)  # the mailbox's keyword set (FLAGS / PERMANENTFLAGS)
    recent_uid: int = 0  # \Recent claimed (by anyone) through this UID, as last learnt

    def apply(self, ch: Change) -> list[MessageMeta]:
        """Apply one change of this mailbox; returns what is news to a session (light metas, tombstones)."""
        fresh: list[MessageMeta] = []
        for m in ch.messages:
            cur = self.metas.get(m.uid)
            if m.expunged:
                if cur is not None and cur.modseq < m.modseq:
                    del self.metas[m.uid]
                    fresh.append(m)
            elif ch.kind == "append":
                if cur is None or cur.modseq < m.modseq:
                    self.metas[m.uid] = light(m)
                    fresh.append(self.metas[m.uid])
            elif cur is not None and cur.modseq < m.modseq:  # flags: the index has the rest of the meta
                self.metas[m.uid] = replace(cur, flags=m.flags, modseq=m.modseq)
                fresh.append(self.metas[m.uid])
        self.keywords |= set(ch.keywords)
        self.modseq = max(self.modseq, ch.modseq)
        return fresh


class Watcher:
    """The sessions of this process that have one mailbox selected, and that mailbox's index."""

    def __init__(self, runtime: Runtime, mb: MailboxInfo, index: MailboxIndex):
        self.runtime = runtime
        self.backend = runtime.backend
        self.mb = mb
        self.index = index
        self.sessions: set = set()

    @property
    def key(self):
        return (self.mb.user, self.mb.mailbox_id)

    def subscribe(self, sel) -> None:
        self.sessions.add(sel)
        self.runtime.feed(self.mb.user).attach(self)

    def unsubscribe(self, sel) -> None:
        self.sessions.discard(sel)
        if not self.sessions:
            self.runtime.feed(self.mb.user).detach(self)
            if self.runtime.watchers.get(self.key) is self:
                del self.runtime.watchers[self.key]

    async def refresh(self, force: bool = False) -> None:
        """Bring the index up to date. ``force`` (before acting on \\Deleted flags, CLOSE): read the
        account's changes now. Without it (NOOP, CHECK, IDLE) the read is skipped while the change
        feed is live: its notices already wake the account's :class:`Feed`, so the gateway's own
        state is as current as a read would make it, and the command never waits for a backend
        call queued behind other sessions' work (`make load`). Without a live feed it reads."""
        if not force and self.runtime.feed_live():
            return
        await self.runtime.feed(self.mb.user).poll(self)

    async def on_change(self, ch: Change) -> None:
        if ch.kind == "destroy":
            for sel in list(self.sessions):
                sel.mark_gone()
            return
        if ch.kind == "rename":
            for mbid, _old, new in ch.names:
                if mbid == self.mb.mailbox_id and _old:
                    self.mb = replace(self.mb, name=new)
                    for sel in self.sessions:
                        sel.mb = self.mb
            return
        fresh = self.index.apply(ch)
        self.mb = replace(self.mb, highestmodseq=max(self.mb.highestmodseq, ch.modseq))
        if not fresh and not ch.keywords:
            return
        recent: set[int] = set()
        new = [m.uid for m in fresh if ch.kind == "append" and not m.expunged]
        writers = [s for s in self.sessions if not s.readonly]
        if new and writers:
            recent = await self.runtime.claim_recent(self, max(new))
        for sel in list(self.sessions):
            sel.on_changes(fresh, keywords=ch.keywords, recent=recent if sel is (writers[0] if writers else None) else ())


class Feed:
    """One account's change log, followed for every mailbox of it selected in this process."""

    def __init__(self, runtime: Runtime, user: str):
        self.runtime = runtime
        self.backend = runtime.backend
        self.user = user
        self.watchers: dict[str, Watcher] = {}  # mailbox id -> watcher
        self.lock = asyncio.Lock()
        self.task: asyncio.Task | None = None
        self.woken = asyncio.Event()  # the change feed has news of this account (or its state changed)

    def attach(self, w: Watcher) -> None:
        self.watchers[w.mb.mailbox_id] = w
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._loop(), name=f"imap-feed-{self.user}")

    def detach(self, w: Watcher) -> None:
        if self.watchers.get(w.mb.mailbox_id) is w:
            del self.watchers[w.mb.mailbox_id]
        if not self.watchers:
            if self.task is not None:
                self.task.cancel()
                self.task = None
            if self.runtime.feeds.get(self.user) is self:
                del self.runtime.feeds[self.user]

    def wake(self) -> None:
        self.woken.set()

    async def _loop(self) -> None:
        while self.watchers:
            try:
                await asyncio.wait_for(self.woken.wait(), self.runtime.poll_interval())
            except asyncio.TimeoutError:
                pass
            self.woken.clear()
            try:
                async with self.backend.mail.background():  # no client waits on this read
                    await self.poll()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a poll must never kill the feed
                log.warning("imap feed poll failed user=%s", self.user, exc_info=True)

    async def poll(self, extra: Watcher | None = None) -> None:
        async with self.lock:
            watchers = list(self.watchers.values())
            if extra is not None and extra not in watchers:
                watchers.append(extra)
            await catch_up(self.backend, self.user, watchers)


async def catch_up(backend, user: str, watchers: list[Watcher]) -> None:
    """Apply every change after the oldest position among ``watchers`` to those it is news to."""
    while watchers:
        pos = min(w.index.pos for w in watchers)
        changes = await backend.mail.follow(user, pos, FOLLOW_PAGE)
        for ch in changes:
            for w in watchers:
                if ch.modseq <= w.index.pos:
                    continue
                if ch.mailbox_id == w.mb.mailbox_id or any(n[0] == w.mb.mailbox_id for n in ch.names):
                    await w.on_change(ch)
                w.index.pos = ch.modseq
        if len(changes) < FOLLOW_PAGE:
            return


class Runtime:
    """Per-process IMAP state shared by all sessions of one Backend."""

    def __init__(self, backend):
        self.backend = backend
        self.indexes: OrderedDict = OrderedDict()
        self.watchers: dict = {}
        self.feeds: dict[str, Feed] = {}
        self.headers: OrderedDict = OrderedDict()  # (mailbox_id, uidvalidity, uid) -> full MessageMeta
        self.headers_bytes = 0
        self.structures: OrderedDict = OrderedDict()  # (blob_key, prefix_len, extended) -> bytes
        self.change_feed = None  # postern_gateway.changefeed.ChangeFeed, when this process has one

    @classmethod
    def of(cls, backend) -> Runtime:
        rt = backend.__dict__.get("_imap_runtime")
        if rt is None:
            rt = backend.__dict__["_imap_runtime"] = cls(backend)
        return rt

    def feed_live(self) -> bool:
        """The change feed is running: notices wake the feeds of the accounts they name."""
        return self.change_feed is not None and bool(self.change_feed.live)

    def poll_interval(self) -> float:
        """Seconds between reads of a followed account's log without news: the safety net while
        the change feed is live, else the polling interval."""
        s = self.backend.settings
        if self.feed_live():
            return max(0.05, float(s.change_feed_poll_interval))
        return max(0.05, float(s.imap_poll_interval))

    def wake(self, notices) -> None:
        """Change notices (postern.feed.Notice): read the log of each account followed here that
        is behind the notice's number (a change this process wrote is already applied: no read)."""
        for n in notices:
            f = self.feeds.get(n.user)
            if f is not None and any(w.index.pos < n.modseq for w in f.watchers.values()):
                f.wake()

    def wake_all(self, _live: bool = True) -> None:
        """The change feed came up or went down: every feed picks its new interval now."""
        for f in self.feeds.values():
            f.wake()

    def feed(self, user: str) -> Feed:
        f = self.feeds.get(user)
        if f is None:
            f = self.feeds[user] = Feed(self, user)
        return f

    async def reload(self, mb: MailboxInfo, idx: MailboxIndex) -> None:
        """Full listing (first SELECT of this mailbox in this process): the index exact at ``mb.pos``."""
        metas = await self.backend.mail.list_messages(mb, 0, light=True)
        idx.metas = {m.uid: light(m) for m in metas}
        idx.keywords = set(mb.keywords)
        idx.modseq = mb.highestmodseq
        idx.pos = mb.pos
        idx.recent_uid = mb.recent_uid

    async def open(self, mb: MailboxInfo) -> Watcher:
        """The watcher for ``mb`` with an index brought up to date (O(changes) when cached)."""
        w = self.watchers.get((mb.user, mb.mailbox_id))
        if w is None or w.mb.uidvalidity != mb.uidvalidity:
            key = (mb.user, mb.mailbox_id, mb.uidvalidity)
            idx = self.indexes.get(key)
            if idx is None:
                idx = MailboxIndex(mb.user, mb.mailbox_id, mb.uidvalidity)
                await self.reload(mb, idx)
                self.indexes[key] = idx
                self._evict()
            else:
                self.indexes.move_to_end(key)
            idx.keywords |= set(mb.keywords)
            idx.recent_uid = max(idx.recent_uid, mb.recent_uid)
            other = self.watchers.get((mb.user, mb.mailbox_id))
            if other is not None and other.mb.uidvalidity == mb.uidvalidity:
                w = other  # a concurrent SELECT registered one while we were loading: share it
            else:
                w = self.watchers[(mb.user, mb.mailbox_id)] = Watcher(self, mb, idx)
        await self.feed(mb.user).poll(w)
        return w

    async def claim_recent(self, w: Watcher, top: int) -> set[int]:
        """Claim \\Recent for this process up to ``top``; the UIDs it won (RFC 3501 §2.3.2)."""
        idx = w.index
        if top <= idx.recent_uid:
            return set()
        prev = await self.backend.mail.claim_recent(w.mb, top)
        idx.recent_uid = max(idx.recent_uid, top)
        return {u for u in idx.metas if prev < u <= top}

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
        """After this process wrote to a mailbox: read the change now (local sessions see it next command)."""
        feed = self.feeds.get(user)
        if feed is not None:
            try:
                await feed.poll()
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
                got = await self.backend.mail.get_messages(mb, missing[i : i + 1000])
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
