"""The fuzzers' per-input liveness ceilings catch what they claim (tests/unit/fuzz_harness.py).

A listener that blocks its event loop on one input (as a backtracking regex did, issue 11) fails
that input's session with "stalled"; one that balloons memory on an input fails it with "RSS";
a pure parser call that is slow or hungry fails :func:`bounded`. The stall ceiling is lowered
here so the checks take a fraction of a second.
"""

from __future__ import annotations

import asyncio
import time

import fuzz_harness
import pytest
from fuzz_harness import Harness, bounded, fuzz_backend


async def start_toy(backend, host, port):
    """Greets; 'BLOCK' freezes the loop 0.6 s; 'HOG' holds 256 MiB while answering; then closes."""

    async def handle(reader, writer):
        writer.write(b"+OK toy\r\n")
        line = await reader.readline()
        hog = None
        if line.startswith(b"BLOCK"):
            time.sleep(0.6)  # on the loop, on purpose
        elif line.startswith(b"HOG"):
            hog = bytearray(256 * 1024 * 1024)
            hog[::4096] = b"x" * len(hog[::4096])
        writer.write(b"+OK done\r\n")
        await writer.drain()
        writer.close()
        del hog

    return await asyncio.start_server(handle, host, port)


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setattr(fuzz_harness, "STALL_CEILING", 0.3)
    h = Harness(start_toy, fuzz_backend(), name="toy")
    yield h
    h.close()
    fuzz_harness.WORST.pop("toy", None)


def test_a_quiet_input_passes(toy):
    toy.canary.wait_probes(toy.canary.mark(), 2)
    assert b"done" in toy.session(b"PING\r\n")


def test_an_input_that_blocks_the_loop_fails(toy):
    toy.canary.wait_probes(toy.canary.mark(), 2)
    with pytest.raises(AssertionError, match="stalled"):
        toy.session(b"BLOCK\r\n")


def test_an_input_that_balloons_memory_fails(toy):
    with pytest.raises(AssertionError, match="peak RSS grew"):
        toy.session(b"HOG\r\n")


def test_bounded_pure_calls(monkeypatch):
    monkeypatch.setattr(fuzz_harness, "STALL_CEILING", 0.1)
    with bounded("selftest"):
        sum(range(1000))
    with bounded("selftest"):
        time.sleep(0.2)  # waiting is not holding a loop: CPU time is what counts
    with pytest.raises(AssertionError, match="stalled"), bounded("selftest"):
        end = time.thread_time() + 0.2
        while time.thread_time() < end:
            pass
    with pytest.raises(AssertionError, match="peak RSS grew"), bounded("selftest"):
        hog = bytearray(256 * 1024 * 1024)
        hog[::4096] = b"x" * len(hog[::4096])
    fuzz_harness.WORST.pop("selftest", None)
