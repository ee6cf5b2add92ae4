"""Liveness under attack: a canary client, peak memory, and a gateway process under RLIMIT_AS.

The hostile-input battery (tests/e2e/test_hostile_*.py) and the fuzzers (tests/unit/test_fuzz_*.py)
judge an attack by two things an operator feels, never by speed: does a *second*, innocent
session keep being served while the attack runs, and does the gateway's memory stay bounded.

In:   for :class:`HostileGateway`, a started :class:`~postern_local.stack.LocalStack` (the e2e
      ``stack`` fixture: moto, tables, queues) and a canary account in its directory; for
      :class:`Canary` alone, any listening port (the fuzzers' in-process listeners).
Out:
  * :class:`HostileGateway` runs ``python -m postern_gateway`` in its own process
    (:class:`~postern_local.gatewayproc.GatewayProcess`) under ``RLIMIT_AS`` (:data:`ADDRESS_SPACE`,
    1 GiB, with ``MALLOC_ARENA_MAX=2`` so glibc's per-thread arenas do not eat it), so a
    regression that balloons memory fails its test with a MemoryError or a dead process instead of
    exhausting the machine (the 1 MB Subject of issue 11 reached 24 GB). Per-IP caps are lifted
    (every attacker and the canary share 127.0.0.1; what is tested is the per-connection and
    per-command budget, not the per-IP one) and the login delay is 0.
    ``measure(attack)`` runs ``attack()`` (any callable; it talks to ``ports``) while a
    :class:`Canary` probes the same gateway, and returns a :class:`Liveness`.
  * :class:`Canary`: a thread that, every :data:`PROBE_INTERVAL` seconds, runs one of its probes in
    turn and records how long each took: :class:`Greeting` (a fresh connection until the first
    line: SMTP ``220``, IMAP ``* OK``, POP3 ``+OK``) and :class:`ImapNoop` (``NOOP`` on a session
    logged in once, reconnecting if it was dropped). ``mark()`` / ``stall_since(mark)``: the
    longest probe that ended after the mark, or the age of the probe still running (a stalled
    server makes the current probe old, not absent).
  * :class:`PeakRss`: the peak resident memory of a process since ``reset()`` (the kernel's
    ``VmHWM``, reset through ``/proc/<pid>/clear_refs``; no sampling, so a 10 ms spike counts).
    :class:`TreeRss` samples (every 20 ms) the summed RSS of the process and its descendants:
    the gateway's work-budget workers (postern_gateway.workers) are processes of their own.
  * :class:`Liveness`: ``longest_stall`` (s), ``peak_rss_mb``, ``alive``, ``probes``,
    ``failures``, ``detail``; ``check()`` raises AssertionError naming the ceiling broken.
  * :func:`record`: each ``HostileGateway.measure`` also writes its figures, keyed by the test
    that ran it (and a label), to ``$POSTERN_EVIDENCE_DIR/hostile.json`` (default
    ``.postern-local/evidence``), so a run of the battery leaves the bounds it held on disk
    (docs/hostile.md's table is read from it).
  * :class:`IMAP4From`, :class:`POP3From`: the stdlib clients connecting from another loopback
    address (all of 127/8 is local; smtplib takes ``source_address`` itself), for attacks and
    victims that must not share one client IP.
Ceilings (wide margins, liveness not performance: bench/ holds speed and memory targets):
      :data:`STALL_CEILING` 2 s for the canary, :data:`RSS_CEILING_MB` 512 MiB peak RSS of the
      gateway process, :data:`TASK_CEILING_MB` 1 GiB for the gateway and its workers together
      (the default task size: each worker has its own, smaller RLIMIT_AS).
Fails: ``HostileGateway.start()`` raises RuntimeError (with the process's stderr) if the
      listeners do not come up; a canary probe that errors or times out counts as a stall of its
      duration and as a failure (``Liveness.failures``), it never raises into the test.

Example (tests/e2e/test_hostile_preauth.py)::

    def test_flood(hostile):
        result = hostile.measure(lambda: flood(hostile.ports["imap"]))
        result.check()
"""

from __future__ import annotations

import imaplib
import json
import os
import poplib
import resource
import socket
import threading
import time
from dataclasses import dataclass, field

from .gatewayproc import GatewayProcess

HOST = "127.0.0.1"
STALL_CEILING = 2.0  # seconds: a second client's greeting or NOOP while the attack runs
RSS_CEILING_MB = 512  # peak resident memory of the gateway process during an attack
TASK_CEILING_MB = 1024  # the gateway process and its worker processes together (one Fargate task)
ADDRESS_SPACE = 1024 * 1024 * 1024  # RLIMIT_AS of the gateway under test
PROBE_INTERVAL = 0.05  # seconds between canary probes
PROBE_TIMEOUT = 30.0  # a probe taking longer has failed (and stalled for this long)

