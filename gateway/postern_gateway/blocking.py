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
      at most ``bulk_threads`` threads, half (background alone at most
      ``background_threads``, a quarter), so half the threads are always left to the
      interactive lane: a login or a NOOP never queues behind the spool backlog or
      a hundred watchers catching up.
      ``bulk_wait()``: seconds since the oldest bulk call not yet finished asked for a slot
      (0 when none is under way): how far behind the bulk lane is (the SMTP sessions'
      admission check).
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
        self._bulk_calls: dict[int, float] = {}  # bulk call number -> when it asked for a slot (in order)
        self._bulk_queued = 0  # of those, still waiting for their slot
        self._call_ids = itertools.count()
        # Half the threads (at least one) are kept from bulk and background work. `make load`
        # (200 SMTP sessions offering more mail than moto could take) had every thread spooling and
        # a FIFO queue behind them: IMAP NOOP p50 17 s, logins 75 s. With a quarter kept, the
        # interactive calls of 170 IMAP/POP3 sessions queued for 4 threads while 12 spooled (each
        # thread's call also takes its share of the backend): POP3 sessions and SELECTs timed out at
        # 60 s. Mail that cannot be spooled soon enough is deferred at MAIL (SMTP 451 4.3.2,
        # POSTERN_SPOOL_MAX_WAIT); a client waiting on a command cannot be. With one thread the lane
        # cannot be split and everything shares it.
        self.bulk_threads = max(1, threads // 2)
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
        call = next(self._call_ids)
        self._bulk_calls[call] = self._clock()
        self._bulk_queued += 1
        try:
            try:
                await shared.acquire()
            finally:
                self._bulk_queued -= 1
            try:
                yield
            finally:
                shared.release()
        finally:
            del self._bulk_calls[call]

    def bulk_queued(self) -> int:
        """Bulk calls waiting for a slot now."""
        return self._bulk_queued

    def bulk_wait(self) -> float:
        """Seconds since the oldest bulk call not yet finished asked for its slot (0.0: none is
        under way): what a new one can expect to wait for its turn and its own call, at least."""
        oldest = next(iter(self._bulk_calls.values()), None)  # dicts keep insertion order
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
