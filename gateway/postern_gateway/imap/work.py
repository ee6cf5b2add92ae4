"""CPU-heavy IMAP work under the work budget: SEARCH over headers and bodies, SORT, THREAD, MIME.

In:   from the ops, a :class:`Budget` per command (``settings.work_seconds`` from its start) and
      the data the pure modules need: search keys and message views (``search.py``), sort
      criteria, thread algorithms (``sortthread.py``), message bytes (``message/``).
Out:  the same answers those modules give, computed inline when the input is small enough that
      its cost is bounded by its size (:data:`INLINE_BYTES`, few MIME delimiters), else in a
      worker process of :mod:`postern_gateway.workers`, in chunks of at most :data:`CHUNK_BYTES`
      / :data:`CHUNK_MESSAGES`, so neither the gateway's nor a worker's memory holds a whole
      mailbox's data at once.
Fails: :class:`~postern_gateway.workers.WorkLimit` (``NO [LIMIT]``) when a command's work goes
      past its budget -- in a worker (killed at the deadline) or across its inline chunks;
      ``WorkBusy`` / ``WorkFailed`` (``NO [UNAVAILABLE]``) from the pool. Never a stall of the
      event loop longer than one inline chunk.

Why a process pool and not a step budget is said in :mod:`postern_gateway.workers`. The
functions named ``*_chunk``, ``sort_order``, ``thread_text``, ``bodystructure`` and ``section``
run in the workers (``workers.TASKS``): module-level, picklable arguments and results.
"""

from __future__ import annotations

import asyncio
import time
import weakref

from .. import workers
from . import message as M
from . import search as SS
from . import sortthread as ST

INLINE_BYTES = 16 * 1024  # data handled inline per chunk (headers + bodies, times the string keys)
INLINE_STEPS = 100_000  # search-key nodes x messages handled inline per chunk
INLINE_DELIMITERS = 8  # more "--" lines than this in a message: its MIME structure goes to a worker
SLICE = 0.02  # seconds a loop over a mailbox may hold the event loop before it yields
CHUNK_BYTES = 4 * 1024 * 1024  # data sent to a worker in one task
CHUNK_MESSAGES = 2000  # also the slice of a mailbox whose header blocks are loaded at once


def _delimiters(raw: bytes) -> int:
    return raw.count(b"\n--")


def light_message(raw: bytes) -> bool:
    """Is parsing this message's MIME structure cheap enough to do on the event loop?"""
    return len(raw) <= INLINE_BYTES and _delimiters(raw) <= INLINE_DELIMITERS


# --- run in a worker (workers.TASKS) -------------------------------------------------------
def search_chunk(key, msgs: list) -> list[int]:
    """Indexes of ``msgs`` that match ``key``."""
    return [i for i, m in enumerate(msgs) if SS.evaluate(key, m)]


def sort_keys_chunk(criteria, msgs: list) -> list[tuple]:
    return [ST.sort_key(criteria, m) for m in msgs]


def sort_order(criteria, keys: list[tuple]) -> list[int]:
    return ST.sort_order(criteria, keys)


def thread_facts_chunk(msgs: list) -> list:
    return [ST.facts(m) for m in msgs]


def thread_text(algorithm: str, all_facts: list, use_uid: bool) -> str:
    trees = ST.thread_facts(algorithm, all_facts)
    return ST.format_threads(trees, (lambda f: f.uid) if use_uid else (lambda f: f.seq))


def bodystructure(raw: bytes, extended: bool) -> bytes:
    return M.bodystructure(raw, extended)


def section(raw: bytes, part: tuple, text: str | None, fields: tuple) -> bytes:
    return M.section(raw, part, text, fields)


def envelope(header: bytes) -> bytes:
    return M.envelope(header)


# --- the gateway side ----------------------------------------------------------------------
def _shape(key) -> tuple[int, int]:
    """(nodes, passes) of a search key: how many evaluation steps per message, and how many
    times the message's data may be read (one pass per string or date key, at least one)."""
    nodes = passes = 0
    stack = [key]
    while stack:
        k = stack.pop()
        nodes += 1
        if isinstance(k, SS.And):
            stack.extend(k.keys)
        elif isinstance(k, SS.Or):
            stack += [k.left, k.right]
        elif isinstance(k, SS.Not):
            stack.append(k.key)
        elif isinstance(k, (SS.HeaderKey, SS.BodyKey, SS.DateKey)):
            passes += 1
    return nodes, max(1, passes)


def _size(msg) -> int:
    return len(getattr(msg, "header", b"") or b"") + len(getattr(msg, "raw", b"") or b"")


_USER_LOCKS: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def _user_lock(user: str) -> asyncio.Lock:
    """One worker task at a time per account (per event loop): one user cannot hold every worker."""
    key = (id(asyncio.get_running_loop()), user)
    lock = _USER_LOCKS.get(key)
    if lock is None:
        lock = _USER_LOCKS[key] = asyncio.Lock()
    return lock


