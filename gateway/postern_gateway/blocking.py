"""The one bounded executor between asyncio and blocking code (boto3, argon2), in three lanes.

In:   a blocking callable and its arguments.
Out:  ``await Blocking.run(fn, *args)`` runs it on a fixed-size thread pool
      (``POSTERN_AWS_THREADS``) and returns its result; exceptions propagate
      unchanged (domain errors keep their wire replies). This is the
      interactive lane: a client is waiting for the answer (a login, an IMAP or
      POP3 command).
      ``await Blocking.run_bulk(fn, *args)`` (or ``async with blocking.bulk():``)
      is for work that arrives in bulk and may queue (spooling accepted SMTP mail);
      ``async with blocking.background():`` for work no client waits on (the IMAP
      watchers' reads of the change log). Bulk and background work together hold
      at most ``bulk_threads`` threads (background alone at most
      ``background_threads``), so a quarter of the threads is always left to the
      interactive lane: a login or a NOOP never queues behind the spool backlog or
      a hundred watchers catching up.
      ``bulk_wait()``: seconds the oldest bulk call still waiting for a slot has waited (0
      when none waits): how far behind the bulk lane is (the SMTP sessions' admission check).
Fails: after ``shutdown()`` new calls raise RuntimeError.

Nothing in the gateway calls boto3 on the event loop (pymap ``concurrent.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import itertools
import time
import weakref
from concurrent.futures import ThreadPoolExecutor


class Blocking:
    def __init__(self, threads: int = 16, clock=time.monotonic):
        self.threads = threads
        self._clock = clock
        self._bulk_waiting: dict[int, float] = {}  # waiter number -> when it started waiting (in order)
        self._waiter_ids = itertools.count()
        # A quarter of the threads (at least one) is kept from bulk and background work. `make load`
        # (200 SMTP sessions offering more mail than moto could take) had every thread spooling and
        # a FIFO queue behind them: IMAP NOOP p50 17 s, logins 75 s. With one thread the lane
        # cannot be split and everything shares it.
        self.bulk_threads = max(1, threads - max(1, threads // 4))
        self.background_threads = max(1, threads // 4)
        self._lanes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="postern-aws")

    async def run(self, fn, /, *args, **kwargs):
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        call = functools.partial(ctx.run, fn, *args, **kwargs)
        return await loop.run_in_executor(self._pool, call)

    def _slots(self) -> tuple[asyncio.Semaphore, asyncio.Semaphore]:
        """(non-interactive slots, background slots) of the running loop."""
        loop = asyncio.get_running_loop()
        slots = self._lanes.get(loop)
        if slots is None:
            slots = self._lanes[loop] = (asyncio.Semaphore(self.bulk_threads),
                                         asyncio.Semaphore(self.background_threads))
        return slots

    @contextlib.asynccontextmanager
    async def bulk(self):
        """Hold a bulk slot while the body runs its calls (``run``) on the pool."""
        shared, _ = self._slots()
        waiter = next(self._waiter_ids)
        self._bulk_waiting[waiter] = self._clock()
        try:
            await shared.acquire()
        finally:
            del self._bulk_waiting[waiter]
        try:
            yield
        finally:
            shared.release()

    def bulk_queued(self) -> int:
        """Bulk calls waiting for a slot now."""
        return len(self._bulk_waiting)

    def bulk_wait(self) -> float:
        """Seconds the oldest bulk call still queued for a slot has waited (0.0: none waits)."""
        oldest = next(iter(self._bulk_waiting.values()), None)  # dicts keep insertion order
        return 0.0 if oldest is None else max(0.0, self._clock() - oldest)

    @contextlib.asynccontextmanager
    async def background(self):
        """Hold a background slot (one of the bulk slots too) while the body runs."""
        shared, mine = self._slots()
        async with mine, shared:
            yield

    async def run_bulk(self, fn, /, *args, **kwargs):
        async with self.bulk():
            return await self.run(fn, *args, **kwargs)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
