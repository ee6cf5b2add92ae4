"""The work budget: a small pool of worker processes for CPU-heavy work an outsider controls.

In:   from a coroutine, :meth:`WorkerPool.run` with a task name of :data:`TASKS` and picklable
      arguments (message bytes, header blocks, parsed search keys), a time budget in seconds.
Out:  the task's return value, computed in a worker process; the event loop only waits.
Fails: :class:`WorkLimit` (IMAP ``NO [LIMIT]``) when the task ran past its time budget (its
      worker is killed and replaced) or past its memory (``RLIMIT_AS``: MemoryError, or the
      worker died); :class:`WorkBusy` (``NO [UNAVAILABLE]``) when no worker became free within
      the budget; :class:`WorkFailed` (``NO [UNAVAILABLE]``) when the task raised (a bug: the
      traceback is logged by the worker, the client is not told more).

Why processes, and not a step budget or a thread (issue 11): the expensive steps are inside
code that cannot count its own steps or be interrupted -- the stdlib email parser handed a
10,000-part message (seconds per BODY search), substring scans over megabytes of decoded text,
header decoding -- and all of it holds the GIL. On a thread it still stalls every listener, and
a thread cannot be stopped when it runs too long. A worker process runs it beside the event
loop, is killed (SIGKILL) the moment its time is up, and has ``RLIMIT_AS`` so memory past its
share ends the task with MemoryError instead of the gateway. Small inputs whose cost is bounded
by their size stay inline (the callers decide, e.g. ``imap/work.py``): a pipe round trip costs
more than parsing a 4 KiB message.

The pool is one per gateway process (:func:`pool`), started lazily: ``settings.work_workers``
processes (``python -m postern_gateway.workers``), each serving one task at a time over its
stdin/stdout (length-prefixed pickle; the child is ours, nothing else writes to that pipe). A
task waiting for a worker waits in a thread, never on the loop; the budget counts from the
moment it was submitted. A worker whose parent dies reads EOF and exits. Workers run at nice 10:
on a Fargate task's fraction of a CPU, the event loop keeps most of it while they compute.
"""

from __future__ import annotations

import asyncio
import atexit
import fcntl
import importlib
import logging
import os
import pickle
import queue
import resource
import select
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from postern.errors import PosternError

log = logging.getLogger("postern.workers")

# Tasks a worker may run: name -> "module:function". Nothing else is importable through the pipe.
TASKS = {
    "search": "postern_gateway.imap.work:search_chunk",
    "sort_keys": "postern_gateway.imap.work:sort_keys_chunk",
    "sort_order": "postern_gateway.imap.work:sort_order",
    "thread_facts": "postern_gateway.imap.work:thread_facts_chunk",
    "thread": "postern_gateway.imap.work:thread_text",
    "bodystructure": "postern_gateway.imap.work:bodystructure",
    "section": "postern_gateway.imap.work:section",
    "envelope": "postern_gateway.imap.work:envelope",
    "selftest": "postern_gateway.workers:_selftest",
}
_HEADER = 8  # bytes of the length prefix
_PIPE_SIZE = 1 << 20


class WorkLimit(PosternError):
    """The work of one command went past its budget (time or memory)."""

    imap_code = "LIMIT"  # RFC 5530 §3: the operation ran into a hard limit of the server
    pop3_code = "SYS/TEMP"

    @classmethod
    def default_message(cls) -> str:
        return "Too much work for one command; narrow it down"

    @classmethod
    def memory(cls) -> WorkLimit:
        """The task ran out of memory (MemoryError, in a worker or inline)."""
        return cls("memory budget exhausted")


# What ends a task as over its budget, never as an answer about the data: RLIMIT_AS shows as
# MemoryError. Code on the workers' path that turns a failure into an answer ("unreadable data
# does not match", "a malformed header reads as the default") lets these through
# (``except workers.EXHAUSTED: raise`` before its ``except Exception``): the worker then answers
# "memory" and the client gets WorkLimit's NO [LIMIT], never a silently wrong result.
EXHAUSTED: tuple[type[BaseException], ...] = (MemoryError, WorkLimit)


class WorkBusy(PosternError):
    imap_code = "UNAVAILABLE"
    pop3_code = "SYS/TEMP"

    @classmethod
    def default_message(cls) -> str:
        return "Server busy, try again later"


class WorkFailed(PosternError):
    imap_code = "UNAVAILABLE"
    pop3_code = "SYS/TEMP"

    @classmethod
    def default_message(cls) -> str:
        return "Internal error, try again later"

    @property
    def public_text(self) -> str:
        return self.default_message()