# What the gateway under test runs with (on top of the stack's environment): the limits a real
# attacker from many addresses would not meet are lifted, everything else stays the default.
HOSTILE_ENV = {
    "POSTERN_MAX_CONN_PER_IP": "1000",
    "POSTERN_AUTH_FAIL_IP_LIMIT": "100000",
    "POSTERN_LOGIN_FAIL_DELAY": "0",
    "MALLOC_ARENA_MAX": "2",
}


# --- probes ---------------------------------------------------------------------------
class Greeting:
    """A fresh connection, timed until the server's first line arrives."""

    def __init__(self, port: int, host: str = HOST, name: str = ""):
        self.host, self.port = host, port
        self.name = name or f"greeting:{port}"

    def __call__(self, timeout: float) -> None:
        with socket.create_connection((self.host, self.port), timeout=timeout) as s:
            line = _readline(s, timeout)
            if not line[:1] in (b"2", b"*", b"+", b'"'):  # SMTP, IMAP, POP3, ManageSieve ('"IMPLEMENTATION" ...')
                raise ConnectionError(f"unexpected greeting {line[:80]!r}")

    def close(self) -> None:
        pass


class ImapNoop:
    """``NOOP`` on one IMAP session, logged in once (reconnects after a drop)."""

    def __init__(self, port: int, user: str, password: str, host: str = HOST):
        self.host, self.port, self.user, self.password = host, port, user, password
        self.name = f"imap-noop:{port}"
        self._sock: socket.socket | None = None
        self._n = 0

    def _cmd(self, s: socket.socket, text: str, timeout: float) -> bytes:
        self._n += 1
        tag = f"c{self._n}".encode()
        s.sendall(tag + b" " + text.encode() + b"\r\n")
        while True:
            line = _readline(s, timeout)
            if line.startswith(tag + b" "):
                if not line.startswith(tag + b" OK"):
                    raise ConnectionError(f"canary {text.split()[0]}: {line[:120]!r}")
                return line

    def __call__(self, timeout: float) -> None:
        try:
            if self._sock is None:
                s = socket.create_connection((self.host, self.port), timeout=timeout)
                _readline(s, timeout)
                self._cmd(s, f'LOGIN "{self.user}" "{self.password}"', timeout)
                self._sock = s
            self._cmd(self._sock, "NOOP", timeout)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None


def _readline(s: socket.socket, timeout: float) -> bytes:
    """One line from a socket, byte by byte (probes read little; no buffering to lose)."""
    end = time.monotonic() + timeout
    out = bytearray()
    while not out.endswith(b"\n"):
        left = end - time.monotonic()
        if left <= 0:
            raise TimeoutError("probe timed out")
        s.settimeout(left)
        b = s.recv(1)
        if not b:
            raise ConnectionError("closed by server")
        out += b
        if len(out) > 65536:
            raise ConnectionError("probe reply line too long")
    return bytes(out)


class IMAP4From(imaplib.IMAP4):
    """imaplib from ``source`` (e.g. ``127.0.0.3``) to ``host:port``."""

    def __init__(self, port: int, source: str, host: str = HOST, timeout: float = 10):
        self.source = source
        super().__init__(host, port, timeout=timeout)

    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout, source_address=(self.source, 0))


class POP3From(poplib.POP3):
    """poplib from ``source`` to ``host:port``."""

    def __init__(self, port: int, source: str, host: str = HOST, timeout: float = 10):
        self.source = source
        super().__init__(host, port, timeout=timeout)

    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout, source_address=(self.source, 0))


# --- the canary -------------------------------------------------------------------------
@dataclass
class _Sample:
    end: float
    duration: float
    ok: bool
    probe: str
    error: str = ""