class Budget:
    """The work budget of one command: a deadline, the pool, and the inline/worker choice."""

    def __init__(self, settings, user: str = ""):
        self.settings = settings
        self.user = user
        self.seconds = float(getattr(settings, "work_seconds", 20.0))
        self.deadline = time.monotonic() + self.seconds
        self._slice_start = time.monotonic()

    def left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise workers.WorkLimit("time budget exhausted")
        return left

    async def run(self, task: str, *args):
        lock = _user_lock(self.user)
        try:
            await asyncio.wait_for(lock.acquire(), self.left())
        except asyncio.TimeoutError:
            raise workers.WorkBusy() from None
        try:
            return await workers.pool(self.settings).run(task, *args, budget=self.left())
        finally:
            lock.release()

    async def inline(self, fn, *args):
        """Small work on the loop; checks the deadline and lets other sessions run after it."""
        self.left()
        try:
            out = fn(*args)
        except MemoryError:  # as a worker's MemoryError is answered (workers.EXHAUSTED)
            raise workers.WorkLimit.memory() from None
        await asyncio.sleep(0)
        self._slice_start = time.monotonic()
        return out

    async def tick(self) -> None:
        """Called per message by loops over a mailbox (FETCH 1:*, SEARCH): lets other sessions
        run once this command has held the event loop for :data:`SLICE` seconds."""
        if time.monotonic() - self._slice_start >= SLICE:
            await asyncio.sleep(0)
            self._slice_start = time.monotonic()

    # --- SEARCH ---
    async def search(self, key, msgs: list) -> list[int]:
        """Indexes of ``msgs`` matching ``key`` (one chunk, as :class:`SearchBatch` collects it)."""
        if not msgs:
            return []
        nodes, passes = _shape(key)
        heavy_mime = any(_delimiters(getattr(m, "raw", None) or b"") > INLINE_DELIMITERS for m in msgs)
        if (sum(_size(m) for m in msgs) * passes <= INLINE_BYTES and nodes * len(msgs) <= INLINE_STEPS
                and not heavy_mime):
            return await self.inline(search_chunk, key, msgs)
        return await self.run("search", key, msgs)

    # --- SORT / THREAD ---
    async def _per_message(self, task: str, fn, head: tuple, msgs: list) -> list:
        """``fn(*head, chunk)`` over ``msgs`` in chunks: inline when small, else in workers."""
        out: list = []
        for chunk in _chunks(msgs):
            if sum(_size(m) for m in chunk) <= INLINE_BYTES:
                out += await self.inline(fn, *head, chunk)
            else:
                out += await self.run(task, *head, chunk)
        return out

    async def sort_keys(self, criteria, msgs: list) -> list[tuple[tuple, int]]:
        """(sort key, uid) of each message (``sortthread.sort_key``: its values, then its seq)."""
        keys = await self._per_message("sort_keys", sort_keys_chunk, (criteria,), msgs)
        return [(k, m.uid) for k, m in zip(keys, msgs)]

    async def sort(self, criteria, keyed: list[tuple[tuple, int]]) -> list[tuple[int, int]]:
        """(seq, uid) in SORT order, from :meth:`sort_keys` of every match."""
        keys = [k for k, _ in keyed]
        if len(keys) <= 1000:
            order = await self.inline(sort_order, criteria, keys)
        else:
            order = await self.run("sort_order", criteria, keys)
        return [(keyed[i][0][-1], keyed[i][1]) for i in order]

    async def thread_facts(self, msgs: list) -> list:
        return await self._per_message("thread_facts", thread_facts_chunk, (), msgs)

    async def thread(self, algorithm: str, all_facts: list, use_uid: bool) -> str:
        """The thread-list text (RFC 5256 §4) from :meth:`thread_facts` of every match."""
        if len(all_facts) <= 1000:
            return await self.inline(thread_text, algorithm, all_facts, use_uid)
        return await self.run("thread", algorithm, all_facts, use_uid)

    # --- MIME ---
    async def bodystructure(self, raw: bytes, extended: bool) -> bytes:
        if light_message(raw):
            return await self.inline(bodystructure, raw, extended)
        return await self.run("bodystructure", raw, extended)

    async def section(self, raw: bytes, part: tuple, text: str | None, fields: tuple) -> bytes:
        if light_message(raw):
            return await self.inline(section, raw, part, text, fields)
        return await self.run("section", raw, part, text, fields)

    async def envelope(self, header: bytes) -> bytes:
        """ENVELOPE of a header block: address lists of tens of KiB cost seconds to parse."""
        if len(header) <= INLINE_BYTES:
            return envelope(header)
        return await self.run("envelope", header)


class SearchBatch:
    """Collects the messages of one SEARCH and evaluates them a chunk at a time.

    ``await add(msg)`` (flushes a full chunk), then ``await hits()``: the matching messages in
    the order added, their ``raw`` and ``header`` bytes dropped (nothing after SEARCH needs them) -- or,
    with ``then`` (an async function of a chunk's matches), what ``then`` made of them, so SORT
    and THREAD keep small keys and facts, not every match's header (bounded memory however
    large the mailbox).
    """

    def __init__(self, budget: Budget, key, then=None):
        self.budget, self.key, self.then = budget, key, then
        self._msgs: list = []
        self._bytes = 0
        self._hits: list = []

    async def add(self, msg) -> None:
        self._msgs.append(msg)
        self._bytes += _size(msg)
        if self._bytes >= CHUNK_BYTES or len(self._msgs) >= CHUNK_MESSAGES:
            await self._flush()

    async def _flush(self) -> None:
        msgs, self._msgs, self._bytes = self._msgs, [], 0
        matched = set(await self.budget.search(self.key, msgs))
        hits = [m for i, m in enumerate(msgs) if i in matched]
        if self.then is not None and hits:
            self._hits += await self.then(hits)
        else:
            self._hits += hits
        for m in msgs:  # what is kept is numbers and flags, not a mailbox's worth of bytes
            m.raw = m.header = None

    async def hits(self) -> list:
        await self._flush()
        return self._hits


def _chunks(msgs: list):
    chunk: list = []
    size = 0
    for m in msgs:
        chunk.append(m)
        size += _size(m)
        if size >= CHUNK_BYTES or len(chunk) >= CHUNK_MESSAGES:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk
