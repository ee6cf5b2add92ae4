"""The change feed: how soon IDLE hears of a change, and what an idle client costs (``python bench/feed.py``).

In:   nothing (loopback only). Options: ``--messages N`` (deliveries and flag changes timed,
      default 20), ``--clients K`` (idle IMAP clients, one account each, default 50),
      ``--window S`` (seconds the idle clients are counted, default 130: two safety-net polls),
      ``--write`` (docs/feed.md and .postern-local/evidence/feed.json), ``--quick`` (5, 10, 65 s).
Out:  printed, and with ``--write`` in those files:
      * delivery -> IDLE: from the SMTP 250 of a message sent to the MX port until ``* n EXISTS``
        reaches a client in IDLE (gateway, router and store functions, the mail table's stream,
        FeedFunction, SNS, the task's queue, the watcher's read of the log), p50/p95/max;
      * flag -> IDLE: from sending a STORE in a session on a second gateway task (its own
        process) until the session in IDLE on the first gets the FETCH (B's command and the
        store's commit, then the feed alone);
      * AWS requests per idle client per hour, by operation, measured over ``--window`` with K
        clients in IDLE; and the month of an idle client priced at 1,000 clients on two tasks:
        the per-account safety-net reads (measured per client) plus the task's long polls
        (measured per task) shared by its clients.
Fails: a latency above 30 s or a client that never hears raises (the bench is then void).

The local stack runs as ``make run`` does (background pollers: Lambda's SQS event source long
polls, the stream poller reads about ten times a second where Lambda reads a shard about four
times), so the latencies include the local Lambda workers and moto; the request counts are the
gateway's own, which is what an idle client costs (the stream, SNS and Lambda cost nothing idle).
"""

from __future__ import annotations

import argparse
import json
import smtplib
import socket
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from common import percentile  # noqa: E402

MONTH_H = 730
SAFETY_NET = 60.0  # POSTERN_CHANGE_FEED_POLL_INTERVAL's default: what the figures are for
PASSWORD = "feed-bench-password"


class Idle:
    """One IMAP connection in IDLE on INBOX (raw socket: the bench reads untagged lines itself)."""

    def __init__(self, port: int, user: str):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.f = self.sock.makefile("rb")
        self.f.readline()
        self.sock.sendall(f"a LOGIN {user} {PASSWORD}\r\nb SELECT INBOX\r\n".encode())
        self.until(lambda ln: ln.startswith(b"b "))
        self.sock.sendall(b"c IDLE\r\n")
        self.until(lambda ln: ln.startswith(b"+ "))

    def until(self, pred, timeout: float = 30.0) -> bytes:
        self.sock.settimeout(timeout)
        while True:
            ln = self.f.readline()
            if not ln:
                raise RuntimeError("connection closed")
            if pred(ln):
                return ln

    def close(self) -> None:
        try:
            self.sock.sendall(b"DONE\r\nz LOGOUT\r\n")
        finally:
            self.sock.close()


def session(port: int, user: str):
    """(socket, its line reader) of a logged-in session with INBOX selected."""
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    f = s.makefile("rb")
    f.readline()
    s.sendall(f"a LOGIN {user} {PASSWORD}\r\nb SELECT INBOX\r\n".encode())
    while not f.readline().startswith(b"b "):
        pass
    return s, f


def run(messages: int, clients: int, window: float) -> dict:
    from postern_local.evidence import Evidence
    from postern_local.stack import LocalStack

    ev = Evidence(probe=True)
    stack = LocalStack({"POSTERN_CHANGE_FEED_POLL_INTERVAL": str(SAFETY_NET), "POSTERN_IMAP_POLL_INTERVAL": "0.5",
                        "POSTERN_LOGIN_FAIL_DELAY": "0", "POSTERN_OUTBOUND_TRANSPORT": "smarthost",
                        "POSTERN_MAX_CONN_PER_IP": "1000"},  # every client is on 127.0.0.1
                       ephemeral_ports=True, background=True, handler_wrapper=ev.handler_wrapper).start()
    try:
        ev.attach(stack)
        cf = stack.gateway.change_feed
        if cf is None or not cf.live:
            raise RuntimeError("the gateway has no live change feed")
        imap, smtp = stack.imap_port, stack.smtp_port
        user = "lat@example.test"
        stack.directory.add_user(user, PASSWORD)
        stack.store.ensure_mailboxes(user)

        # --- delivery -> IDLE ------------------------------------------------------------
        idle = Idle(imap, user)
        deliver = []
        for i in range(1, messages + 1):
            with smtplib.SMTP("127.0.0.1", smtp, timeout=30) as c:
                c.sendmail("far@remote.test", [user], f"Subject: feed {i}\r\n\r\nhello\r\n".encode())
                t0 = time.monotonic()
            idle.until(lambda ln, i=i: ln == f"* {i} EXISTS\r\n".encode())
            deliver.append(time.monotonic() - t0)

        # --- flag -> IDLE: the STORE on another gateway task ---------------------------------
        from postern_local.gatewayproc import GatewayProcess

        task_b = GatewayProcess(stack, {"POSTERN_CHANGE_FEED_POLL_INTERVAL": str(SAFETY_NET)}).start()
        other, reader = session(task_b.ports["imap"], user)
        flags = []
        for i in range(1, messages + 1):
            t0 = time.monotonic()  # the FETCH may reach A before B's tagged OK reaches us: time from the command
            other.sendall(f"f{i} STORE {i} +FLAGS (\\Flagged)\r\n".encode())
            idle.until(lambda ln, i=i: ln.startswith(f"* {i} FETCH".encode()))
            flags.append(time.monotonic() - t0)
            while not reader.readline().startswith(f"f{i} OK".encode()):
                pass
        other.close()
        task_b.stop()
        idle.close()

        # --- idle clients -----------------------------------------------------------------
        users = [f"idle{i}@example.test" for i in range(clients)]
        for u in users:
            stack.directory.add_user(u, PASSWORD)
            stack.store.ensure_mailboxes(u)
        idles = [Idle(imap, u) for u in users]
        time.sleep(2.0)
        with ev.counter.measure() as m:
            time.sleep(window)
        for c in idles:
            c.close()
        usage = m.usage
    finally:
        stack.stop()

    scopes = {k: v for k, v in usage.scopes.items() if not k.startswith(("esm:", "lambda:"))}
    ops: dict[str, int] = {}
    rru = sqs_chunks = 0.0
    for s in scopes.values():
        for op, n in s.requests.items():
            ops[op] = ops.get(op, 0) + n
        rru += s.ddb_rru
        sqs_chunks += s.sqs_chunks
    per_hour = 3600 / window
    task_ops = {op: n for op, n in ops.items() if op.startswith(("sqs.", "sns."))}  # the task's own queue
    client_ops = {op: n for op, n in ops.items() if op not in task_ops}  # per account: the safety net
    return {
        "messages": messages, "clients": clients, "window_s": window, "safety_net_s": SAFETY_NET,
        "deliver_s": sorted(deliver), "flag_s": sorted(flags),
        "requests_by_op": ops,
        "client_requests_per_hour": sum(client_ops.values()) / clients * per_hour,
        "task_requests_per_hour": sum(task_ops.values()) * per_hour,
        "client_rru_per_hour": rru / clients * per_hour,
        "task_sqs_chunks_per_hour": sqs_chunks * per_hour,
    }