class Canary:
    """A second client probing the server while an attack runs (see module docstring)."""

    def __init__(self, probes, interval: float = PROBE_INTERVAL, timeout: float = PROBE_TIMEOUT):
        self.probes = list(probes)
        self.interval = interval
        self.timeout = timeout
        self._samples: list[_Sample] = []
        self._lock = threading.Lock()
        self._running_since: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Canary:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="canary", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout + 5)
        for p in self.probes:
            p.close()

    def __enter__(self) -> Canary:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            probe = self.probes[i % len(self.probes)]
            i += 1
            t0 = time.monotonic()
            with self._lock:
                self._running_since = t0
            ok, error = True, ""
            try:
                probe(self.timeout)
            except Exception as exc:  # noqa: BLE001 - a failed probe is a measurement, not a crash
                ok, error = False, f"{type(exc).__name__}: {exc}"
            t1 = time.monotonic()
            with self._lock:
                self._running_since = None
                self._samples.append(_Sample(t1, t1 - t0, ok, probe.name, error))
                if len(self._samples) > 100_000:
                    del self._samples[:50_000]
            self._stop.wait(self.interval)

    def mark(self) -> float:
        return time.monotonic()

    def _since(self, mark: float) -> list[_Sample]:
        with self._lock:
            return [s for s in self._samples if s.end >= mark]

    def stall_since(self, mark: float) -> float:
        """The longest probe that ended after ``mark``, or the one still running if older."""
        with self._lock:
            running = self._running_since
            done = [s.duration for s in self._samples if s.end >= mark]
        now = time.monotonic()
        return max([*done, (now - running) if running is not None else 0.0, 0.0])

    def probes_since(self, mark: float) -> int:
        return len(self._since(mark))

    def failures_since(self, mark: float) -> list[str]:
        return [f"{s.probe}: {s.error}" for s in self._since(mark) if not s.ok]

    def wait_probes(self, mark: float, n: int = 2, timeout: float = PROBE_TIMEOUT) -> None:
        """Block until ``n`` probes have completed after ``mark`` (or ``timeout``)."""
        end = time.monotonic() + timeout
        while self.probes_since(mark) < n and time.monotonic() < end:
            time.sleep(0.01)


