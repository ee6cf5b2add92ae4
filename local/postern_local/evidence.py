"""Wire the request counter and the fault layer into a :class:`LocalStack`.

In:   a :class:`~postern_local.faults.FaultSpec` (or none) and a LocalStack
      built with ``handler_wrapper=evidence.handler_wrapper``.
Out:  :class:`Evidence`: ``attach(stack)`` after ``stack.start()`` installs
      the counter (first) and the fault injector on the stack's shared
      Clients, and labels the pollers' own SQS calls ``esm:<queue>`` (they
      stand for Lambda's event source mapping, which AWS runs); every
      handler invocation is timed and its AWS calls labelled
      ``lambda:<function>``; ``invocations`` lists (function, records,
      seconds) for Lambda GB-second accounting.
Fails: nothing of its own; faults surface where they are injected.

The order of wrappers around a handler is: faults (redelivery, crash after
the side effects) outside, timing + scope inside, so a redelivered batch is
billed as the second invocation it is.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from .faults import FaultInjector, FaultSpec, HandlerFaults
from .requests import RequestCounter


@dataclass(frozen=True)
class Invocation:
    function: str
    records: int
    seconds: float
    ok: bool


class Evidence:
    def __init__(self, spec: FaultSpec | None = None, probe: bool = True):
        self.spec = spec or FaultSpec()
        self.counter = RequestCounter(probe=probe)
        self.injector = FaultInjector(self.spec) if (self.spec.rates or self.spec.timeout) else None
        self.handler_faults = HandlerFaults(self.spec)
        self.invocations: list[Invocation] = []
        self._lock = threading.Lock()

    # --- handler wrapping (LocalStack(handler_wrapper=...)) ----------------
    def handler_wrapper(self, name: str, handler):
        counter = self.counter

        def timed(event, context=None):
            t0 = time.perf_counter()
            ok = False
            try:
                with counter.scope(f"lambda:{name}"):
                    result = handler(event, context)
                ok = True
                return result
            finally:
                with self._lock:
                    self.invocations.append(Invocation(name, len(event.get("Records", []) or []),
                                                       time.perf_counter() - t0, ok))

        timed.__wrapped__ = handler
        if self.spec.crash or self.spec.redeliver > 1:
            return self.handler_faults.wrap(name, timed)
        return timed

    # --- the stack's clients and pollers -----------------------------------
    def attach(self, stack) -> Evidence:
        self.counter.install(stack.clients)
        if self.injector is not None:
            self.injector.install(stack.clients)
        for p in stack.pollers.pollers:
            self._scope_poller(p)
        return self

    def _scope_poller(self, poller) -> None:
        counter = self.counter
        original = poller.poll_once
        label = f"esm:{poller.source.queue}"

        def poll_once(wait: int = 0):
            with counter.scope(label):
                return original(wait=wait)

        poller.poll_once = poll_once

    def pause_faults(self):
        """Context manager: no injected faults inside (set-up and read-back steps)."""
        return _Paused(self.injector)

    def invocations_since(self, n: int) -> list[Invocation]:
        with self._lock:
            return list(self.invocations[n:])


class _Paused:
    def __init__(self, injector: FaultInjector | None):
        self.injector = injector
        self.prev = True

    def __enter__(self):
        if self.injector is not None:
            self.prev = self.injector.enabled
            self.injector.enabled = False
        return self

    def __exit__(self, *exc):
        if self.injector is not None:
            self.injector.enabled = self.prev
