"""The bounded executors between asyncio and blocking code (boto3, argon2): three lanes and a hasher.

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
      ``async with blocking.hashing(max_wait):`` then ``await blocking.run_hashing(fn, ...)``:
      password hashing (argon2id, 64 MiB and ~0.3 s of CPU per check) on a pool of its own of
      ``hash_threads`` threads, so a login storm never holds the threads other sessions' backend
      calls need, and at most that many checks run at once (memory).
      Every executor thread runs at a lower CPU priority than the event loop's thread
      (``nice``, ``hash_nice`` added to the process's; Linux applies ``setpriority`` to one
      thread): `make load` showed the loop runnable but waiting for a core 20 times longer than
      it ran, behind this process's own executor threads (argon2 and boto3's request signing and
      response parsing). A NOOP the loop answers from its own state then waits for nothing but the
      loop (docs/load.md).
Fails: after ``shutdown()`` new calls raise RuntimeError. ``hashing`` raises
      :class:`~postern.errors.AuthBusy` (a temporary refusal every protocol can say: 454 4.7.0,
      ``NO [UNAVAILABLE]``, ``-ERR [SYS/TEMP]``) when no hashing slot came free within
      ``max_wait`` seconds, instead of leaving the client to time out.

Nothing in the gateway calls boto3 on the event loop (pymap ``concurrent.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import itertools
import logging
import os
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor

from postern.errors import AuthBusy

log = logging.getLogger("postern.gateway")

# At most this many password checks at once (the gateway passes POSTERN_PASSWORD_CHECKS). Each
# argon2id check takes 64 MiB (postern.passwords); unbounded, `make load` measured 964 MiB peak RSS
# from 12 simultaneous IMAP logins, on a 1 GB Fargate task. More at once would not finish sooner on
# the task's vCPU either: the template sets one on a quarter vCPU (the access task's peak 345 -> 152
# MiB under its share of `make load`, docs/cost.md "Task sizes").
HASH_THREADS = 4
# Nice values added to every executor thread (boto3 calls) and hashing thread. The loop's thread
# keeps the process's own priority, so when it is runnable it gets the core first: CFS gives a
# thread at +5 about a third of the share of one at +0, at +10 about a tenth.
WORKER_NICE = 5
HASH_NICE = 10


def lower_priority(increment: int) -> None:
    """Run the calling thread ``increment`` nice levels below its process (Linux: per thread;
    raising one's own nice value needs no privilege). Elsewhere, or if refused, nothing changes."""
    if increment <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + increment))
    except OSError:
        log.debug("could not lower an executor thread's priority", exc_info=True)


class Blocking:
    def __init__(self, threads: int = 16, clock=time.monotonic, *, hash_threads: int = HASH_THREADS,
                 nice: int = WORKER_NICE, hash_nice: int = HASH_NICE):
        self.threads = threads
        self.hash_threads = max(1, hash_threads)
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
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="postern-aws",
                                        initializer=lower_priority, initargs=(nice,))
        self._hash_pool = ThreadPoolExecutor(max_workers=self.hash_threads, thread_name_prefix="postern-hash",
                                             initializer=lower_priority, initargs=(hash_nice,))
        self._hash_slots: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    async def run(self, fn, /, *args, **kwargs):
        return await self._on(self._pool, fn, *args, **kwargs)

    @staticmethod
    async def _on(pool, fn, /, *args, **kwargs):
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        call = functools.partial(ctx.run, fn, *args, **kwargs)
        return await loop.run_in_executor(pool, call)

    @contextlib.asynccontextmanager
    async def hashing(self, max_wait: float):
        """Hold one of the ``hash_threads`` hashing slots while the body runs (``run_hashing``);
        AuthBusy when none came free within ``max_wait`` seconds (<= 0: wait as long as it takes)."""
        loop = asyncio.get_running_loop()
        slots = self._hash_slots.get(loop)
        if slots is None:
            slots = self._hash_slots[loop] = asyncio.Semaphore(self.hash_threads)
        if max_wait > 0:
            try:
                await asyncio.wait_for(slots.acquire(), max_wait)
            except TimeoutError:
                raise AuthBusy() from None
        else:
            await slots.acquire()
        try:
            yield
        finally:
            slots.release()

    async def run_hashing(self, fn, /, *args, **kwargs):
        """``fn`` (a password check) on the hashing pool; hold a ``hashing`` slot around it."""
        return await self._on(self._hash_pool, fn, *args, **kwargs)

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
        self._hash_pool.shutdown(wait=False, cancel_futures=True)
