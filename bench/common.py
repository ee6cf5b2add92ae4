"""Helpers shared by the evidence benchmarks (cost, faults, load): loopback only.

In:   nothing but the local packages.
Out:  :class:`FakeMX` (an aiosmtpd server on 127.0.0.1:0 in a thread that
      records what it receives, or answers a chosen reply), :func:`message`
      (a test message with a unique Message-ID and a given size),
      :func:`percentile`, :func:`rss_kb` (resident set size of a process,
      from /proc), :func:`table` (fixed-width text table), :func:`unhooked`
      (fresh Clients with no request counter or fault hooks: for set-up and
      read-back steps that must not disturb or be disturbed by a measurement).
Fails: FakeMX start errors propagate.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY


def message(sender: str, rcpts: list[str], size: int = 10 * 1024, subject: str = "evidence") -> tuple[str, bytes]:
    """(Message-ID, bytes) of a plain message of about ``size`` bytes."""
    mid = f"<{uuid.uuid4().hex}@bench.example.test>"
    m = EmailMessage(policy=SMTP_POLICY)
    m["From"] = sender
    m["To"] = ", ".join(rcpts)
    m["Subject"] = subject
    m["Message-ID"] = mid
    m["Date"] = "Tue, 01 Dec 2026 10:00:00 +0000"
    line = "The quick brown fox jumps over the lazy dog, again and again and again.\n"
    body = line * max(1, (size - 300) // len(line))
    m.set_content(body)
    return mid, m.as_bytes()


class FakeMX:
    """A remote MX on 127.0.0.1:0. ``reply=None`` accepts (250) and records; else e.g. "550 5.1.1 no"."""

    def __init__(self, reply: str | None = None):
        self.reply = reply
        self.received: list[tuple[str, list[str], bytes]] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fake-mx", daemon=True)
        self.server = None
        self.port = 0

    def __enter__(self) -> FakeMX:
        from aiosmtpd.smtp import SMTP

        mx = self

        class Handler:
            async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
                envelope.rcpt_tos.append(address)
                return "250 OK"

            async def handle_DATA(self, server, session, envelope):
                if mx.reply:
                    return mx.reply
                mx.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
                return "250 2.0.0 OK"

        self.thread.start()

        async def start():
            return await self.loop.create_server(lambda: SMTP(Handler(), hostname="mx.remote.test"), "127.0.0.1", 0)

        self.server = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc) -> None:
        async def stop():
            self.server.close()

        try:
            asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(round(p / 100 * (len(v) - 1)))))
    return v[k]


def rss_kb(pid: int | None = None) -> int:
    """VmRSS of a process in KiB (Linux /proc)."""
    with open(f"/proc/{pid or os.getpid()}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def table(headers: list[str], rows: list[list], align: str | None = None) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    align = align or ("l" + "r" * (len(headers) - 1))
    out = []
    for n, r in enumerate(cells):
        out.append("  ".join(c.ljust(w) if align[i] == "l" else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def md_table(headers: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(str(h) for h in headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def unhooked(settings):
    """Clients for the same endpoint with no hooks registered."""
    from postern.aws import Clients

    return Clients(settings)


def wait_until(pred, timeout: float, interval: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(interval)
    return pred()