# --- memory -----------------------------------------------------------------------------
class PeakRss:
    """Peak resident memory of ``pid`` (default: this process) since the last ``reset()``.

    The kernel's high-water mark ``VmHWM``, reset by writing 5 to ``/proc/<pid>/clear_refs``
    (Linux >= 4.0). Where that is not allowed, a thread samples ``VmRSS`` every 5 ms instead.
    """

    def __init__(self, pid: int | None = None):
        self.pid = pid or os.getpid()
        self._sampled: float | None = None
        self._sampler: threading.Thread | None = None
        self._stop = threading.Event()

    def _status(self, field_name: str) -> int:
        try:
            with open(f"/proc/{self.pid}/status") as fh:
                for line in fh:
                    if line.startswith(field_name + ":"):
                        return int(line.split()[1])
        except OSError:
            return 0
        return 0

    def reset(self) -> None:
        self._halt_sampler()
        try:
            with open(f"/proc/{self.pid}/clear_refs", "w") as fh:
                fh.write("5")
        except OSError:
            self._sampled = self.current_mb()
            self._stop.clear()
            self._sampler = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
            self._sampler.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self._sampled = max(self._sampled or 0.0, self.current_mb())

    def _halt_sampler(self) -> None:
        if self._sampler is not None:
            self._stop.set()
            self._sampler.join(1)
            self._sampler = None

    def current_mb(self) -> float:
        return self._status("VmRSS") / 1024

    def peak_mb(self) -> float:
        if self._sampler is not None:
            return max(self._sampled or 0.0, self.current_mb())
        return self._status("VmHWM") / 1024


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc/<pid>/task/*/children, recursively)."""
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tids:
            try:
                with open(f"/proc/{p}/task/{t}/children") as fh:
                    kids = [int(k) for k in fh.read().split()]
            except (OSError, ValueError):
                continue
            out += kids
            todo += kids
    return out


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class TreeRss:
    """Peak summed RSS of ``pid`` and its descendants while running (sampled every 20 ms)."""

    def __init__(self, pid: int, interval: float = 0.02):
        self.pid = pid
        self.interval = interval
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> TreeRss:
        self.peak_kb = self._sample()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="tree-rss", daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> int:
        return sum(_rss_kb(p) for p in [self.pid, *_descendants(self.pid)])

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_kb = max(self.peak_kb, self._sample())

    def stop(self) -> float:
        """Stop sampling; the peak in MiB."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.peak_kb = max(self.peak_kb, self._sample())
        return self.peak_kb / 1024


# --- the verdict ------------------------------------------------------------------------
@dataclass
class Liveness:
    longest_stall: float
    peak_rss_mb: float
    alive: bool
    probes: int
    failures: list[str] = field(default_factory=list)
    detail: str = ""
    peak_task_mb: float = 0.0  # the gateway and its worker processes, summed (sampled)

    def check(self, stall: float = STALL_CEILING, rss_mb: float = RSS_CEILING_MB,
              task_mb: float = TASK_CEILING_MB) -> Liveness:
        problems = []
        if not self.alive:
            problems.append(f"the gateway died ({self.detail[-400:]})")
        if self.longest_stall > stall:
            problems.append(f"a second client stalled {self.longest_stall:.2f} s (ceiling {stall} s)")
        if self.peak_rss_mb > rss_mb:
            problems.append(f"peak RSS {self.peak_rss_mb:.0f} MiB (ceiling {rss_mb} MiB)")
        if self.peak_task_mb > task_mb:
            problems.append(f"gateway and workers peaked at {self.peak_task_mb:.0f} MiB (ceiling {task_mb} MiB)")
        if self.failures:
            problems.append(f"canary probes failed: {self.failures[:3]}")
        if self.probes == 0:
            problems.append("the canary completed no probe")
        assert not problems, "; ".join(problems)
        return self

    def figures(self) -> dict:
        return {"longest_stall_s": round(self.longest_stall, 3), "peak_rss_mib": round(self.peak_rss_mb, 1),
                "peak_with_workers_mib": round(self.peak_task_mb, 1), "probes": self.probes,
                "alive": self.alive, "failures": len(self.failures)}

    def __str__(self) -> str:
        return (f"longest stall {self.longest_stall:.3f} s, peak RSS {self.peak_rss_mb:.0f} MiB "
                f"(with workers {self.peak_task_mb:.0f} MiB), {self.probes} probes, alive={self.alive}")


def record(result: Liveness, label: str = "") -> str:
    """Merge ``result``'s figures into ``$POSTERN_EVIDENCE_DIR/hostile.json`` under the running test's
    id (pytest's PYTEST_CURRENT_TEST) and ``label``; returns the key. Best effort: a read-only
    checkout loses the record, never the test."""
    test = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]
    key = f"{test} {label}".strip() or "unnamed"
    path = os.path.join(os.environ.get("POSTERN_EVIDENCE_DIR", ".postern-local/evidence"), "hostile.json")
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            with open(path) as fh:
                data = json.load(fh)
        except (OSError, ValueError):
            data = {}
        data[key] = {**result.figures(), "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        with open(path + ".tmp", "w") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
        os.replace(path + ".tmp", path)
    except OSError:
        pass
    return key


def measure(attack, canary: Canary, rss: PeakRss, alive=lambda: True, settle_probes: int = 2,
            tree: TreeRss | None = None) -> Liveness:
    """Run ``attack()`` while ``canary`` probes; then let it complete ``settle_probes`` more
    (recovery counts: a server that answers only after the attacker leaves has stalled)."""
    rss.reset()
    if tree is not None:
        tree.start()
    mark = canary.mark()
    try:
        attack()
    finally:
        canary.wait_probes(canary.mark(), settle_probes)
        task = tree.stop() if tree is not None else 0.0
    return Liveness(
        longest_stall=canary.stall_since(mark),
        peak_rss_mb=rss.peak_mb(),
        alive=alive(),
        probes=canary.probes_since(mark),
        failures=canary.failures_since(mark),
        peak_task_mb=task,
    )


# --- the gateway under test ---------------------------------------------------------------
def _limit_address_space(limit: int):
    def apply() -> None:  # runs in the child between fork and exec
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return apply


class HostileGateway:
    """The gateway in its own process under RLIMIT_AS, with a canary logged in (module docstring)."""

    def __init__(self, stack, canary_user: str, canary_password: str, extra_env: dict[str, str] | None = None,
                 address_space: int = ADDRESS_SPACE):
        self.stack = stack
        self.proc = GatewayProcess(stack, {**HOSTILE_ENV, **(extra_env or {})},
                                   preexec_fn=_limit_address_space(address_space))
        self.canary_user = canary_user
        self.canary_password = canary_password
        self.canary: Canary | None = None
        self.rss: PeakRss | None = None

    @property
    def ports(self) -> dict[str, int]:
        return self.proc.ports

    @property
    def pid(self) -> int:
        return self.proc.pid

    def start(self) -> HostileGateway:
        self.proc.start()
        self.rss = PeakRss(self.proc.pid)
        self.canary = Canary([
            ImapNoop(self.ports["imap"], self.canary_user, self.canary_password),
            Greeting(self.ports["smtp"], name="smtp-greeting"),
            Greeting(self.ports["pop3"], name="pop3-greeting"),
            Greeting(self.ports["submission"], name="submission-greeting"),
            Greeting(self.ports["managesieve"], name="managesieve-greeting"),
        ]).start()
        self.canary.wait_probes(self.canary.mark(), 4)
        return self

    def stop(self) -> None:
        if self.canary is not None:
            self.canary.stop()
            self.canary = None
        self.proc.stop()

    def alive(self) -> bool:
        return self.proc.proc is not None and self.proc.proc.poll() is None

    def ensure_running(self) -> None:
        """Restart after a test that killed it (its own test has already failed)."""
        if not self.alive():
            self.stop()
            self.start()

    def measure(self, attack, settle_probes: int = 4, label: str = "") -> Liveness:
        """``attack()`` under the canary; the figures are also :func:`record`-ed under ``label``."""
        assert self.canary is not None and self.rss is not None, "start() first"
        result = measure(attack, self.canary, self.rss, self.alive, settle_probes, TreeRss(self.proc.pid))
        if not result.alive:
            result.detail = self.proc.stderr_tail()
        record(result, label)
        return result

    def __enter__(self) -> HostileGateway:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
