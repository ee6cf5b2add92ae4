"""Fault injection for the local stack: failing AWS calls and crashing Lambda handlers.

Local embedded mode only; nothing in ``functions/``, ``layers/`` or
``gateway/`` imports it. Switched on by one variable (read through
``Settings.extra``, so ``Settings.from_env`` stays the only reader of the
environment)::

    POSTERN_FAULTS="s3=0.1,sqs=0.1,dynamodb=0.1,timeout=0.02,seed=1"

Keys:
  ``s3``, ``sqs``, ``dynamodb`` (or any botocore service id)
        fraction of that service's API calls that fail with a server-side
        error (500 InternalError, 503 SlowDown/ServiceUnavailable, 400
        throttling), chosen per call.
  ``timeout``  fraction of calls (of the services above) that time out;
        ``late`` (default 0.5) is the share of those that time out *after*
        AWS executed the request (a ReadTimeoutError on a write that
        happened: the nasty case), the rest before it was sent
        (ConnectTimeoutError: nothing happened).
  ``crash``    fraction of Lambda invocations that crash after their side
        effects and before they report success (:func:`wrap_handler`): the
        poller then deletes nothing and the whole batch is redelivered.
  ``redeliver`` deliver every SQS batch this many times (default 1): SQS's
        at-least-once delivery made systematic.
  ``seed``     the random seed (default 0). Decisions are drawn from one
        seeded generator in call order, so a single-threaded run repeats
        exactly; a concurrent run repeats its rates, not its sequence.
  ``skip``     ``|``-separated operation names never faulted (default: the
        set-up and introspection calls, see ``DEFAULT_SKIP``).

In:   a :class:`postern.aws.Clients` (:meth:`FaultInjector.install`) and the
      handlers the pollers call (:func:`wrap_handler`).
Out:  botocore ``before-call`` / ``after-call`` hooks that fail calls at the
      chosen rates, and :attr:`FaultInjector.counts`: what was injected, by
      service, operation and kind, so a report can say how hard it pushed.
Fails: by design: injected failures surface exactly as real ones do, as
      ``botocore.exceptions.ClientError`` (one API call; botocore's own
      retries are bypassed so the caller sees every injected fault),
      ``ConnectTimeoutError`` or ``ReadTimeoutError``; a crash raises
      :class:`InjectedCrash` out of the wrapped handler.

The hooks work per API call (``before-call`` short-circuits before
botocore's retry loop), so ``s3=0.1`` means one in ten S3 calls fails as
seen by Postern's code, not one in ten HTTP attempts (which botocore's
standard retry mode would mostly hide).
"""

from __future__ import annotations

import copy
import random
import threading
from collections import Counter
from dataclasses import dataclass, field

from botocore.awsrequest import AWSResponse
from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError

DEFAULT_SKIP = frozenset({
    "CreateBucket", "CreateQueue", "CreateTable", "DescribeTable", "GetQueueAttributes", "GetQueueUrl",
    "PutBucketLifecycleConfiguration", "UpdateTimeToLive", "ListQueues", "ListTables", "DeleteQueue",
    "DeleteTable", "PurgeQueue", "SetQueueAttributes",
})

# What a real service answers when it has a bad moment (status, error code).
ERRORS = {
    "s3": [(500, "InternalError"), (503, "SlowDown")],
    "sqs": [(500, "InternalError"), (503, "ServiceUnavailable")],
    "dynamodb": [(500, "InternalServerError"), (400, "ThrottlingException"),
                 (400, "ProvisionedThroughputExceededException")],
}
GENERIC_ERRORS = [(500, "InternalError"), (503, "ServiceUnavailable")]


class InjectedCrash(RuntimeError):
    """A Lambda invocation that died after doing its work and before reporting it."""


