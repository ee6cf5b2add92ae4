"""One controllable clock for Postern's code and for SQS (tests and simulations only).

In:   moto's SQS backend in this process (``mock_aws`` or the local stack's
      moto server thread).
Out:  :func:`frozen` - like :func:`postern.clock.frozen`, and while it is in
      force moto's SQS reads the same fake clock for every message timer
      (DelaySeconds and visibility), so a message sent with
      ``DelaySeconds=900`` becomes receivable when the fake clock has moved
      900 s, exactly as after 900 real seconds; :func:`until_receivable`
      and :func:`skip` move the clock to the moment the next message of a
      queue can be received (the outbound retry hops walk a five-day
      schedule this way in seconds).
Fails: ImportError if moto is not installed.

moto keeps SQS timers through ``moto.sqs.models.unix_time_millis``; that one
name is replaced while :func:`frozen` is active and restored after. Long
polls (WaitTimeSeconds) keep moto's real clock, so a receive never hangs on
a frozen one. Never used by production code (``functions/``, ``layers/`` and
``gateway/`` never import ``local/``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import moto.sqs.models as _sqs_models

from postern import clock


def _queues():
    for _account, regions in _sqs_models.sqs_backends.items():
        for _region, backend in regions.items():
            yield from backend.queues.values()


@contextlib.contextmanager
def frozen(start: float = 1_800_000_000.0) -> Iterator[clock.FakeClock]:
    """``with timetravel.frozen() as c: ... c.advance(60)`` moves Postern's clock and SQS's together."""
    saved = _sqs_models.unix_time_millis
    with clock.frozen(start) as fake:
        _sqs_models.unix_time_millis = lambda dt=None: fake() * 1000.0
        try:
            yield fake
        finally:
            _sqs_models.unix_time_millis = saved


def until_receivable(queue_url: str) -> float | None:
    """Seconds until the first message of ``queue_url`` can be received (0: now; None: empty)."""
    name = queue_url.rstrip("/").rsplit("/", 1)[-1]
    now = _sqs_models.unix_time_millis()
    waits = [max(0.0, m.delayed_until - now, m.visible_at - now) / 1000.0
             for q in _queues() if q.name == name for m in list(q._messages)]
    return min(waits) if waits else None


def skip(fake_clock: clock.FakeClock, queue_url: str) -> float | None:
    """Advance ``fake_clock`` (inside :func:`frozen`) until the next message of ``queue_url``
    is receivable; returns the seconds advanced, or None if the queue is empty."""
    wait = until_receivable(queue_url)
    if wait is None:
        return None
    if wait > 0:
        fake_clock.advance(wait + 0.001)  # moto: visible strictly after visible_at
    return wait
