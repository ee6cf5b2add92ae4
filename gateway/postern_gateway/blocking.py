"""The one bounded executor between asyncio and blocking code (boto3, argon2).

In:   a blocking callable and its arguments.
Out:  ``await Blocking.run(fn, *args)`` runs it on a fixed-size thread pool
      (``POSTERN_AWS_THREADS``) and returns its result; exceptions propagate
      unchanged (domain errors keep their wire replies).
Fails: after ``shutdown()`` new calls raise RuntimeError.

Nothing in the gateway calls boto3 on the event loop (pymap ``concurrent.py``).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from concurrent.futures import ThreadPoolExecutor


class Blocking:
    def __init__(self, threads: int = 16):
        self.threads = threads
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="postern-aws")

    async def run(self, fn, /, *args, **kwargs):
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        call = functools.partial(ctx.run, fn, *args, **kwargs)
        return await loop.run_in_executor(self._pool, call)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
