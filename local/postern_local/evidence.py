"""Wire the request counter and the fault layer into a :class:`LocalStack`.

In:   a :class:`~postern_local.faults.FaultSpec` (or none) and a LocalStack
      built with ``handler_wrapper=evidence.handler_wrapper``.
Out:  :class:`Evidence`: ``attach(stack)`` after ``stack.start()`` installs
      the counter (first) and the fault injector on the stack's shared
      Clients, and labels the pollers' own SQS calls ``esm:<queue>`` (they
      stand for Lambda's event source mapping, which AWS runs); every
      handler invocation is timed and its AWS calls labelled
      ``lambda:<function>``; ``invocations`` lists (function, records,
      seconds) for Lambda GB-second accounting. A handler that runs in its
      worker process (:class:`postern_local.worker.RemoteHandler`, what the
      local stack uses) counts and injects there, with the same counter and
      fault spec, and reports back after each invocation: the figures and
      ``reasons`` are the same as for a handler in this process.
Fails: nothing of its own; faults surface where they are injected.

The order of wrappers around a handler is: faults (redelivery, crash after
the side effects) outside, timing + scope inside, so a redelivered batch is
billed as the second invocation it is.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass

from .faults import FaultInjector, FaultSpec, HandlerFaults, InjectedCrash
from .requests import RequestCounter


@dataclass(frozen=True)
class Invocation:
    function: str
    records: int
    seconds: float
    ok: bool
    log_bytes: int | None = None  # what it printed (its worker counts it; None in process: not measured)
    log_events: int | None = None
    log_records: int | None = None


class Evidence:
    def __init__(self, spec: FaultSpec | None = None, probe: bool = True):
        self.spec = spec or FaultSpec()
        self.counter = RequestCounter(probe=probe)
        self.injector = FaultInjector(self.spec) if (self.spec.rates or self.spec.timeout) else None
        self.handler_faults = HandlerFaults(self.spec)
        self.invocations: list[Invocation] = []
        self.reasons: dict[str, str] = {}  # SQS message id -> why its last handling failed
        self._lock = threading.Lock()

    # --- handler wrapping (LocalStack(handler_wrapper=...)) ----------------
    def handler_wrapper(self, name: str, handler):
        counter = self.counter
        remote = getattr(handler, "invoke", None)  # a worker process (postern_local.worker.RemoteHandler)

        module = sys.modules.get(getattr(handler, "__module__", "") or "")
        processor = getattr(module, "processor", None)  # in process: the function's Powertools BatchProcessor

        def call(event, context, logs: dict):
            if remote is None:
                with counter.scope(f"lambda:{name}"):
                    result = handler(event, context)
                self._record_failures(name, processor)
                return result
            # In its worker: the worker counts and injects, and reports back.
            outcome = remote(event, context, self._telemetry(name))
            self._absorb(name, outcome.report)
            logs.update(log_bytes=outcome.report.log_bytes, log_events=outcome.report.log_events,
                        log_records=outcome.report.log_records)
            return outcome.result()

        def timed(event, context=None):
            t0 = time.perf_counter()
            ok = False
            logs: dict = {}
            try:
                result = call(event, context, logs)
                ok = True
                return result
            except Exception as exc:
                kind = getattr(exc, "type_name", exc.__class__.__name__)
                self._record_batch(name, event, f"handler raised {kind}: {exc}")
                raise
            finally:
                with self._lock:
                    self.invocations.append(Invocation(name, len(event.get("Records", []) or []),
                                                       time.perf_counter() - t0, ok, **logs))

        timed.__wrapped__ = handler
        if not (self.spec.crash or self.spec.redeliver > 1):
            return timed
        faulty = self.handler_faults.wrap(name, timed)

        def crashing(event, context=None):
            try:
                return faulty(event, context)
            except InjectedCrash as exc:
                self._record_batch(name, event, str(exc))
                raise

        crashing.__wrapped__ = handler
        return crashing

    def _telemetry(self, name: str):
        from .rules.identities import ADMIN
        from .worker import Telemetry

        inj = self.injector
        return Telemetry(count=True, probe=self.counter.probe,
                         probe_credentials={"aws_access_key_id": ADMIN.access_key,
                                            "aws_secret_access_key": ADMIN.secret_key},
                         faults=_spec_text(self.spec) if inj is not None else None,
                         faults_enabled=inj.enabled if inj is not None else False, scope=f"lambda:{name}")

    def _absorb(self, name: str, report) -> None:
        if report.usage is not None:
            self.counter.merge(report.usage)
        if self.injector is not None and (report.faults or report.calls):
            self.injector.merge(report.faults, report.calls)
        if report.failures:
            with self._lock:
                for mid, why in report.failures.items():
                    self.reasons[mid] = f"{name}: {why}"

    def _record_failures(self, name: str, processor) -> None:
        if processor is None:
            return
        try:
            pairs = list(zip(processor.fail_messages, processor.exceptions))
        except Exception:  # noqa: BLE001 - a Powertools detail changed: no reasons, no harm
            return
        with self._lock:
            for record, info in pairs:
                mid = getattr(record, "message_id", None) or (record.get("messageId") if isinstance(record, dict) else None)
                exc = info[1] if isinstance(info, tuple) and len(info) > 1 else info
                self.reasons[mid] = f"{name}: {exc.__class__.__name__}: {exc}"

    def _record_batch(self, name: str, event: dict, reason: str) -> None:
        with self._lock:
            for rec in event.get("Records", []) or []:
                self.reasons[rec.get("messageId")] = f"{name}: {reason}"

    # --- the stack's clients and pollers -----------------------------------
    def attach(self, stack, wrap_handlers: bool = False) -> Evidence:
        """Install on a started stack. ``wrap_handlers``: the stack was not built with
        ``handler_wrapper=self.handler_wrapper``, so wrap its handlers now (undo with detach)."""
        self._wrapped = {}
        if wrap_handlers:
            for fn in stack.functions.values():
                self._wrapped[fn.logical_id] = fn.handler
                fn.handler = self.handler_wrapper(fn.logical_id, fn.handler)
        self._polls = {}
        from postern.aws import get_clients

        targets = [stack.clients]
        if get_clients() is not stack.clients:  # handlers use the process-wide clients
            targets.append(get_clients())
        if getattr(stack, "gateway_clients", None) is not None:  # the gateway signs with its own role
            targets.append(stack.gateway_clients)
        for clients in targets:
            self.counter.install(clients)
            if self.injector is not None:
                self.injector.install(clients)
        for esm in getattr(stack, "esm_clients", {}).values():  # the pollers' own clients: counted, never faulted
            self.counter.install_client(esm)
        if self.injector is not None:
            # The pollers' receive/delete/visibility calls play Lambda's event source
            # mapping, which AWS runs and retries itself: never faulted. Crashes and
            # redeliveries (HandlerFaults) stand for its failures instead.
            self.injector.exempt = lambda: self.counter.current_scope().startswith("esm:")
        for p in stack.pollers.pollers:
            self._scope_poller(p)
        return self

    def _scope_poller(self, poller) -> None:
        counter = self.counter
        original = poller.poll_once
        src = poller.source  # an SQS queue, or a table's stream (postern_local.streams)
        label = f"esm:{src.queue}" if hasattr(src, "queue") else f"esm:{src.table}-stream"

        def poll_once(wait: int = 0):
            with counter.scope(label):
                return original(wait=wait)

        self._polls[id(poller)] = (poller, original)
        poller.poll_once = poll_once

    def detach(self, stack) -> None:
        """Undo attach as far as botocore allows: faults off, handlers and pollers restored
        (the counter's hooks stay registered but only count)."""
        if self.injector is not None:
            self.injector.enabled = False
        for fn in stack.functions.values():
            if fn.logical_id in getattr(self, "_wrapped", {}):
                fn.handler = self._wrapped[fn.logical_id]
        for poller, original in getattr(self, "_polls", {}).values():
            poller.poll_once = original

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


def _spec_text(spec: FaultSpec) -> str:
    """The AWS-call part of a FaultSpec as POSTERN_FAULTS text (what a worker's injector needs)."""
    parts = [f"{k}={v}" for k, v in sorted(spec.rates.items())]
    if spec.timeout:
        parts += [f"timeout={spec.timeout}", f"late={spec.late}"]
    parts.append(f"seed={spec.seed}")
    skip = sorted(spec.skip)
    if skip:
        parts.append("skip=" + "|".join(skip))
    return ",".join(parts)
