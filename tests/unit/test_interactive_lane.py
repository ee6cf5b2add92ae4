"""Interactive commands under load (issue 12, docs/load.md): what a client waits for never queues
behind bulk or background work, and what the gateway already knows costs no backend call.

- the executor's lanes: background work (the IMAP watchers' reads) is capped apart from the SMTP
  spool's bulk lane, both together leave a quarter of the threads to interactive calls;
- a cached login (credentials verified moments ago, the address let in by the lockout counters
  moments ago) reads only the directory's credential generation; a failure makes the next one
  read the lockout counters again;
- NOOP/IDLE answer from the watcher while the change feed is live; EXPUNGE still reads the log;
- every executor thread (boto3 calls, password hashing) runs below the event loop's CPU priority.
"""

import asyncio
import os
import threading
from types import SimpleNamespace

import pytest

from postern.config import Settings
from postern.directory import memory_directory
from postern.limits import ALLOWED_MEMO, Limits, MemoryCounters
from postern.store.memory import MemoryMailStore
from postern_gateway.auth import authenticate
from postern_gateway.backend import Backend
from postern_gateway.blocking import Blocking
from postern_gateway.imap.watcher import Runtime

USER, PW = "alice@example.test", "secret"


async def until(cond):
    for _ in range(1000):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")


@pytest.mark.parametrize("threads,background", [(1, 1), (4, 1), (16, 4)])
def test_background_share(threads, background):
    b = Blocking(threads)
    assert b.background_threads == background
    b.shutdown()


def test_background_and_bulk_work_leave_threads_for_interactive_calls():
    b = Blocking(8)  # bulk + background at most 4 at once, background at most 2
    gate = threading.Event()
    lock = threading.Lock()
    running = {"bulk": 0, "background": 0}
    most = {"bulk": 0, "background": 0, "both": 0}

    def work(kind):
        with lock:
            running[kind] += 1
            most[kind] = max(most[kind], running[kind])
            most["both"] = max(most["both"], running["bulk"] + running["background"])
        gate.wait(10)
        with lock:
            running[kind] -= 1

    async def background_job():
        async with b.background():
            await b.run(work, "background")

    async def run():
        jobs = [asyncio.create_task(background_job()) for _ in range(5)]
        await until(lambda: running["background"] == 2)
        jobs += [asyncio.create_task(b.run_bulk(work, "bulk")) for _ in range(10)]
        await until(lambda: running["bulk"] + running["background"] == 4)
        served = await asyncio.wait_for(b.run(lambda: "served"), 10)  # not queued behind either lane
        with lock:
            held = dict(most)  # once the gate opens, bulk calls take the background's slots too
        gate.set()
        await asyncio.gather(*jobs)
        return served, held

    served, held = asyncio.run(run())
    b.shutdown()
    assert served == "served"
    assert held == {"bulk": 2, "background": 2, "both": 4}
    assert most["both"] <= 4


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="per-thread nice values are a Linux feature")
def test_executor_threads_run_below_the_event_loop_priority():
    b = Blocking(2, nice=5, hash_nice=10)

    def mine():
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    async def run():
        async with b.hashing(0):
            hashing = await b.run_hashing(mine)
        return mine(), await b.run(mine), hashing

    loop_nice, worker_nice, hash_nice = asyncio.run(run())
    b.shutdown()
    assert loop_nice == os.getpriority(os.PRIO_PROCESS, 0)  # the loop's thread keeps the process's priority
    assert worker_nice == min(19, loop_nice + 5)
    assert hash_nice == min(19, loop_nice + 10)


def counting_backend():
    d = memory_directory()
    d.add_domain("example.test")
    d.add_user(USER, PW)
    settings = Settings().replace(login_fail_delay=0)
    b = Backend(settings, MemoryMailStore(), d, Blocking(4))
    b.limits = Limits(settings, MemoryCounters())
    calls = []
    real = b.run

    async def run(fn, *args, **kwargs):
        calls.append(getattr(fn, "__name__", repr(fn)))
        return await real(fn, *args, **kwargs)

    b.run = run
    real_hashing = b.blocking.run_hashing

    async def run_hashing(fn, *args, **kwargs):  # the password checks, on their own pool
        calls.append(getattr(fn, "__name__", repr(fn)))
        return await real_hashing(fn, *args, **kwargs)

    b.blocking.run_hashing = run_hashing
    return b, calls


def test_cached_login_reads_only_the_credential_generation_and_a_failure_brings_the_lockout_read_back():
    b, calls = counting_backend()

    async def run():
        first = await authenticate(b, USER, PW, client_ip="192.0.2.1", protocol="imap")
        n_first = len(calls)
        second = await authenticate(b, USER.upper(), PW, client_ip="192.0.2.1", protocol="imap")
        second_calls = calls[n_first:]
        other_ip = await authenticate(b, USER, PW, client_ip="192.0.2.9", protocol="imap")
        after_other = list(calls)
        assert await authenticate(b, USER, "wrong", client_ip="192.0.2.7", protocol="imap") is None
        mark = len(calls)
        again = await authenticate(b, USER, PW, client_ip="192.0.2.1", protocol="imap")
        return first, second, n_first, second_calls, other_ip, after_other, calls[mark:], again

    first, second, n_first, second_calls, other_ip, after_other, after_failure, again = asyncio.run(run())
    b.blocking.shutdown()
    assert first is not None and second is not None and other_ip is not None and again is not None
    assert {"auth_allowed", "authenticate", "auth_succeeded"} <= set(after_other[:n_first])
    # the cached login: no lockout read, no password check, no known-client write; only the
    # directory's credential generation (a password changed elsewhere is refused at once)
    assert second_calls == ["get_user"]
    # another address of the same account reads the counters (and writes its known client) itself
    assert after_other[n_first + 1:] == ["auth_allowed", "get_user", "auth_succeeded"]
    assert after_failure == ["auth_allowed", "get_user"]  # the failure cleared the memo: the counters are read


def test_an_old_allowance_is_read_again():
    b, calls = counting_backend()
    now = [1000.0]
    b.limits._clock = lambda: now[0]

    async def run():
        await authenticate(b, USER, PW, client_ip="192.0.2.1")
        mark = len(calls)
        now[0] += ALLOWED_MEMO + 1
        await authenticate(b, USER, PW, client_ip="192.0.2.1")
        return calls[mark:]

    assert asyncio.run(run()) == ["auth_allowed", "get_user"]
    b.blocking.shutdown()


class CountingMail:
    """The facade's follow (the account's change log), counted; everything else unused."""

    def __init__(self):
        self.follows = 0

    async def follow(self, user, after, limit=None):
        self.follows += 1
        return []


def test_noop_reads_the_log_only_without_a_live_change_feed():
    mail = CountingMail()
    rt = Runtime(SimpleNamespace(mail=mail, settings=Settings()))
    mb = SimpleNamespace(user=USER, mailbox_id="m1", uidvalidity=1)
    from postern_gateway.imap.watcher import MailboxIndex, Watcher

    w = Watcher(rt, mb, MailboxIndex(USER, "m1", 1))

    async def run():
        await w.refresh()  # no change feed: NOOP reads
        rt.change_feed = SimpleNamespace(live=True)
        await w.refresh()  # the feed is live: the watcher's state answers
        await w.refresh(force=True)  # EXPUNGE/CLOSE: always read
        rt.change_feed.live = False
        await w.refresh()

    asyncio.run(run())
    assert mail.follows == 3
