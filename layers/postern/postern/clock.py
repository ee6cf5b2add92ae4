"""A controllable clock for every retry and age decision.

In:   nothing (reads ``time.time`` unless overridden).
Out:  :func:`now` (epoch seconds, float); :func:`set_clock` / :func:`frozen`
      let tests fix or advance time; :class:`FakeClock` is a settable clock.
Fails: never.

Outbound retries are scheduled by SQS visibility, so no code here sleeps:
tests "advance time" by moving the clock and making the SQS message visible
again (visibility 0), never by waiting.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

_lock = threading.Lock()
_source: Callable[[], float] = time.time


def now() -> float:
    """The current time in epoch seconds (the overridable one)."""
    return _source()


def set_clock(source: Callable[[], float] | None) -> None:
    """Replace the clock (``None`` restores the real one)."""
    global _source
    with _lock:
        _source = source or time.time


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, start: float = 1_800_000_000.0):
        self.t = float(start)

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> float:
        self.t += seconds
        return self.t

    def set(self, t: float) -> None:
        self.t = float(t)


@contextlib.contextmanager
def frozen(start: float = 1_800_000_000.0) -> Iterator[FakeClock]:
    """``with clock.frozen() as c: ... c.advance(60)`` - restores the real clock after."""
    fake = FakeClock(start)
    set_clock(fake)
    try:
        yield fake
    finally:
        set_clock(None)
