"""A listener on 127.0.0.1:0 in a background loop, fed random byte streams by the fuzz tests.

In:   a listener factory with the agreed signature (``start_smtp``/``start_pop3``/``start_imap``)
      and a Backend.
Out:  :class:`Harness`: ``session(data)`` connects, sends ``data``, half-closes, and reads
      until the server closes (raises :class:`Hang` if it does not within ``deadline``);
      ``alive()`` checks a fresh connection still gets a greeting; ``problems`` collects every
      exception that reached a logger at ERROR (``log.exception`` in a catch-all counts: an
      internal error is a bug even when the session survives it) or the loop's exception handler.
      ``rss_mb()`` is the process's resident memory.

Liveness per input, not only "no crash" (the ceilings of postern_local.liveness): while the
harness lives, a canary (:class:`~postern_local.liveness.Canary`) opens a fresh connection to
the same listener every 50 ms and times its greeting. ``session(data)`` (and ``with
harness.input():`` around a test's own client I/O) fails the example when, during it, the
canary waited longer than ``STALL_CEILING`` (2 s), a canary probe failed, or the process's peak
RSS grew more than :data:`INPUT_RSS_GROWTH_MB` (128 MiB, two argon2id checks: the listener
shares this process with pytest, so growth is what is bounded, not the total). :func:`bounded`
does the same for the pure parser fuzzers: one input may not take more CPU than the stall
ceiling (what it would hold an event loop for) or grow memory past that. :data:`WORST` keeps
the worst stall and growth per target for the run's summary. Between inputs the harness
collects and freezes the heap now and then (:func:`_between_inputs`): hypothesis's growing
record made full collections of this process take seconds in long runs.

Example counts: ``POSTERN_FUZZ_EXAMPLES`` (default small, for ``make test``); e.g.
``POSTERN_FUZZ_EXAMPLES=2000 .venv/bin/python -m pytest --timeout=0 tests/unit/test_fuzz_*.py`` for a long run
(``--timeout=0`` lifts the suite's 120 s per-test limit); the run ends with a summary line of
cases per target (:data:`RUNS`) and the worst liveness figures.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import threading
import time
from contextlib import contextmanager

from hypothesis import HealthCheck, settings
from postern_local.liveness import STALL_CEILING, Canary, Greeting, PeakRss

from postern.config import Settings
from postern.directory import memory_directory
from postern.store.memory import MemoryMailStore
from postern_gateway.backend import Backend
from postern_gateway.blocking import Blocking

HOST = "127.0.0.1"
EXAMPLES = int(os.environ.get("POSTERN_FUZZ_EXAMPLES", "30"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
RUNS: dict[str, int] = {}  # fuzz cases run, per target (read by the report)
# Peak RSS growth allowed while one input runs (in-process: growth, not total). One argon2id check
# takes 64 MiB by design (postern.passwords; a login as an unknown user verifies a dummy hash with the
# production parameters), and an input may hold one: the long fuzz run measured 63.8 MiB.
INPUT_RSS_GROWTH_MB = 128
WORST: dict[str, list[float]] = {}  # target -> [longest stall s, largest peak RSS growth MiB]
_RSS = PeakRss()
_inputs = 0
GC_EVERY = 256  # inputs between two collect-and-freeze passes (outside any measured window)


def _between_inputs() -> bool:
    """Keep the collector's pauses out of the measured windows. This process is the server and
    hypothesis at once, and hypothesis's record of what it generated grows with every example: a
    long run's full collections traversed it for 0.2 s, then 1.4 s, then 4 s (measured with
    gc.callbacks), stalling the canary for reasons no gateway has. Every GC_EVERY inputs, between
    two of them, collect the garbage and freeze what is alive, so later collections skip it."""
    global _inputs
    _inputs += 1
    if _inputs % GC_EVERY:
        return False
    gc.collect()
    gc.freeze()
    return True


def write_report(path: str, outcomes: dict[str, int], exitstatus: int) -> None:
    """The run's figures as JSON (``make fuzz-long``): cases per target, the worst canary stall
    and per-input RSS growth per target, the process's peak RSS, pass/fail counts."""
    import json
    import resource
    import sys

    report = {
        "examples_per_property": EXAMPLES,
        "cases": dict(sorted(RUNS.items())),
        "total_cases": sum(RUNS.values()),
        "worst": {k: {"stall_s": round(w[0], 3), "rss_growth_mib": round(w[1], 1)} for k, w in sorted(WORST.items())},
        "max_stall_s": round(max((w[0] for w in WORST.values()), default=0.0), 3),
        "max_rss_growth_mib": round(max((w[1] for w in WORST.values()), default=0.0), 1),
        "process_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "tests": outcomes,
        "exitstatus": int(exitstatus),
        "argv": sys.argv,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(report, fh, indent=1)


def release() -> None:
    """After a fuzz module: what was frozen is collectable again (other tests may rely on it)."""
    gc.unfreeze()


def _record(target: str, stall: float, growth: float) -> None:
    w = WORST.setdefault(target, [0.0, 0.0])
    w[0], w[1] = max(w[0], stall), max(w[1], growth)


def _judge(target: str, stall: float, growth: float, failures: list[str]) -> None:
    _record(target, stall, growth)
    problems = []
    if stall > STALL_CEILING:
        problems.append(f"a second client stalled {stall:.2f} s (ceiling {STALL_CEILING} s)")
    if growth > INPUT_RSS_GROWTH_MB:
        problems.append(f"peak RSS grew {growth:.0f} MiB during one input (ceiling {INPUT_RSS_GROWTH_MB} MiB)")
    if failures:
        problems.append(f"canary probes failed: {failures[:3]}")
    assert not problems, "; ".join(problems)


@contextmanager
def bounded(target: str):
    """One input to a pure parser: within the stall ceiling (it would run on the event loop) and
    the per-input memory growth ceiling. The time is this thread's CPU time: what the call would
    hold a loop for, not how long a loaded machine kept it waiting."""
    _between_inputs()
    _RSS.reset()
    before = _RSS.current_mb()
    t0 = time.thread_time()
    yield
    _judge(target, time.thread_time() - t0, _RSS.peak_mb() - before, [])


class Hang(AssertionError):
    pass


class _Collect(logging.Handler):
    def __init__(self, sink):
        super().__init__(logging.ERROR)
        self.sink = sink

    def emit(self, record):
        if record.exc_info or record.levelno >= logging.ERROR:
            self.sink.append(f"{record.name}: {record.getMessage()}"
                             + (f" [{record.exc_info[0].__name__}: {record.exc_info[1]}]" if record.exc_info else ""))


def fuzz_backend(**overrides) -> Backend:
    base = {"login_fail_delay": 0.0, "allow_plaintext_auth": True, "hostname": "mx.example.test",
            "smtp_timeout": 5.0}
    base.update(overrides)
    s = Settings().replace(**base)
    return Backend(settings=s, store=MemoryMailStore(), directory=memory_directory(), blocking=Blocking(4))


class Harness:
    LOGGERS = ("postern", "mail.log", "asyncio")

    def __init__(self, start, backend, *, name: str = "", **kwargs):
        self.backend = backend
        self.problems: list[str] = []
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(lambda loop, ctx: self.problems.append(f"loop: {ctx.get('message')} "
                                                                               f"{ctx.get('exception')!r}"))
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="fuzz-server")
        self._thread.start()
        self._handler = _Collect(self.problems)
        for logger in self.LOGGERS:
            logging.getLogger(logger).addHandler(self._handler)
        fut = asyncio.run_coroutine_threadsafe(start(backend, HOST, 0, **kwargs), self.loop)
        self.server = fut.result(30)
        self.port = self.server.sockets[0].getsockname()[1]
        self.target = name or getattr(start, "__name__", "listener").removeprefix("start_")
        self.canary = Canary([Greeting(self.port)]).start()

    @contextmanager
    def input(self):
        """One fuzz input under the liveness ceilings (module docstring)."""
        if _between_inputs():  # a probe that waited out the collection must not count for this input
            self.canary.wait_probes(self.canary.mark(), 1)
        mark = self.canary.mark()
        _RSS.reset()
        before = _RSS.current_mb()
        yield
        _judge(self.target, self.canary.stall_since(mark), _RSS.peak_mb() - before,
               self.canary.failures_since(mark))

    def session(self, data: bytes, deadline: float = 10.0, greet: bool = True) -> bytes:
        with self.input():
            return self._session(data, deadline, greet)

    def _session(self, data: bytes, deadline: float, greet: bool) -> bytes:
        out = bytearray()
        end = time.monotonic() + deadline
        with socket.create_connection((HOST, self.port), timeout=deadline) as s:
            if greet:
                out += s.recv(4096)
            try:
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
            except (BrokenPipeError, ConnectionResetError):
                return bytes(out)  # the server hung up on us first: fine
            while True:
                left = end - time.monotonic()
                if left <= 0:
                    raise Hang(f"server did not close {deadline}s after EOF; last output {bytes(out[-200:])!r}")
                s.settimeout(left)
                try:
                    chunk = s.recv(65536)
                except TimeoutError:
                    continue
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                out += chunk
                if len(out) > 8 * 1024 * 1024:
                    raise AssertionError("unbounded output")
        return bytes(out)

    def alive(self) -> bool:
        with socket.create_connection((HOST, self.port), timeout=10) as s:
            return bool(s.recv(100))

    def assert_healthy(self) -> None:
        """Still greeting new clients, and nothing escaped a connection handler."""
        assert self.alive() and self.problems == []

    def assert_flood_bounded(self, total: int = 16 * 1024 * 1024) -> None:
        """A flood of ``total`` bytes without a line end stays within the per-input ceilings."""
        with self.input():
            self.flood(total)
        self.assert_healthy()

    @staticmethod
    def rss_mb() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6

    def flood(self, total: int, chunk: bytes = b"A" * 65536, deadline: float = 30.0) -> None:
        """Send ``total`` bytes with no line end while reading; the server may hang up at any point."""
        with socket.create_connection((HOST, self.port), timeout=deadline) as s:
            s.recv(4096)
            s.settimeout(0.0)
            sent = 0
            end = time.monotonic() + deadline
            while sent < total and time.monotonic() < end:
                try:
                    sent += s.send(chunk)
                except BlockingIOError:
                    time.sleep(0.005)
                except (BrokenPipeError, ConnectionResetError):
                    return
                try:
                    if s.recv(65536) == b"":
                        return
                except BlockingIOError:
                    pass
                except ConnectionResetError:
                    return

    def close(self) -> None:
        self.canary.stop()
        release()

        async def _stop():
            self.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(_stop(), self.loop).result(10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            for name in self.LOGGERS:
                logging.getLogger(name).removeHandler(self._handler)
            self.backend.blocking.shutdown()


def lines(parts: list[bytes], seps: list[bytes]) -> bytes:
    out = b""
    for i, p in enumerate(parts):
        out += p + seps[i % len(seps)]
    return out