# --- the gateway side ---------------------------------------------------------------------
class _Worker:
    """One worker process and its pipes; used by one thread at a time."""

    def __init__(self, memory: int):
        self.memory = memory
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self._spawn()

    def _spawn(self) -> subprocess.Popen:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "postern_gateway.workers", str(self.memory)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True, start_new_session=True)
        os.set_blocking(self.proc.stdin.fileno(), False)  # writes are paced by select (_write)
        for f in (self.proc.stdin, self.proc.stdout):
            try:  # fewer wake-ups for megabytes of mail (Linux F_SETPIPE_SZ; 64 KiB otherwise)
                fcntl.fcntl(f.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), _PIPE_SIZE)
            except OSError:
                pass
        return self.proc

    def kill(self) -> None:
        p, self.proc = self.proc, None
        if p is not None and p.poll() is None:
            p.kill()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass
        if p is not None:
            for f in (p.stdin, p.stdout):
                try:
                    f.close()
                except OSError:
                    pass

    def call(self, payload: bytes, deadline: float):
        proc = self.proc if self.proc is not None and self.proc.poll() is None else self._spawn()
        try:
            self._write(proc, len(payload).to_bytes(_HEADER, "big") + payload, deadline)
            head = self._read(proc, _HEADER, deadline)
            body = self._read(proc, int.from_bytes(head, "big"), deadline)
        except TimeoutError:  # (an OSError: first)
            self.kill()
            raise WorkLimit("time budget exhausted") from None
        except (EOFError, OSError):
            self.kill()  # died mid-task: the kernel's OOM killer, or RLIMIT_AS hit outside Python
            raise WorkLimit("worker died (memory budget)") from None
        status, value = pickle.loads(body)
        if status == "ok":
            return value
        if status == "memory":
            self.kill()  # after a MemoryError the worker starts afresh
            raise WorkLimit.memory()
        raise WorkFailed(value)

    @staticmethod
    def _write(proc: subprocess.Popen, data: bytes, deadline: float) -> None:
        fd = proc.stdin.fileno()
        view = memoryview(data)
        while view:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            _, ready, _ = select.select([], [fd], [], left)
            if not ready:
                raise TimeoutError
            try:
                view = view[os.write(fd, view[:_PIPE_SIZE]) :]
            except BlockingIOError:
                continue

    @staticmethod
    def _read(proc: subprocess.Popen, n: int, deadline: float) -> bytes:
        fd = proc.stdout.fileno()
        out = bytearray()
        while len(out) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                raise TimeoutError
            chunk = os.read(fd, min(n - len(out), 1 << 20))
            if not chunk:
                raise EOFError
            out += chunk
        return bytes(out)


class WorkerPool:
    def __init__(self, workers: int = 2, memory_mb: int = 320):
        self.size = max(1, int(workers))
        self._idle: queue.LifoQueue[_Worker] = queue.LifoQueue()
        self._all = [_Worker(max(64, int(memory_mb)) * 1024 * 1024) for _ in range(self.size)]
        for w in self._all:
            w.start()  # the interpreter starts and imports while nobody waits for it
            self._idle.put(w)
        self._threads = ThreadPoolExecutor(self.size, thread_name_prefix="postern-work")
        self.stats = {"tasks": 0, "limits": 0}

    def _call(self, payload: bytes, deadline: float):
        try:
            worker = self._idle.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise WorkBusy() from None
        try:
            if time.monotonic() >= deadline:
                raise WorkBusy()
            return worker.call(payload, deadline)
        finally:
            self._idle.put(worker)

    async def run(self, task: str, *args: Any, budget: float) -> Any:
        """Run ``TASKS[task](*args)`` in a worker within ``budget`` seconds (see module docstring)."""
        if task not in TASKS:
            raise KeyError(task)
        deadline = time.monotonic() + budget
        payload = pickle.dumps((task, args), protocol=pickle.HIGHEST_PROTOCOL)
        self.stats["tasks"] += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._threads, self._call, payload, deadline)
        except WorkLimit:
            self.stats["limits"] += 1
            raise

    def shutdown(self) -> None:
        for w in self._all:
            w.kill()
        self._threads.shutdown(wait=False, cancel_futures=True)


_POOL: WorkerPool | None = None
_POOL_LOCK = threading.Lock()


def pool(settings) -> WorkerPool:
    """The gateway process's pool (created on first use with ``settings``' sizes)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = WorkerPool(getattr(settings, "work_workers", 2), getattr(settings, "work_memory_mb", 320))
            atexit.register(shutdown_pool)
        return _POOL


def shutdown_pool() -> None:
    """Stop the workers (gateway shutdown); a later :func:`pool` starts new ones."""
    global _POOL
    with _POOL_LOCK:
        p, _POOL = _POOL, None
    if p is not None:
        p.shutdown()


# --- the worker side ----------------------------------------------------------------------
def _selftest(kind: str, arg: int = 0):
    """For tests of the pool itself: ``echo``, ``sleep`` (seconds), ``alloc`` (MiB), ``raise``."""
    if kind == "sleep":
        time.sleep(arg)
    elif kind == "alloc":
        return len(bytearray(arg * 1024 * 1024))
    elif kind == "raise":
        raise RuntimeError("selftest")
    return arg


def _resolve(name: str):
    module, _, fn = TASKS[name].partition(":")
    return getattr(importlib.import_module(module), fn)


def _read_exact(f, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = f.read(n - len(out))
        if not chunk:
            raise EOFError
        out += chunk
    return bytes(out)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the gateway decides when we stop
    memory = int(argv[0]) if argv else 320 * 1024 * 1024
    os.nice(10)  # the gateway's event loop comes first when they share a CPU
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = memory if hard == resource.RLIM_INFINITY else min(memory, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    rin, wout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but replies goes to the pipe
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    for name in TASKS:  # import now, while waiting for the first task
        _resolve(name)
    while True:
        try:
            n = int.from_bytes(_read_exact(rin, _HEADER), "big")
            name, args = pickle.loads(_read_exact(rin, n))
        except EOFError:
            return 0
        try:
            reply = ("ok", _resolve(name)(*args))
        except EXHAUSTED:
            reply = ("memory", "")
        except Exception as exc:  # noqa: BLE001 - reported to the gateway, which answers the client
            log.exception("work task %s failed", name)
            reply = ("error", f"{type(exc).__name__}: {exc}"[:500])
        try:
            out = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
        except MemoryError:
            out = pickle.dumps(("memory", ""))
        wout.write(len(out).to_bytes(_HEADER, "big") + out)
        wout.flush()
        if reply[0] == "memory":
            return 0  # start afresh: the gateway respawns


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
