"""`make load`: many concurrent SMTP, IMAP and POP3 sessions against the local stack, bounded.

In:   the local stack (moto + pollers in this process) and the gateway as its
      own process (postern_local.gatewayproc), so its resident memory is its
      own: sampled from /proc every 0.25 s.
Out:  per operation: count, errors, p50/p99 latency; gateway RSS before,
      at peak (sampled until the last session closed) and 5 s and
      ``--settle`` (30) s after (does memory return?). ``--rounds N`` runs the
      load N times against one gateway: RSS that keeps climbing round after
      round is a leak; a plateau is the allocator keeping freed memory.
      ``main(argv)``: ``--quick`` (10 s instead of 60), ``--seconds``,
      ``--smtp N`` (200), ``--imap-idle N`` (100), ``--imap-active N`` (20),
      ``--pop3 N`` (50, each its own account: RFC 1939 locks a maildrop).
      Probes (``--probes``, 4 accounts, each a selected session repeating
      FETCH 1:* (FLAGS), NOOP and IDLE start, and a loop of cached LOGINs; in a
      process of their own, so no wait for this process's GIL counts) run
      alone for ``--baseline`` (20) s first, then under the load: each
      command's loaded p99 against its unloaded p99 (issue 12: at most 5x). The machine's
      1-minute load average is printed for the start of the probes, the start and the end of
      the load (other work on the machine inflates both figures).
Fails: exit status 1 when any operation failed (issue 12: no session fails; an SMTP
      transaction the gateway answered with a 4xx "try again later" is counted apart, as
      deferred: the sender keeps the message and retries, RFC 5321 §4.2.5),
      when an interactive command's p99 under load is over 5x its unloaded
      p99, when no operation ran, or when client threads were still running
      90 s after the stop; 0 otherwise.

Workload (loopback only, bounded in count and time): every session is a
thread with a real stdlib client, all of them in one client process of their own (no GIL shared
with moto and the pollers, which stay in this process, nor with the probes). SMTP sessions stay connected and send a
10 KB message to a local user every ``--smtp-think`` seconds (3 s by default,
so 200 sessions offer about 67 messages/s). IMAP IDLE sessions log in,
SELECT INBOX and IDLE until the end. Active IMAP sessions loop SELECT,
FETCH 1:* (FLAGS), FETCH one body, NOOP. POP3 sessions loop a whole session
(USER/PASS, STAT, UIDL, RETR 1, QUIT). The per-IP connection cap is raised
for the run (every client is 127.0.0.1). The Lambda pollers run in the
background meanwhile, as on AWS. Two cores are shared by everything here
(clients, moto, pollers, gateway): the figures are a floor, not a capacity.
"""

from __future__ import annotations

import argparse
import builtins
import os
import imaplib
import logging
import poplib
import smtplib
import sys
import threading
import time
import warnings
from collections import Counter, defaultdict

