"""The one bounded executor between asyncio and blocking code (boto3, argon2).

In:   a blocking callable and its arguments.
Out:  ``await Blocking.run(fn, *args)`` runs it on a fixed-size thread pool
      (``POSTERN_AWS_THREADS``) and returns its result; exceptions propagate
      unchanged (domain errors keep their wire replies).
      ``await Blocking.run_bulk(fn, *args)`` is the same for work that arrives in
      bulk and may queue (spooling accepted SMTP mail): at most ``bulk_threads``
      such calls hold a thread at once, so the others (logins, IMAP and POP3
      commands) always find a free thread instead of queueing behind the backlog.
Fails: after ``shutdown()`` new calls raise RuntimeError.

Nothing in the gateway calls boto3 on the event loop (pymap ``concurrent.py``).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import weakref
from concurrent.futures import ThreadPoolExecutor


class Blocking:
    def __init__(self, threads: int = 16):
        self.threads = threads
        # A quarter of the threads (at least one) is kept from bulk work. `make load` (200 SMTP
        # sessions offering more mail than moto could take) had every thread spooling and a
        # FIFO queue behind them: IMAP NOOP p50 17 s, logins 75 s. With one thread the lane
        # cannot be split and bulk work shares it.
        self.bulk_threads = max(1, threads - max(1, threads // 4))
        self._bulk_slots: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="postern-aws")

    async def run(self, fn, /, *args, **kwargs):
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        call = functools.partial(ctx.run, fn, *args, **kwargs)
        return await loop.run_in_executor(self._pool, call)

    async def run_bulk(self, fn, /, *args, **kwargs):
        loop = asyncio.get_running_loop()
        slots = self._bulk_slots.get(loop)
        if slots is None:
            slots = self._bulk_slots[loop] = asyncio.Semaphore(self.bulk_threads)
        async with slots:
            return await self.run(fn, *args, **kwargs)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
