"""`make load`: many concurrent SMTP, IMAP and POP3 sessions against the local stack, bounded.

In:   the local stack (moto + pollers in this process) and the gateway as its
      own process (postern_local.gatewayproc), so its resident memory is its
      own: sampled from /proc every 0.25 s.
Out:  per operation: count, errors, p50/p99 latency; gateway RSS before,
      at peak and 5 s after every session closed (does memory return?).
      ``main(argv)``: ``--quick`` (10 s instead of 60), ``--seconds``,
      ``--smtp N`` (200), ``--imap-idle N`` (100), ``--imap-active N`` (20),
      ``--pop3 N`` (50).
Fails: exit status 1 when more than 1% of operations failed.

Workload (loopback only, bounded in count and time): every session is a
thread with a real stdlib client. SMTP sessions stay connected and send a
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
from collections import defaultdict

from common import message, percentile, table


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.lat: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, int] = defaultdict(int)
        self.last_error: dict[str, str] = {}

    def time(self, op: str):
        return _Timer(self, op)


class _Timer:
    def __init__(self, stats: Stats, op: str):
        self.stats, self.op = stats, op

    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, et, ev, tb):
        dt = time.perf_counter() - self.t0
        with self.stats.lock:
            if et is None:
                self.stats.lat[self.op].append(dt)
            else:
                self.stats.errors[self.op] += 1
                self.stats.last_error[self.op] = f"{et.__name__}: {ev}"[:200]
        return False


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
            with stats.time("smtp message (MAIL..DATA 250)"):
                c.sendmail("load@remote.test", [rcpt], raw)
            stop.wait(think)
        c.quit()
    except Exception:  # noqa: BLE001 - counted by the timer; the session ends
        try:
            c.close()
        except Exception:  # noqa: BLE001
            pass


def imap_idle_session(port, user, pw, stop, stats):
    try:
        with stats.time("imap LOGIN+SELECT (idle sessions)"):
            c = imaplib.IMAP4("127.0.0.1", port, timeout=120)
            c.login(user, pw)
            c.select("INBOX")
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
        with stats.time("imap LOGIN (active)"):
            c = imaplib.IMAP4("127.0.0.1", port, timeout=60)
            c.login(user, pw)
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


def pop3_session(port, user, pw, stop, stats, think):
    while not stop.is_set():
        try:
            with stats.time("pop3 session (login..RETR 1..QUIT)"):
                c = poplib.POP3("127.0.0.1", port, timeout=60)
                c.user(user)
                c.pass_(pw)
                n, _ = c.stat()
                c.uidl()
                if n:
                    c.retr(1)
                c.quit()
        except Exception:  # noqa: BLE001 - counted
            pass
        stop.wait(think)


def run(seconds: float, n_smtp: int, n_idle: int, n_active: int, n_pop3: int, smtp_think: float) -> dict:
    from postern_local.gatewayproc import GatewayProcess
    from postern_local.stack import LocalStack

    stack = LocalStack({"POSTERN_LOGIN_FAIL_DELAY": "0", "POSTERN_MAX_CONN_PER_IP": "5000",
                        "POSTERN_MAX_SESSIONS": "2000"},
                       ephemeral_ports=True, background=True, gateway=False).start()
    gw = None
    try:
        domain = stack.demo_user.split("@", 1)[1]
        users = [f"load{i}@{domain}" for i in range(20)]
        for u in users:
            stack.directory.add_user(u, "pw-" + u)
            stack.store.ensure_mailboxes(u)
        gw = GatewayProcess(stack, {"POSTERN_MAX_CONN_PER_IP": "5000", "POSTERN_MAX_SESSIONS": "2000",
                                    "POSTERN_LOG_LEVEL": "ERROR"}).start()
        # A few messages in every mailbox so RETR and FETCH have something.
        for u in users:
            _mid, raw = message("seed@remote.test", [u], 10 * 1024)
            with smtplib.SMTP("127.0.0.1", gw.ports["smtp"], timeout=30) as c:
                c.sendmail("seed@remote.test", [u], raw)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(stack.queue_count(q) for q in ("InboundQueue", "StoreQueue")):
            time.sleep(0.2)
        time.sleep(1.0)
        rss_base = gw.rss_kb()

        stats = Stats()
        stop = threading.Event()
        threads = []

        def spawn(fn, *args):
            t = threading.Thread(target=fn, args=args, daemon=True)
            t.start()
            threads.append(t)

        for i in range(n_idle):
            u = users[i % len(users)]
            spawn(imap_idle_session, gw.ports["imap"], u, "pw-" + u, stop, stats)
        for i in range(n_active):
            u = users[i % len(users)]
            spawn(imap_active_session, gw.ports["imap"], u, "pw-" + u, stop, stats, 0.5)
        for i in range(n_pop3):
            u = users[i % len(users)]
            spawn(pop3_session, gw.ports["pop3"], u, "pw-" + u, stop, stats, 1.0)
        for i in range(n_smtp):
            spawn(smtp_session, gw.ports["smtp"], users[i % len(users)], stop, stats, smtp_think)

        peak = rss_base
        samples = []
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            r = gw.rss_kb()
            samples.append(r)
            peak = max(peak, r)
            time.sleep(0.25)
        stop.set()
        for t in threads:
            t.join(90)
        alive = sum(1 for t in threads if t.is_alive())
        time.sleep(5.0)
        rss_after = gw.rss_kb()
        return {"stats": stats, "rss_base": rss_base, "rss_peak": peak, "rss_after": rss_after,
                "seconds": seconds, "stuck_threads": alive,
                "sessions": {"smtp": n_smtp, "imap idle": n_idle, "imap active": n_active, "pop3": n_pop3}}
    finally:
        if gw is not None:
            gw.stop()
        stack.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/load.py", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="10 s instead of 60")
    ap.add_argument("--seconds", type=float)
    ap.add_argument("--smtp", type=int, default=200)
    ap.add_argument("--imap-idle", type=int, default=100)
    ap.add_argument("--imap-active", type=int, default=20)
    ap.add_argument("--pop3", type=int, default=50)
    ap.add_argument("--smtp-think", type=float, default=3.0)
    ap.add_argument("--out", help="also write the report to this file (markdown)")
    args = ap.parse_args(argv)
    os.environ.setdefault("LOG_LEVEL", "ERROR")  # the handlers' Powertools loggers: quiet unless asked
    logging.basicConfig(level=logging.CRITICAL)
    seconds = args.seconds or (10.0 if args.quick else 60.0)
    r = run(seconds, args.smtp, args.imap_idle, args.imap_active, args.pop3, args.smtp_think)
    st = r["stats"]
    out_lines: list[str] = []

    def print(*a):  # noqa: A001 - tee the report
        line = " ".join(str(x) for x in a)
        out_lines.append(line)
        builtins.print(line)

    rows = []
    total = errors = 0
    for op in sorted(set(st.lat) | set(st.errors)):
        lat = st.lat.get(op, [])
        err = st.errors.get(op, 0)
        total += len(lat) + err
        errors += err
        rows.append([op, len(lat), err, f"{percentile(lat, 50) * 1000:.1f}", f"{percentile(lat, 99) * 1000:.1f}"])
    print(f"load: {r['sessions']} for {r['seconds']:.0f} s (loopback; 2 shared cores)")
    print(table(["operation", "ok", "errors", "p50 ms", "p99 ms"], rows))
    for op, e in sorted(st.last_error.items()):
        print(f"  last error in {op}: {e}")
    msgs = len(st.lat.get("smtp message (MAIL..DATA 250)", []))
    print(f"SMTP messages accepted: {msgs} ({msgs / r['seconds']:.1f}/s)")
    b, p, a = r["rss_base"], r["rss_peak"], r["rss_after"]
    growth = (f"{max(0.0, (p - a) / (p - b)):.0%} of the growth returned" if p - b > 1024
              else "no growth to speak of")
    print(f"gateway RSS: before {b / 1024:.1f} MiB, peak {p / 1024:.1f} MiB, 5 s after the load {a / 1024:.1f} MiB"
          f" ({growth})")
    if r["stuck_threads"]:
        print(f"client threads still running after the stop: {r['stuck_threads']}")
    if args.out:
        from pathlib import Path

        given = sys.argv[1:] if argv is None else argv
        cmd = "make load" if not given else "bench/load.py " + " ".join(given)
        Path(args.out).write_text(f"# Load\n\nMeasured by `{cmd}`.\n\n```\n" + "\n".join(out_lines) + "\n```\n")
    main.result = {"ops": total, "errors": errors, "rss_peak_mib": round(p / 1024, 1),
                   "smtp_msgs_per_s": round(msgs / r["seconds"], 1)}
    return 1 if total and errors / total > 0.01 else 0


if __name__ == "__main__":
    sys.exit(main())