from common import message, percentile, table


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.lat: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, int] = defaultdict(int)
        self.kinds: dict[str, Counter] = defaultdict(Counter)  # op -> error kind -> count

    def time(self, op: str):
        return _Timer(self, op)

    def to_dict(self) -> dict:
        with self.lock:
            return {"lat": dict(self.lat), "errors": dict(self.errors),
                    "kinds": {k: dict(v) for k, v in self.kinds.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> Stats:
        st = cls()
        st.lat.update(d["lat"])
        st.errors.update(d["errors"])
        for op, kinds in d["kinds"].items():
            st.kinds[op].update(kinds)
        return st

    def ok(self, op: str, dt: float) -> None:
        with self.lock:
            self.lat[op].append(dt)

    def fail(self, op: str, exc: BaseException) -> None:
        with self.lock:
            self.errors[op] += 1
            self.kinds[op][f"{type(exc).__name__}: {exc}"[:120]] += 1


class _Timer:
    def __init__(self, stats: Stats, op: str):
        self.stats, self.op = stats, op

    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, et, ev, tb):
        dt = time.perf_counter() - self.t0
        if et is None:
            self.stats.ok(self.op, dt)
        else:
            self.stats.fail(self.op, ev if ev is not None else et())
        return False


SMTP_MESSAGE = "smtp message (MAIL..DATA 250)"
SMTP_DEFERRED = "smtp deferred (4xx: try again later)"
# A deferred sender waits this many think times before trying again (30 s by default). Real MTAs
# wait far longer: RFC 5321 §4.5.4.1 says the retry interval SHOULD be at least 30 minutes.
DEFERRED_BACKOFF = 10


def smtp_session(port, rcpt, stop, stats, think):
    try:
        with stats.time("smtp connect+EHLO"):
            c = smtplib.SMTP("127.0.0.1", port, timeout=60)
            c.ehlo("load.example.test")
    except Exception:  # noqa: BLE001 - counted
        return
    _mid, raw = message("load@remote.test", [rcpt], 10 * 1024)
    try:
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                c.sendmail("load@remote.test", [rcpt], raw)
                stats.ok(SMTP_MESSAGE, time.perf_counter() - t0)
            except smtplib.SMTPResponseException as exc:
                if not 400 <= exc.smtp_code < 500:
                    stats.fail(SMTP_MESSAGE, exc)
                    raise
                # A 4xx is the server's "not now": the sender keeps the message and tries again later
                # (RFC 5321 §4.2.5; the gateway says 451 4.3.2 at MAIL while its spool lane lags).
                # Nothing was accepted, nothing is lost: counted apart, not as a failed session.
                stats.ok(SMTP_DEFERRED, time.perf_counter() - t0)
                c.rset()
                stop.wait(think * DEFERRED_BACKOFF)
                continue
            except Exception as exc:
                stats.fail(SMTP_MESSAGE, exc)
                raise
            stop.wait(think)
        c.quit()
    except Exception:  # noqa: BLE001 - counted above when sendmail raised; the session ends
        try:
            c.close()
        except Exception:  # noqa: BLE001
            pass


REFUSED = "login refused for now (NO [UNAVAILABLE] / -ERR [SYS/TEMP])"
TEMPORARY = ("[UNAVAILABLE]", "[SYS/TEMP]")  # RFC 5530 §3, RFC 3206 §4: try again later


def _temporary(exc: BaseException) -> bool:
    """A login the gateway refused with a temporary reply (POSTERN_AUTH_QUEUE_WAIT in a login storm,
    a lockout): an answer the client can act on, not a failure; the session tries again later."""
    return isinstance(exc, (imaplib.IMAP4.error, poplib.error_proto)) and any(c in str(exc) for c in TEMPORARY)


def _deferred(stats, exc: BaseException, t0: float, stop, think) -> bool:
    """Was ``exc`` a temporary refusal? Then it is counted apart (REFUSED, not a failure) and the
    caller tries again after DEFERRED_BACKOFF think times (waited here)."""
    if not _temporary(exc):
        return False
    stats.ok(REFUSED, time.perf_counter() - t0)
    stop.wait(think * DEFERRED_BACKOFF)
    return True


def _login(stats, op, connect, stop, think):
    """``connect()`` until it logs in (timed as ``op``); a temporary refusal counts apart (REFUSED)
    and is retried after DEFERRED_BACKOFF think times. None when the load stopped first."""
    while not stop.is_set():
        t0 = time.perf_counter()
        try:
            c = connect()
        except Exception as exc:
            if _deferred(stats, exc, t0, stop, think):
                continue
            stats.fail(op, exc)
            raise
        stats.ok(op, time.perf_counter() - t0)
        return c
    return None


def _imap_connect(port, user, pw, select=False, timeout=120):
    """A function connecting an imaplib session to ``port``, logged in (and INBOX selected)."""
    def connect():
        c = imaplib.IMAP4("127.0.0.1", port, timeout=timeout)
        try:
            c.login(user, pw)
            if select:
                c.select("INBOX")
        except BaseException:
            c.shutdown()
            raise
        return c
    return connect


def imap_idle_session(port, user, pw, stop, stats):
    try:
        c = _login(stats, "imap LOGIN+SELECT (idle sessions)", _imap_connect(port, user, pw, select=True), stop, 3.0)
        if c is None:
            return
        with stats.time("imap IDLE start"):
            tag = c._new_tag().decode()
            c.send(f"{tag} IDLE\r\n".encode())
            line = c.readline()
            if not line.startswith(b"+"):
                raise RuntimeError(f"IDLE refused: {line!r}")
        stop.wait()
        with stats.time("imap DONE"):
            c.send(b"DONE\r\n")
            while not c.readline().startswith(tag.encode()):
                pass
        c.logout()
    except Exception:  # noqa: BLE001 - counted
        pass


def imap_active_session(port, user, pw, stop, stats, think):
    try:
        c = _login(stats, "imap LOGIN (active)", _imap_connect(port, user, pw, timeout=60), stop, 3.0)
        if c is None:
            return
        while not stop.is_set():
            with stats.time("imap SELECT"):
                typ, data = c.select("INBOX")
                if typ != "OK":
                    raise RuntimeError(data)
            n = int(data[0] or 0)
            with stats.time("imap FETCH 1:* (FLAGS)"):
                if n:
                    c.fetch("1:*", "(FLAGS)")
            with stats.time("imap FETCH body"):
                if n:
                    c.fetch(str(n), "(BODY.PEEK[])")
            with stats.time("imap NOOP"):
                c.noop()
            stop.wait(think)
        c.logout()
    except Exception:  # noqa: BLE001 - counted
        pass


POP3_SESSION = "pop3 session (login..RETR 1..QUIT)"


def pop3_session(port, user, pw, stop, stats, think):
    while not stop.is_set():
        t0 = time.perf_counter()
        try:
            c = poplib.POP3("127.0.0.1", port, timeout=60)
            c.user(user)
            try:
                c.pass_(pw)
            except poplib.error_proto as exc:
                if not _temporary(exc):
                    raise
                stats.ok(REFUSED, time.perf_counter() - t0)  # told to come back later: it does
                c.quit()
                stop.wait(think * DEFERRED_BACKOFF)
                continue
            n, _ = c.stat()
            c.uidl()
            if n:
                c.retr(1)
            c.quit()
            stats.ok(POP3_SESSION, time.perf_counter() - t0)
        except Exception as exc:  # noqa: BLE001 - counted
            stats.fail(POP3_SESSION, exc)
        stop.wait(think)


PROBE_SELECT = "LOGIN+SELECT (probe)"  # the probe sessions' first login, before any phase counts
PROBE_OPS = ("LOGIN (cached)", "FETCH 1:* (FLAGS)", "NOOP", "IDLE start")
TARGET_RATIO = 5.0  # issue 12: interactive commands stay within 5x their unloaded p99
# The load sessions' rows that are the same commands as a probe's (compared with its unloaded p99).
LOAD_ROWS = {"imap NOOP": "NOOP", "imap FETCH 1:* (FLAGS)": "FETCH 1:* (FLAGS)", "imap IDLE start": "IDLE start"}


def probe_session(port, user, pw, stop, phase, think, ready=None):
    """The selected-mailbox commands of issue 12 on one session, logged in and selected once:
    FETCH 1:* (FLAGS), NOOP and IDLE start (IDLE sent, until its "+"), then DONE, over and over.
    Each command counts in ``phase["stats"]`` as it is when the command starts (unloaded, then
    under the load)."""
    try:
        try:  # a temporary refusal (a login storm) is counted and retried, never the end of the probe
            c = _login(phase["stats"], PROBE_SELECT, _imap_connect(port, user, pw, select=True), stop, think)
        finally:
            if ready is not None:
                ready.release()  # selected, or failed or stopped: the probe process never waits forever
        if c is None:
            return
        while not stop.is_set():
            with phase["stats"].time("FETCH 1:* (FLAGS)"):
                c.fetch("1:*", "(FLAGS)")
            with phase["stats"].time("NOOP"):
                c.noop()
            with phase["stats"].time("IDLE start"):
                tag = c._new_tag().decode()
                c.send(f"{tag} IDLE\r\n".encode())
                if not c.readline().startswith(b"+"):
                    raise RuntimeError("IDLE refused")
            c.send(b"DONE\r\n")
            while not c.readline().startswith(tag.encode()):
                pass
            stop.wait(think)
        c.logout()
    except Exception:  # noqa: BLE001 - counted by the timer
        pass


def login_probe(port, user, pw, stop, phase, think):
    """LOGIN with credentials the gateway verified moments ago (a cached login), then LOGOUT."""
    while not stop.is_set():
        stats = phase["stats"]
        try:
            c = imaplib.IMAP4("127.0.0.1", port, timeout=120)
        except Exception as exc:  # noqa: BLE001 - counted
            stats.fail("LOGIN (cached)", exc)
            stop.wait(think)
            continue
        t0 = time.perf_counter()
        try:
            c.login(user, pw)
        except Exception as exc:  # noqa: BLE001 - counted
            c.shutdown()
            if not _deferred(stats, exc, t0, stop, think):
                stats.fail("LOGIN (cached)", exc)
                stop.wait(think)
            continue
        stats.ok("LOGIN (cached)", time.perf_counter() - t0)
        try:
            c.logout()
        except Exception:  # noqa: BLE001 - the login was the measure
            pass
        stop.wait(think)


def start_probes(port, users, phase, stop, think=0.25, ready=None) -> list:
    """A session probe and a login probe per user, running until ``stop``; each session probe
    releases ``ready`` (a semaphore) once it is logged in and selected."""
    for u in users:  # the login each probe repeats is a cached one: verified just now
        c = _login(phase["stats"], PROBE_SELECT, _imap_connect(port, u, "pw-" + u), stop, think)
        if c is not None:
            c.logout()
    threads = [threading.Thread(target=probe_session, args=(port, u, "pw-" + u, stop, phase, think, ready),
                                daemon=True) for u in users]
    threads += [threading.Thread(target=login_probe, args=(port, u, "pw-" + u, stop, phase, think), daemon=True)
                for u in users]
    for t in threads:
        t.start()
    return threads


class _PhaseView:
    """``phase["stats"]`` for the probe threads of the probe process: the Stats of the phase the
    parent set (0 alone, N for load round N, -1 not counted)."""

    def __init__(self, value):
        self.value = value
        self.lock = threading.Lock()
        self.by_phase: dict[int, Stats] = {}

    def __getitem__(self, _key):
        with self.lock:
            return self.by_phase.setdefault(self.value.value, Stats())


def _probe_main(port, users, value, stop, results, ready) -> None:
    """The probe process: every probe thread, until ``stop`` (``ready`` set once every session
    probe is selected); then each phase's figures on ``results``."""
    view = _PhaseView(value)
    selected = threading.Semaphore(0)
    threads = start_probes(port, users, view, stop, ready=selected)
    for _ in users:
        selected.acquire()
    ready.set()
    stop.wait()
    for t in threads:
        t.join(60)
    results.put({ph: st.to_dict() for ph, st in view.by_phase.items()})


class ProbeProcess:
    """The probes in a process of their own: their timings are the gateway's answers, not waits for
    this process's GIL, which moto, the pollers and 370 client threads share under the load."""

    def __init__(self, port: int, users: list[str]):
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: nothing of moto's threads forked
        self.phase = ctx.Value("i", -1)  # not counted until every probe is selected: then 0, unloaded
        self.stop = ctx.Event()
        self.ready = ctx.Event()
        self.results = ctx.Queue()
        self.proc = ctx.Process(target=_probe_main, args=(port, users, self.phase, self.stop, self.results,
                                                          self.ready), name="load-probes", daemon=True)

    def start(self) -> ProbeProcess:
        self.proc.start()
        return self

    def set_phase(self, n: int) -> None:
        self.phase.value = n

    def finish(self) -> dict[int, Stats]:
        self.stop.set()
        got = self.results.get(timeout=180)
        self.proc.join(30)
        return {ph: Stats.from_dict(d) for ph, d in got.items()}


def _clients_main(ports, users, pop3_users, counts, smtp_think, stop, results) -> None:
    """The load's client process: every session thread until ``stop``, then up to 90 s for them to
    finish their last command; its figures and the threads still running on ``results``."""
    stats = Stats()
    threads = _sessions(ports, users, pop3_users, *counts, smtp_think, stats, stop)
    stop.wait()
    join_by = time.monotonic() + 90
    for t in threads:
        t.join(max(0.0, join_by - time.monotonic()))
    results.put({"stats": stats.to_dict(), "alive": sum(1 for t in threads if t.is_alive())})


class ClientProcess:
    """The load's 370 client threads in a process of their own: they share no GIL with moto and the
    pollers (the backend), nor with the probes, so neither side's figures include the other's waits."""

    def __init__(self, ports: dict, users: list[str], pop3_users: list[str], counts: tuple, smtp_think: float):
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self.stop = ctx.Event()
        self.results = ctx.Queue()
        self.proc = ctx.Process(target=_clients_main, name="load-clients", daemon=True,
                                args=(ports, users, pop3_users, counts, smtp_think, self.stop, self.results))

    def start(self) -> ClientProcess:
        self.proc.start()
        return self

    def result(self, timeout: float):
        """(Stats, threads still running) once the process reported, else None after ``timeout``."""
        import queue

        try:
            got = self.results.get(timeout=timeout)
        except queue.Empty:
            if not self.proc.is_alive():
                raise RuntimeError(f"the load's client process died (exit {self.proc.exitcode})") from None
            return None
        self.proc.join(30)
        return Stats.from_dict(got["stats"]), got["alive"]


def _sessions(ports, users, pop3_users, n_smtp, n_idle, n_active, n_pop3, smtp_think, stats, stop) -> list:
    threads = []

    def spawn(fn, *args):
        t = threading.Thread(target=fn, args=args, daemon=True)
        t.start()
        threads.append(t)

    for i in range(n_idle):
        u = users[i % len(users)]
        spawn(imap_idle_session, ports["imap"], u, "pw-" + u, stop, stats)
    for i in range(n_active):
        u = users[i % len(users)]
        spawn(imap_active_session, ports["imap"], u, "pw-" + u, stop, stats, 0.5)
    for u in pop3_users[:n_pop3]:
        spawn(pop3_session, ports["pop3"], u, "pw-" + u, stop, stats, 1.0)
    for i in range(n_smtp):
        spawn(smtp_session, ports["smtp"], users[i % len(users)], stop, stats, smtp_think)
    return threads


def _split_cores(pinned: bool) -> tuple[set[int], set[int]] | None:
    """(the gateway's core, everyone else's cores) for a pinned run; None for a shared one or
    when this process may use a single core."""
    cpus = sorted(os.sched_getaffinity(0))
    if not pinned or len(cpus) < 2:
        return None
    return {cpus[-1]}, set(cpus[:-1])


def _pin_this_process(cores: set[int]) -> None:
    """Every thread of this process on ``cores``; threads and processes started later inherit it."""
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cores)
        except OSError:
            pass


