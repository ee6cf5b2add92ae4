"""The work budget's process pool (postern_gateway.workers): a task past its time is killed,
past its memory ends in MemoryError, a failure hides its detail, and the pool keeps serving."""

from __future__ import annotations

import asyncio
import time

import pytest
from postern_gateway.workers import WorkBusy, WorkerPool, WorkFailed, WorkLimit


@pytest.fixture(scope="module")
def pool():
    p = WorkerPool(workers=2, memory_mb=256)
    yield p
    p.shutdown()


def run(coro):
    return asyncio.run(coro)


def test_round_trip_of_megabytes(pool):
    data = bytes(range(256)) * 40_000  # 10 MB each way
    assert run(pool.run("selftest", "echo", data, budget=30)) == data


def test_time_budget_kills_the_worker(pool):
    start = time.monotonic()
    with pytest.raises(WorkLimit) as exc:
        run(pool.run("selftest", "sleep", 60, budget=1.0))
    assert time.monotonic() - start < 10  # killed at the deadline, not after the task's 60 s
    assert exc.value.imap_response("t").startswith(b"t NO [LIMIT] ")
    assert run(pool.run("selftest", "echo", 1, budget=30)) == 1  # a fresh worker took its place


def test_memory_budget(pool):
    with pytest.raises(WorkLimit):
        run(pool.run("selftest", "alloc", 512, budget=30))  # 512 MiB under a 256 MiB RLIMIT_AS
    assert run(pool.run("selftest", "alloc", 16, budget=30)) == 16 * 1024 * 1024


def test_failure_detail_stays_private(pool):
    with pytest.raises(WorkFailed) as exc:
        run(pool.run("selftest", "raise", budget=30))
    assert b"selftest" not in exc.value.imap_response("t") and "RuntimeError" in exc.value.text


def test_busy_when_no_worker_frees_up(pool):
    async def main():
        slow = [asyncio.ensure_future(pool.run("selftest", "sleep", 2, budget=30)) for _ in range(2)]
        await asyncio.sleep(0.3)
        with pytest.raises(WorkBusy):
            await pool.run("selftest", "echo", 1, budget=0.5)
        await asyncio.gather(*slow)
        return await pool.run("selftest", "echo", 2, budget=30)

    assert run(main()) == 2


def test_only_registered_tasks(pool):
    with pytest.raises(KeyError):
        run(pool.run("os:system", "true", budget=1))
