"""Login storms and bulk spooling: identical concurrent logins share one password check,
and bulk work (the SMTP spool) never takes every executor thread."""

import asyncio
import threading

import pytest

from postern.config import Settings
from postern.directory import memory_directory
from postern.errors import StoreUnavailable
from postern.store.memory import MemoryMailStore
from postern_gateway.auth import authenticate
from postern_gateway.backend import Backend
from postern_gateway.blocking import Blocking


def gated_backend(fail: bool = False):
    """A backend whose password checks block until ``gate`` is set; ``calls`` records them."""
    d = memory_directory()
    d.add_domain("example.test")
    d.add_user("alice@example.test", "secret")
    real = d.authenticate
    gate = threading.Event()
    calls = []

    def gated(u, p):
        calls.append(p)
        gate.wait(10)
        if fail:
            raise StoreUnavailable("directory down")
        return real(u, p)

    d.authenticate = gated
    return Backend(Settings().replace(login_fail_delay=0), MemoryMailStore(), d, Blocking(8)), gate, calls


async def until(cond):
    for _ in range(500):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")


def test_identical_concurrent_logins_share_one_check_and_a_wrong_password_gets_its_own():
    b, gate, calls = gated_backend()

    async def run():
        right = [asyncio.create_task(authenticate(b, n, "secret"))
                 for n in ("alice@example.test", "ALICE@example.test", "alice@example.test")]
        wrong = asyncio.create_task(authenticate(b, "alice@example.test", "nope"))
        await until(lambda: len(calls) == 2)
        await asyncio.sleep(0.05)  # let any extra (wrong) check start, so it would be counted
        gate.set()
        return await asyncio.gather(*right), await wrong

    right, wrong = asyncio.run(run())
    b.blocking.shutdown()
    assert sorted(calls) == ["nope", "secret"]
    assert all(u is not None and u.address == "alice@example.test" for u in right)
    assert wrong is None


def test_a_waiter_that_leaves_does_not_cancel_the_check_for_the_others():
    b, gate, calls = gated_backend()

    async def run():
        first = asyncio.create_task(authenticate(b, "alice@example.test", "secret"))
        second = asyncio.create_task(authenticate(b, "alice@example.test", "secret"))
        await until(lambda: len(calls) == 1)
        first.cancel()  # the client that started the check disconnects
        gate.set()
        user = await second
        with pytest.raises(asyncio.CancelledError):
            await first
        cached = await authenticate(b, "alice@example.test", "secret")  # from the cache: no new check
        return user, cached

    user, cached = asyncio.run(run())
    b.blocking.shutdown()
    assert user is not None and cached == user
    assert calls == ["secret"]


def test_a_failing_check_fails_every_waiter_and_is_not_remembered():
    b, gate, calls = gated_backend(fail=True)

    async def run():
        tasks = [asyncio.create_task(authenticate(b, "alice@example.test", "secret")) for _ in range(3)]
        await until(lambda: len(calls) == 1)
        gate.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        with pytest.raises(StoreUnavailable):  # the next login checks again
            await authenticate(b, "alice@example.test", "secret")
        return results

    results = asyncio.run(run())
    b.blocking.shutdown()
    assert all(isinstance(r, StoreUnavailable) for r in results)
    assert len(calls) == 2


@pytest.mark.parametrize("threads,bulk", [(1, 1), (2, 1), (4, 2), (16, 8)])
def test_bulk_share(threads, bulk):
    b = Blocking(threads)
    assert b.bulk_threads == bulk
    b.shutdown()


def test_bulk_work_leaves_a_thread_for_other_calls():
    b = Blocking(4)
    gate = threading.Event()
    lock = threading.Lock()
    running = [0, 0]  # now, most at once

    def bulk():
        with lock:
            running[0] += 1
            running[1] = max(running[1], running[0])
        gate.wait(10)
        with lock:
            running[0] -= 1

    async def run():
        backlog = [asyncio.create_task(b.run_bulk(bulk)) for _ in range(10)]
        await until(lambda: running[0] == b.bulk_threads)
        other = await asyncio.wait_for(b.run(lambda: "served"), 10)  # not queued behind the backlog
        gate.set()
        await asyncio.gather(*backlog)
        return other

    assert asyncio.run(run()) == "served"
    b.shutdown()
    assert running[1] == 2


@pytest.mark.parametrize("slots", [1, 2])
def test_no_more_password_checks_at_once_than_the_hashing_threads(slots):
    """The hashing pool bounds the argon2id checks (64 MiB each) running together: on a quarter vCPU one
    at a time gives the same logins a second as four, and 192 MiB less peak memory (docs/cost.md)."""
    b, gate, calls = gated_backend()
    b.blocking.shutdown()
    b.blocking = Blocking(8, hash_threads=slots)
    for n in range(4):
        b.directory.add_user(f"u{n}@example.test", "secret")

    async def run():
        logins = [asyncio.create_task(authenticate(b, f"u{n}@example.test", "secret")) for n in range(4)]
        await until(lambda: len(calls) == slots)
        await asyncio.sleep(0.1)  # a check past the bound would have started by now
        started = len(calls)
        gate.set()
        return started, await asyncio.gather(*logins)

    started, users = asyncio.run(run())
    b.blocking.shutdown()
    assert started == slots and len(calls) == 4
    assert [u.address for u in users] == [f"u{n}@example.test" for n in range(4)]


def test_the_gateway_hashes_with_as_many_threads_as_postern_password_checks():
    from postern.aws import Clients
    from postern_gateway.app import build_backend

    assert Settings.from_env({}).password_checks == 4
    assert Settings.from_env({"POSTERN_PASSWORD_CHECKS": "0"}).password_checks == 1
    settings = Settings.from_env({"POSTERN_PASSWORD_CHECKS": "1", "AWS_DEFAULT_REGION": "us-east-1"})
    backend = build_backend(settings, Clients(settings))
    try:
        assert backend.blocking.hash_threads == 1
    finally:
        backend.blocking.shutdown()
