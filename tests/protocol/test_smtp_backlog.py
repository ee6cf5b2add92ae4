"""SMTP under a backlog (issue 12, docs/load.md): when the spool lane is POSTERN_SPOOL_MAX_WAIT behind,
a new transaction gets 451 4.3.2 at MAIL (the sender retries; nothing is taken it cannot hand on),
while every transaction already under way is still accepted; once the lane catches up, MAIL works.

The lane is held by a spooler gated on an event, and its lag read from a test clock: no sleeps,
no timing assertions.
"""

from __future__ import annotations

import smtplib
import threading
from types import SimpleNamespace

from helpers import HOST, ServerThread, memory_backend, wait_for

from postern_gateway.blocking import Blocking
from postern_gateway.smtp.server import start_smtp

RAW = b"From: s@remote.test\r\nSubject: hi\r\n\r\nbody\r\n"


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


class GatedSpooler:
    """Holds every spool call until ``gate`` is set (a backend that stopped keeping up)."""

    def __init__(self):
        self.gate = threading.Event()
        self.lock = threading.Lock()
        self.running = 0
        self.spooled: list[str] = []

    def spool(self, raw, **fields):
        with self.lock:
            self.running += 1
        self.gate.wait(60)
        with self.lock:
            self.spooled.append(fields["queue_id"])
        return SimpleNamespace(queue_id=fields["queue_id"], size=len(raw))


def backlogged():
    """A backend whose spool calls wait on ``spooler.gate``, its bulk lane timed by ``clock``
    (4 threads, POSTERN_SPOOL_MAX_WAIT 20 s), mail for alice@example.test relayed: (clock, backend, spooler)."""
    clock = Clock()
    backend = memory_backend(spool_max_wait=20.0)
    backend.blocking.shutdown()
    backend.blocking = Blocking(4, clock=clock)
    backend.directory.add_domain("example.test")
    backend.directory.add_alias("alice@example.test", ["someone@remote.test"])
    backend.spooler = GatedSpooler()
    return clock, backend, backend.spooler


def test_mail_is_deferred_while_the_spool_lane_lags_and_transactions_under_way_are_accepted():
    clock, backend, spooler = backlogged()
    slots = backend.blocking.bulk_threads
    results: list[object] = []

    def send():
        try:
            with smtplib.SMTP(HOST, srv.port, timeout=60) as c:
                results.append(c.sendmail("s@remote.test", ["alice@example.test"], RAW))
        except smtplib.SMTPException as exc:  # noqa: PERF203 - recorded for the assertion below
            results.append(exc)

    with ServerThread(start_smtp, backend, role="mx") as srv:
        senders = [threading.Thread(target=send) for _ in range(slots + 1)]
        for t in senders[:slots]:
            t.start()
        wait_for(lambda: spooler.running == slots, 30, "spool calls holding every bulk slot")
        senders[slots].start()
        wait_for(lambda: backend.blocking.bulk_queued() == 1, 30, "one more message queued for a slot")
        clock.t += 19.0
        with smtplib.SMTP(HOST, srv.port, timeout=60) as c:  # behind, but within the limit: MAIL accepted
            c.ehlo("client.example")
            assert c.mail("s@remote.test")[0] == 250
            c.rset()
            clock.t += 2.0  # now 21 s behind
            code, text = c.mail("s@remote.test")
            assert (code, text[:5]) == (451, b"4.3.2")
            spooler.gate.set()  # the backend catches up
            for t in senders:
                t.join(60)
            assert results == [{}] * (slots + 1)  # every transaction under way was accepted
            assert len(spooler.spooled) == slots + 1
            assert backend.blocking.bulk_wait() == 0.0
            assert c.sendmail("s@remote.test", ["alice@example.test"], RAW) == {}  # and MAIL works again


def test_a_final_dot_behind_a_full_spool_queue_is_deferred(monkeypatch):
    from postern_gateway.smtp import handler

    monkeypatch.setattr(handler, "SPOOL_QUEUE_PER_SLOT", 1)
    _, backend, spooler = backlogged()
    slots = backend.blocking.bulk_threads
    results: list[object] = []

    def send():
        with smtplib.SMTP(HOST, srv.port, timeout=60) as c:
            results.append(c.sendmail("s@remote.test", ["alice@example.test"], RAW))

    with ServerThread(start_smtp, backend, role="mx") as srv:
        try:
            senders = [threading.Thread(target=send) for _ in range(2 * slots)]
            for t in senders[:slots]:
                t.start()
            wait_for(lambda: spooler.running == slots, 30, "spool calls holding every bulk slot")
            for t in senders[slots:]:
                t.start()
            wait_for(lambda: backend.blocking.bulk_queued() == slots, 30, "a slot's worth queued")
            with smtplib.SMTP(HOST, srv.port, timeout=60) as c:  # no lag yet: MAIL and RCPT pass
                c.ehlo("client.example")
                assert c.mail("s@remote.test")[0] == 250 and c.rcpt("alice@example.test")[0] == 250
                code, text = c.data(RAW)  # but the queue is full: told to come back, nothing spooled
                assert (code, text[:5]) == (451, b"4.3.2")
        finally:
            spooler.gate.set()
        for t in senders:
            t.join(60)
    assert results == [{}] * (2 * slots) and len(spooler.spooled) == 2 * slots


def test_bulk_wait_is_the_age_of_the_oldest_call_under_way_and_zero_without_one():
    import asyncio

    clock = Clock()
    b = Blocking(4, clock=clock)
    gate = threading.Event()

    async def run():
        seen = [b.bulk_wait()]
        holders = [asyncio.create_task(b.run_bulk(gate.wait, 30)) for _ in range(b.bulk_threads)]
        for _ in range(200):
            await asyncio.sleep(0)
        clock.t += 3
        queued = asyncio.create_task(b.run_bulk(lambda: "queued"))
        await asyncio.sleep(0)
        clock.t += 3
        seen += [b.bulk_wait(), b.bulk_queued()]  # the running holders are the oldest: 6 s
        queued.cancel()  # a waiter that leaves stops counting
        await asyncio.gather(queued, return_exceptions=True)
        seen.append(b.bulk_queued())
        gate.set()
        await asyncio.gather(*holders)
        seen.append(b.bulk_wait())
        return seen

    assert asyncio.run(run()) == [0.0, 6.0, 1, 0, 0.0]
    b.shutdown()