@dataclass(frozen=True)
class FaultSpec:
    rates: dict[str, float] = field(default_factory=dict)  # service id -> error fraction
    timeout: float = 0.0
    late: float = 0.5
    crash: float = 0.0
    redeliver: int = 1
    seed: int = 0
    skip: frozenset[str] = DEFAULT_SKIP

    @property
    def services(self) -> set[str]:
        return set(self.rates) or ({"s3", "sqs", "dynamodb"} if self.timeout else set())

    @property
    def active(self) -> bool:
        return bool(any(self.rates.values()) or self.timeout or self.crash or self.redeliver > 1)

    @classmethod
    def parse(cls, text: str | None) -> FaultSpec:
        """``"s3=0.1,sqs=0.1,dynamodb=0.1,timeout=0.02,seed=1"`` -> FaultSpec (ValueError names a bad key)."""
        if not text or not text.strip():
            return cls()
        rates: dict[str, float] = {}
        kw: dict = {}
        skip = set(DEFAULT_SKIP)
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            name, sep, value = part.partition("=")
            name = name.strip().lower()
            if not sep:
                raise ValueError(f"POSTERN_FAULTS: {part!r} is not key=value")
            try:
                if name == "seed":
                    kw["seed"] = int(value)
                elif name == "redeliver":
                    kw["redeliver"] = max(1, int(value))
                elif name == "skip":
                    skip |= {v.strip() for v in value.split("|") if v.strip()}
                elif name in ("timeout", "late", "crash"):
                    kw[name] = _fraction(float(value))
                else:
                    rates[name] = _fraction(float(value))
            except ValueError as exc:
                raise ValueError(f"POSTERN_FAULTS: bad value for {name!r}: {value!r} ({exc})") from None
        return cls(rates=rates, skip=frozenset(skip), **kw)

    @classmethod
    def from_settings(cls, settings) -> FaultSpec:
        return cls.parse((settings.extra or {}).get("POSTERN_FAULTS", ""))


def _fraction(x: float) -> float:
    if not 0.0 <= x <= 1.0:
        raise ValueError("must be between 0 and 1")
    return x


def _fake_response(status: int) -> AWSResponse:
    r = AWSResponse("http://postern-fault.invalid/", status, {}, None)
    r._content = b""
    return r


class FaultInjector:
    """Botocore hooks that fail a seeded fraction of calls. Thread-safe."""

    def __init__(self, spec: FaultSpec):
        self.spec = spec
        self._rng = random.Random(spec.seed)
        self._lock = threading.Lock()
        self.counts: Counter = Counter()  # (service, operation, kind) -> n
        self.calls: Counter = Counter()  # service -> calls seen
        self.enabled = True
        # Optional () -> bool: True exempts the current call (e.g. the local pollers'
        # own SQS calls, which stand for Lambda's event source mapping that AWS runs).
        self.exempt = None

    def install(self, clients) -> FaultInjector:
        """Register on a :class:`postern.aws.Clients`. Install a RequestCounter first (see requests.py)."""
        clients.register_hook("before-call", self._before_call)
        clients.register_hook("after-call", self._after_call)
        return self

    def install_client(self, client) -> FaultInjector:
        client.meta.events.register("before-call", self._before_call)
        client.meta.events.register("after-call", self._after_call)
        return self

    def random(self) -> float:
        with self._lock:
            return self._rng.random()

    def _choose(self, options):
        with self._lock:
            return self._rng.choice(options)

    # --- hooks --------------------------------------------------------------
    def _before_call(self, model=None, params=None, context=None, **kwargs):
        if not self.enabled or model is None or (self.exempt is not None and self.exempt()):
            return None
        service = kwargs.get("event_name", "..").split(".")[1]
        op = model.name
        if service not in self.spec.services or op in self.spec.skip:
            return None
        with self._lock:
            self.calls[service] += 1
            r = self._rng.random()
            late_draw = self._rng.random()
        rate = self.spec.rates.get(service, 0.0)
        if r < rate:
            status, code = self._choose(ERRORS.get(service, GENERIC_ERRORS))
            with self._lock:
                self.counts[(service, op, "error")] += 1
                n = sum(self.counts.values())
            parsed = {
                "Error": {"Code": code, "Message": "injected by postern_local.faults"},
                "ResponseMetadata": {"HTTPStatusCode": status, "RequestId": f"fault-{n}", "HTTPHeaders": {},
                                     "RetryAttempts": 0},
            }
            return _fake_response(status), parsed
        if r < rate + self.spec.timeout:
            if late_draw < self.spec.late:
                if context is not None:
                    context["postern_fault_late"] = True  # executes, then "times out" in after-call
                return None
            with self._lock:
                self.counts[(service, op, "timeout")] += 1
            raise ConnectTimeoutError(endpoint_url=f"injected://{service}/{op}")
        return None

    def _after_call(self, http_response=None, parsed=None, model=None, context=None, **kwargs):
        if context and context.pop("postern_fault_late", False):
            service = kwargs.get("event_name", "..").split(".")[1]
            with self._lock:
                self.counts[(service, model.name, "late-timeout")] += 1
            raise ReadTimeoutError(endpoint_url=f"injected://{service}/{model.name}")

    def merge(self, counts: dict, calls: dict) -> None:
        """Add what another injector did (a Lambda worker process's, postern_local.worker)."""
        with self._lock:
            self.counts.update(counts)
            self.calls.update(calls)

    # --- reporting ----------------------------------------------------------
    def summary(self) -> dict[str, dict[str, int]]:
        """{service: {"calls": n, "error": n, "timeout": n, "late-timeout": n}}."""
        with self._lock:
            out: dict[str, dict[str, int]] = {s: {"calls": n} for s, n in self.calls.items()}
            for (service, _op, kind), n in self.counts.items():
                out.setdefault(service, {"calls": 0})
                out[service][kind] = out[service].get(kind, 0) + n
            return out

    def total(self) -> int:
        with self._lock:
            return sum(self.counts.values())