# Pinned runs: nice levels added to this process (moto, the pollers, the load's client threads) and
# the Lambda workers, not to the gateway nor the probe process. They stand for AWS and for other
# people's machines; the probes are one user's client, which waits on its own machine for nothing
# but the gateway.
OTHERS_NICE = 10


def _renice_tree(increment: int, keep: set[int]) -> None:
    """Every thread of this process and of its descendants not in ``keep`` ``increment`` nice
    levels lower (threads and processes started later inherit it from their parent)."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            children[int(stat.rsplit(")", 1)[1].split()[1])].append(int(entry))
    todo, seen = [os.getpid()], set()
    while todo:
        pid = todo.pop()
        if pid in keep or pid in seen:
            continue
        seen.add(pid)
        todo += children.get(pid, [])
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                now = os.getpriority(os.PRIO_PROCESS, int(tid))
                os.setpriority(os.PRIO_PROCESS, int(tid), min(19, now + increment))
            except OSError:
                pass


def run(seconds: float, n_smtp: int, n_idle: int, n_active: int, n_pop3: int, smtp_think: float,
        rounds: int = 1, settle: float = 30.0, n_probes: int = 4, baseline: float = 20.0,
        pinned: bool = False, profile: str | None = None) -> dict:
    """``rounds`` loads one after another against the same gateway (a leak grows with them).

    ``pinned``: the gateway process alone on one core, this process (moto, the pollers, the
    client threads), the Lambda workers and the probe process on the others, as deployed (the
    gateway's Fargate task has its vCPU to itself; AWS, the functions and the clients run
    elsewhere); there, all but the probe process run OTHERS_NICE levels lower (the probes stand
    for one user's client, on a machine of its own). Other processes on the machine are not
    moved. ``profile``: a py-spy file prefix (one record per round, the load period)."""
    from postern_local.gatewayproc import GatewayProcess
    from postern_local.stack import LocalStack

    from _gwprofile import PySpy, SchedSample, process_line, sched_lines

    saved = os.sched_getaffinity(0)
    cores = _split_cores(pinned)
    if cores is not None:
        _pin_this_process(cores[1])
    stack = LocalStack({"POSTERN_LOGIN_FAIL_DELAY": "0", "POSTERN_MAX_CONN_PER_IP": "5000",
                        "POSTERN_MAX_SESSIONS": "2000"},
                       ephemeral_ports=True, background=True, gateway=False).start()
    gw = None
    try:
        domain = stack.demo_user.split("@", 1)[1]
        users = [f"load{i}@{domain}" for i in range(20)]
        # Every POP3 session its own maildrop: POP3 locks a maildrop to one session (RFC 1939
        # §8), so two sessions of one account get -ERR [IN-USE] by design, not by load.
        pop3_users = [f"pop{i}@{domain}" for i in range(n_pop3)]
        probe_users = [f"probe{i}@{domain}" for i in range(n_probes)]
        for u in users + pop3_users + probe_users:
            stack.directory.add_user(u, "pw-" + u)
            stack.store.ensure_mailboxes(u)
        gw_cores = cores[0] if cores is not None else None
        gw = GatewayProcess(stack, {"POSTERN_MAX_CONN_PER_IP": "5000", "POSTERN_MAX_SESSIONS": "2000",
                                    "POSTERN_LOG_LEVEL": "ERROR"},
                            preexec_fn=(lambda: os.sched_setaffinity(0, gw_cores)) if gw_cores else None).start()
        # A few messages in every mailbox so RETR and FETCH have something.
        for u in users + pop3_users + probe_users:
            _mid, raw = message("seed@remote.test", [u], 10 * 1024)
            with smtplib.SMTP("127.0.0.1", gw.ports["smtp"], timeout=30) as c:
                c.sendmail("seed@remote.test", [u], raw)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(stack.queue_count(q) for q in ("InboundQueue", "StoreQueue")):
            time.sleep(0.2)
        time.sleep(1.0)
        rss_base = gw.rss_kb()

        # The probes alone first: the unloaded figures the loaded ones are held to. They stay
        # connected into the load (a fresh SELECT under load would be a backend-bound command).
        loadavg_start = os.getloadavg()[0]
        prober = ProbeProcess(gw.ports["imap"], probe_users).start() if probe_users else None
        if cores is not None:
            _renice_tree(OTHERS_NICE, {gw.pid} | ({prober.proc.pid} if prober is not None else set()))
        if prober is not None:
            # the unloaded period starts once every probe session is logged in and selected (their
            # first logins are argon2 checks, which a loaded machine can take seconds over)
            if not prober.ready.wait(180):
                builtins.print("probes not selected within 180 s; the unloaded figures start anyway")
            prober.set_phase(0)
            time.sleep(baseline)
        out = []
        for n in range(1, rounds + 1):
            if prober is not None:
                prober.set_phase(n)
            la_start = os.getloadavg()[0]
            spy = PySpy(gw.pid, seconds, f"{profile}.{n}.txt") if profile else None
            if spy is not None:
                spy.start()
            sched0 = SchedSample.read(gw.pid)
            probe0 = SchedSample.read(prober.proc.pid) if prober is not None else None
            clients = ClientProcess(gw.ports, users, pop3_users, (n_smtp, n_idle, n_active, n_pop3),
                                    smtp_think).start()
            peak = gw.rss_kb()
            t_end = time.monotonic() + seconds
            while time.monotonic() < t_end:
                peak = max(peak, gw.rss_kb())
                time.sleep(0.25)
            clients.stop.set()
            sched = sched_lines(gw.pid, SchedSample.read(gw.pid) - sched0, seconds)
            if probe0 is not None:  # the client side must not be what is slow
                sched.append(process_line("probe process (the probes' client side)",
                                          SchedSample.read(prober.proc.pid) - probe0, seconds))
            la_end = os.getloadavg()[0]
            if prober is not None:
                prober.set_phase(-1)  # the probes' commands after the load period are not counted
            got = None
            while got is None:  # sessions finish their last command (up to 90 s): still load, still sampled
                got = clients.result(0.25)
                peak = max(peak, gw.rss_kb())
            stats, alive = got
            closed = time.monotonic()
            after = {}
            for mark in (5.0, settle):
                time.sleep(max(0.0, closed + mark - time.monotonic()))
                after[mark] = gw.rss_kb()
            out.append({"stats": stats, "loadavg": (la_start, la_end),
                        "rss_start": out[-1]["after"][settle] if out else rss_base,
                        "rss_peak": peak, "after": after, "stuck_threads": alive,
                        "sched": sched, "profile": spy.summary() if spy is not None else []})
        by_phase = prober.finish() if prober is not None else {}
        for n, rd in enumerate(out, 1):
            rd["probes"] = by_phase.get(n, Stats())
        unloaded = by_phase.get(0, Stats())
        return {"rounds": out, "unloaded": unloaded, "baseline": baseline, "loadavg_start": loadavg_start,
                "cpu": (f"pinned: the gateway alone on CPU {sorted(cores[0])}, everything else of the bench on"
                        f" {sorted(cores[1])}, all of it but the probes at nice +{OTHERS_NICE}"
                        if cores is not None else "shared: every process on every core, one priority"),
                "rss_base": rss_base, "seconds": seconds, "settle": settle,
                "sessions": {"smtp": n_smtp, "imap idle": n_idle, "imap active": n_active, "pop3": n_pop3}}
    finally:
        if gw is not None:
            gw.stop()
        stack.stop()
        _pin_this_process(saved)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/load.py", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="10 s instead of 60")
    ap.add_argument("--seconds", type=float)
    ap.add_argument("--smtp", type=int, default=200)
    ap.add_argument("--imap-idle", type=int, default=100)
    ap.add_argument("--imap-active", type=int, default=20)
    ap.add_argument("--pop3", type=int, default=50)
    ap.add_argument("--smtp-think", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=1, help="loads one after another on one gateway (leak check)")
    ap.add_argument("--settle", type=float, default=30.0, help="seconds after a load to read RSS again")
    ap.add_argument("--probes", type=int, default=4, help="probe sessions (LOGIN, FETCH FLAGS, NOOP, IDLE start)")
    ap.add_argument("--baseline", type=float, help="seconds the probes run alone first (unloaded p99; 20, --quick 10)")
    ap.add_argument("--out", help="also write the report to this file (markdown)")
    ap.add_argument("--cpu", choices=("both", "shared", "pinned"), default="both",
                    help="shared: every process on every core; pinned: the gateway alone on one core, the rest of"
                         " the bench on the others (as deployed: its Fargate task has its vCPU to itself); both"
                         " (default): a shared run, then a pinned one, each its own stack and process")
    ap.add_argument("--profile", metavar="PREFIX",
                    help="py-spy record --gil of the gateway during the load, to PREFIX.<round>.txt, summarised")
    args = ap.parse_args(argv)
    if args.cpu == "both":
        return _both(sys.argv[1:] if argv is None else list(argv), args.out)
    os.environ.setdefault("LOG_LEVEL", "ERROR")  # the handlers' Powertools loggers: quiet unless asked
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")  # no EMF blobs on stdout
    warnings.filterwarnings("ignore", "No application metrics to publish")  # what disabled metrics say
    logging.basicConfig(level=logging.CRITICAL)
    seconds = args.seconds or (10.0 if args.quick else 60.0)
    r = run(seconds, args.smtp, args.imap_idle, args.imap_active, args.pop3, args.smtp_think,
            rounds=max(1, args.rounds), settle=args.settle, n_probes=args.probes,
            baseline=args.baseline or (10.0 if args.quick else 20.0), pinned=args.cpu == "pinned",
            profile=args.profile)
    out_lines: list[str] = []

    def print(*a):  # noqa: A001 - tee the report
        line = " ".join(str(x) for x in a)
        out_lines.append(line)
        builtins.print(line)

    total = errors = stuck = over = 0
    rss_lines = []
    print(f"load: {r['sessions']} for {r['seconds']:.0f} s (loopback; {os.cpu_count()} cores; CPU {r['cpu']})"
          + (f", {len(r['rounds'])} rounds against one gateway" if len(r["rounds"]) > 1 else ""))
    print(f"run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, code {_commit()}")
    for n, rd in enumerate(r["rounds"], 1):
        st = rd["stats"]
        rows = []
        for op in sorted(set(st.lat) | set(st.errors)):
            lat = st.lat.get(op, [])
            err = st.errors.get(op, 0)
            total += len(lat) + err
            if op not in (SMTP_DEFERRED, REFUSED):
                errors += err
            rows.append([op, len(lat), err, f"{percentile(lat, 50) * 1000:.1f}", f"{percentile(lat, 99) * 1000:.1f}"])
        for op in PROBE_OPS:
            lat, err = rd["probes"].lat.get(op, []), rd["probes"].errors.get(op, 0)
            total += len(lat) + err
            errors += err
            if lat or err:
                rows.append([f"probe {op}", len(lat), err, f"{percentile(lat, 50) * 1000:.1f}",
                             f"{percentile(lat, 99) * 1000:.1f}"])
        if len(r["rounds"]) > 1:
            print(f"round {n}:")
        print(table(["operation", "ok", "errors", "p50 ms", "p99 ms"], rows))
        verdict = _interactive(r["unloaded"], rd, r["baseline"])
        print(verdict["table"])
        over += verdict["over"]
        for st_ in (st, rd["probes"]):
            for op, kinds in sorted(st_.kinds.items()):
                for kind, n in kinds.most_common(3):
                    print(f"  {op}: {n} x {kind}")
        msgs = len(st.lat.get(SMTP_MESSAGE, []))
        deferred = len(st.lat.get(SMTP_DEFERRED, []))
        print(f"SMTP messages accepted: {msgs} ({msgs / r['seconds']:.1f}/s); transactions deferred with 4xx"
              f" (the sender retries, nothing lost): {deferred}")
        print(f"IMAP/POP3 logins refused for now with a temporary reply (the client tries again later;"
              f" not counted as failures): {len(st.lat.get(REFUSED, []))}"
              f" (probes: {len(rd['probes'].lat.get(REFUSED, []))})")
        for line in rd["sched"] + rd["profile"]:
            print(line)
        la = rd["loadavg"]
        print(f"load average (1 min) of the machine: {r['loadavg_start']:.1f} when the probes started alone,"
              f" {la[0]:.1f} when the load started, {la[1]:.1f} when it stopped")
        b, p = rd["rss_start"], rd["rss_peak"]
        a5, a_end = rd["after"][5.0], rd["after"][r["settle"]]
        growth = (f"{max(0.0, (p - a_end) / (p - b)):.0%} of the growth returned" if p - b > 1024
                  else "no growth to speak of")
        rss_lines.append(f"gateway RSS{f' round {n}' if len(r['rounds']) > 1 else ''}: before {b / 1024:.1f} MiB,"
                         f" peak {p / 1024:.1f} MiB, after the load {a5 / 1024:.1f} MiB at 5 s,"
                         f" {a_end / 1024:.1f} MiB at {r['settle']:.0f} s ({growth})")
        if rd["stuck_threads"]:
            stuck += rd["stuck_threads"]
            print(f"client threads still running after the stop: {rd['stuck_threads']}")
    for line in rss_lines:
        print(line)
    if args.out:
        from pathlib import Path

        given = sys.argv[1:] if argv is None else argv
        cmd = "make load" if not given else "bench/load.py " + " ".join(given)
        Path(args.out).write_text(f"# Load\n\nMeasured by `{cmd}`.\n\n```\n" + "\n".join(out_lines) + "\n```\n")
    last = r["rounds"][-1]
    main.result = {"ops": total, "errors": errors, "rss_peak_mib": round(max(x["rss_peak"] for x in r["rounds"]) / 1024, 1),
                   "smtp_msgs_per_s": round(len(last["stats"].lat.get(SMTP_MESSAGE, []))
                                            / r["seconds"], 1)}
    main.result["interactive_over_target"] = over
    # Issue 12: no session fails, and every interactive command within TARGET_RATIO x its unloaded p99.
    return 1 if not total or errors or stuck or over else 0


def _commit() -> str:
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                              cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=10, cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head or "unknown") + (" (with uncommitted changes)" if dirty else "")


def _both(argv: list[str], out: str | None) -> int:
    """A shared run, then a pinned one, each in a process of its own (its own stack): the report of
    each as it comes, then one verdict (1 when either run failed a target)."""
    import subprocess

    def without(args: list[str], name: str) -> list[str]:
        keep, skip = [], False
        for a in args:
            if skip:
                skip = False
            elif a == name:
                skip = True
            elif not a.startswith(name + "="):
                keep.append(a)
        return keep

    base = without(without(argv, "--cpu"), "--out")
    texts, rcs = [], {}
    for mode in ("shared", "pinned"):
        builtins.print(f"===== {mode} ({'every process on every core' if mode == 'shared' else 'the gateway on a core of its own'})",
                       flush=True)
        extra = []
        if "--profile" in base:  # one py-spy file per run
            i = base.index("--profile")
            extra = ["--profile", f"{base[i + 1]}.{mode}"]
        args = without(base, "--profile") + extra
        proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), *args, "--cpu", mode],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = []
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("{") or "UserWarning" in line or "flush_metrics(" in line:
                continue  # the Lambda workers' Powertools output
            builtins.print(line, end="", flush=True)
            lines.append(line.rstrip("\n"))
        rcs[mode] = proc.wait()
        texts.append(f"{mode}:\n" + "\n".join(lines))
    builtins.print(f"verdict: shared run exit {rcs['shared']}, pinned run exit {rcs['pinned']}"
                   " (0: no failed session, every interactive command within 5x)")
    if out:
        from pathlib import Path

        cmd = "make load" if not argv else "bench/load.py " + " ".join(argv)
        Path(out).write_text(f"# Load\n\nMeasured by `{cmd}`.\n\n```\n" + "\n\n".join(texts) + "\n```\n")
    return 1 if any(rcs.values()) else 0


def _interactive(unloaded: Stats, rd: dict, baseline: float) -> dict:
    """The interactive commands under load against their unloaded p99 (the probes alone, first)."""
    rows, over = [], 0
    cases = [(f"probe {op}", op, rd["probes"].lat.get(op, [])) for op in PROBE_OPS]
    cases += [(row, op, rd["stats"].lat.get(row, [])) for row, op in LOAD_ROWS.items()]
    for name, op, lat in cases:
        base = unloaded.lat.get(op, [])
        if not base or not lat:
            continue
        b99, l99 = percentile(base, 99), percentile(lat, 99)
        ratio = l99 / b99 if b99 > 0 else float("inf")
        ok = ratio <= TARGET_RATIO
        over += not ok
        rows.append([name, len(base), f"{b99 * 1000:.1f}", len(lat), f"{l99 * 1000:.1f}", f"{ratio:.1f}x",
                     "yes" if ok else "NO"])
    head = [f"interactive commands, unloaded ({baseline:.0f} s of probes alone) vs under the load",
            table(["command", "n unloaded", "p99 ms unloaded", "n loaded", "p99 ms loaded", "ratio",
                   f"<= {TARGET_RATIO:.0f}x"], rows)]
    return {"table": "\n".join(head), "over": over}


if __name__ == "__main__":
    sys.exit(main())
