"""JMAP push (RFC 8887): how soon a WebSocket client hears of a change (``python bench/push.py``).

In:   nothing (loopback only). Options: ``--messages N`` (deliveries and flag changes timed,
      default 20), ``--write`` (.postern-local/evidence/push.json).
Out:  printed (and with ``--write`` in that file), p50/p95/max of:
      * delivery -> StateChange: from the SMTP 250 of a message sent to the MX port until the
        StateChange naming Email reaches a socket that sent WebSocketPushEnable (gateway, router
        and store functions, the mail table's stream, FeedFunction, its registry Query and
        @connections POST, the local front's socket);
      * flag -> StateChange: from sending an IMAP STORE until the StateChange arrives (the
        store's commit, then the feed alone).
Fails: a StateChange that does not come within 30 s raises (the bench is then void).

The local stack runs as ``make run`` does (background pollers; the stream poller reads about ten
times a second where Lambda reads a shard about four times), so the figures include the local
Lambda workers and moto, not API Gateway's hop.
"""

from __future__ import annotations

import argparse
import base64
import json
import smtplib
import socket
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from common import percentile  # noqa: E402

PASSWORD = "push-bench-password"


def _http(url: str, method: str, user: str) -> dict:
    """One authenticated call; a 503 (the function's first, cold call past its Timeout on a busy machine) again."""
    import urllib.error

    auth = "Basic " + base64.b64encode(f"{user}:{PASSWORD}".encode()).decode()
    for attempt in range(3):
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method=method, headers={"Authorization": auth}),
                                        timeout=30) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            if e.code != 503 or attempt == 2:
                raise
    raise AssertionError("unreachable")


def _wait_change(ws, after: int) -> int:
    end = time.monotonic() + 30
    while time.monotonic() < end:
        msg = json.loads(ws.recv(timeout=max(0.01, end - time.monotonic())))
        if msg.get("@type") == "StateChange":
            state = int(next(iter(msg["changed"].values()))["Email"])
            if state > after:
                return state
    raise TimeoutError("no StateChange within 30 s")


def run(messages: int) -> dict:
    from websockets.sync.client import connect

    from postern.jmap.websocket import WEBSOCKET
    from postern_local.stack import LocalStack

    stack = LocalStack({"POSTERN_LOGIN_FAIL_DELAY": "0", "POSTERN_OUTBOUND_TRANSPORT": "smarthost"},
                       ephemeral_ports=True, background=True).start()
    try:
        user = "push@example.test"
        stack.directory.add_user(user, PASSWORD)
        stack.store.ensure_mailboxes(user)
        url = _http(stack.http_url + "/.well-known/jmap", "GET", user)["capabilities"][WEBSOCKET]["url"]
        ticket = _http(stack.http_url + "/auth/ticket", "POST", user)["ticket"]
        with connect(f"{url}?ticket={ticket}", subprotocols=["jmap"], open_timeout=60) as ws:
            ws.send(json.dumps({"@type": "WebSocketPushEnable", "dataTypes": ["Email"]}))
            state = 0
            deliver, flags = [], []
            for i in range(1, messages + 1):
                with smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=30) as c:
                    c.sendmail("far@remote.test", [user], f"Subject: push {i}\r\n\r\nhello\r\n".encode())
                    t0 = time.monotonic()
                state = _wait_change(ws, state)
                deliver.append(time.monotonic() - t0)
            imap = socket.create_connection(("127.0.0.1", stack.imap_port), timeout=30)
            f = imap.makefile("rb")
            f.readline()
            imap.sendall(f"a LOGIN {user} {PASSWORD}\r\nb SELECT INBOX\r\n".encode())
            while not f.readline().startswith(b"b "):
                pass
            for i in range(1, messages + 1):
                t0 = time.monotonic()
                imap.sendall(f"f{i} STORE {i} +FLAGS (\\Flagged)\r\n".encode())
                state = _wait_change(ws, state)
                flags.append(time.monotonic() - t0)
                while not f.readline().startswith(f"f{i} ".encode()):
                    pass
            imap.close()
    finally:
        stack.stop()
    return {"messages": messages, "deliver_s": sorted(deliver), "flag_s": sorted(flags)}


def line(name: str, xs: list[float]) -> str:
    ms = [x * 1000 for x in xs]
    return f"{name}: p50 {percentile(ms, 50):.0f} ms, p95 {percentile(ms, 95):.0f} ms, max {max(ms):.0f} ms (n={len(ms)})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--messages", type=int, default=20)
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args()
    r = run(a.messages)
    print(line("delivery (SMTP 250) -> StateChange", r["deliver_s"]))
    print(line("IMAP STORE -> StateChange", r["flag_s"]))
    if a.write:
        out = REPO / ".postern-local/evidence"
        out.mkdir(parents=True, exist_ok=True)
        (out / "push.json").write_text(json.dumps(r, indent=1) + "\n")


if __name__ == "__main__":
    main()