# ---------------------------------------------------------------- handlers
class HandlerFaults:
    """Crashes and redeliveries for Lambda handlers; counts what it did."""

    def __init__(self, spec: FaultSpec, rng: random.Random | None = None):
        self.spec = spec
        self._rng = rng or random.Random(spec.seed + 1)
        self._lock = threading.Lock()
        self.crashes: Counter = Counter()  # function name -> crashes injected
        self.redeliveries: Counter = Counter()  # function name -> extra deliveries

    def _draw(self) -> float:
        with self._lock:
            return self._rng.random()

    def wrap(self, name: str, handler):
        """``handler(event, context)`` -> a handler that is fed every batch ``redeliver`` times and
        sometimes raises :class:`InjectedCrash` after the real handler returned."""
        spec = self.spec

        def wrapped(event, context=None):
            result = None
            for attempt in range(spec.redeliver):
                ev = event if attempt == 0 else _redelivered(event, attempt)
                if attempt:
                    with self._lock:
                        self.redeliveries[name] += 1
                result = handler(ev, context)
            if spec.crash and self._draw() < spec.crash:
                with self._lock:
                    self.crashes[name] += 1
                raise InjectedCrash(f"{name}: injected crash after the handler's side effects")
            return result

        wrapped.__wrapped__ = handler
        wrapped.__name__ = getattr(handler, "__name__", name)
        return wrapped


def _redelivered(event: dict, attempt: int) -> dict:
    """The same batch as SQS would hand it out again: ApproximateReceiveCount grows."""
    ev = copy.deepcopy(event)
    for rec in ev.get("Records", []) or []:
        attrs = rec.setdefault("attributes", {})
        try:
            attrs["ApproximateReceiveCount"] = str(int(attrs.get("ApproximateReceiveCount", "1")) + attempt)
        except ValueError:
            pass
    return ev


def wrap_handler(name: str, handler, spec: FaultSpec | None = None, faults: HandlerFaults | None = None):
    """Convenience for pollers: wrap ``handler`` per ``spec`` (unchanged when nothing is asked)."""
    if faults is None:
        if spec is None or not (spec.crash or spec.redeliver > 1):
            return handler
        faults = HandlerFaults(spec)
    return faults.wrap(name, handler)