def priced(r: dict, at_clients: int = 1000, tasks: int = 2) -> dict:
    from postern.costs import cost_of, load_prices

    prices = load_prices()
    client = cost_of({"ddb_rru": r["client_rru_per_hour"] * MONTH_H}, prices).total
    task = cost_of({"sqs_requests": r["task_sqs_chunks_per_hour"] * MONTH_H}, prices).total
    return {"client_month": client, "task_month": task, "at_clients": at_clients, "tasks": tasks,
            "per_idle_client_month": client + task * tasks / at_clients,
            "requests_per_idle_client_hour": r["client_requests_per_hour"]
            + r["task_requests_per_hour"] * tasks / at_clients}


def report(r: dict, p: dict) -> str:
    def lat(xs):
        return (f"p50 {percentile(xs, 50) * 1000:.0f} ms, p95 {percentile(xs, 95) * 1000:.0f} ms, "
                f"max {max(xs) * 1000:.0f} ms (n={len(xs)})")

    ops = ", ".join(f"{k} {v}" for k, v in sorted(r["requests_by_op"].items()))
    return "\n".join([
        "# The change feed: latency to IDLE and the cost of an idle client",
        "",
        "Measured by `python bench/feed.py --write` on the local stack (loopback, moto, background pollers);"
        f" safety-net poll {r['safety_net_s']:.0f} s (`POSTERN_CHANGE_FEED_POLL_INTERVAL`).",
        "",
        "| measure | figure |",
        "|---|---|",
        f"| delivery (SMTP 250) -> `* n EXISTS` in IDLE | {lat(r['deliver_s'])} |",
        f"| STORE sent to task B -> `* n FETCH` in IDLE on task A | {lat(r['flag_s'])} |",
        f"| AWS requests in {r['window_s']:.0f} s with {r['clients']} idle clients | {ops} |",
        f"| per idle client (its account's safety-net read of the log) | {r['client_requests_per_hour']:.1f}"
        f" requests/hour, {r['client_rru_per_hour']:.1f} RRU/hour: ${p['client_month']:.4f} a month |",
        f"| per gateway task (long polls of its queue, 20 s) | {r['task_requests_per_hour']:.0f} requests/hour:"
        f" ${p['task_month']:.4f} a month |",
        f"| **one idle client-month at {p['at_clients']:,} clients on {p['tasks']} tasks** |"
        f" **${p['per_idle_client_month']:.4f}** ({p['requests_per_idle_client_hour']:.1f} requests/hour;"
        " target <= $0.05) |",
        "",
        "Before the feed each selected mailbox was polled every 0.5 s (3.5 requests/s, $1.44 a month per idle"
        " client, docs/cost.md of 2026-12-01). A change costs the feed, per message and not per idle client:"
        " one SNS publish per batch of the stream (up to 100 changes), SNS to SQS delivery (free), and per task"
        " one receive and one delete. Latencies here include the local Lambda workers and moto; on AWS,"
        " Lambda reads a stream shard about four times a second and SNS to SQS adds tens of milliseconds.",
        "",
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=20)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--window", type=float, default=130.0)
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--quick", action="store_true", help="5 messages, 10 clients, a 65 s window (bench/run_all.py)")
    a = ap.parse_args()
    if a.quick:
        a.messages, a.clients, a.window = 5, 10, 65.0
    r = run(a.messages, a.clients, a.window)
    p = priced(r)
    text = report(r, p)
    print(text)
    if a.write:
        (REPO / "docs/feed.md").write_text(text)
        out = REPO / ".postern-local/evidence"
        out.mkdir(parents=True, exist_ok=True)
        (out / "feed.json").write_text(json.dumps({**r, "priced": p}, indent=1))


if __name__ == "__main__":
    main()
