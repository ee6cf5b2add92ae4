"""Lambda execution environments, played locally: each function's handler in its own worker process.

In:   a function of template.yaml (:class:`FunctionSpec`: code directory,
      handler, Timeout, MemorySize) and the environment its process gets (the
      local stack's, the template's Environment where the stack sets nothing,
      the credentials of the function's own role, Lambda's ``AWS_LAMBDA_*``).
Out:  :class:`RemoteHandler`, a callable with the handler's signature
      ``(event, context) -> response`` that runs the real handler in a warm
      worker (``python -m postern_local.worker``), as Lambda reuses an
      execution environment; a second concurrent invocation gets a second
      worker (at most ``max_workers``). ``invoke(event, context, telemetry)``
      also returns what happened inside the worker (:class:`Report`: AWS
      requests counted, faults injected, the batch's failure reasons) for
      :mod:`postern_local.evidence`. ``prewarm()`` starts a worker in the
      background (the Init phase), ``close()`` ends them all.
Fails: :class:`HandlerTimeout` when the handler runs past the function's
      Timeout: the worker is killed (SIGKILL) and the next invocation gets a
      fresh one (a cold start), as Lambda does; the caller (the poller)
      deletes nothing, so the batch returns to the queue after its visibility
      timeout. :class:`HandlerCrashed` when the worker dies (a crash, an
      out-of-memory kill) or cannot start (an import error: its traceback is
      in the message). :class:`HandlerError` when the handler raised; its
      ``type_name`` is the exception's class name (``BatchProcessingError``
      when every record of the batch failed).

The worker imports the handler the way Lambda's Python runtime does: the
function's code directory first on ``sys.path`` (``LAMBDA_TASK_ROOT``), then
``importlib.import_module`` of the handler's module. After the import (the
Init phase) it lowers its own ``RLIMIT_AS`` so the memory it can still take
is about MemorySize minus what it already holds resident: MemorySize
approximated (Lambda limits resident memory; an address-space limit is the
closest a process can set on itself). A handler that passes it gets
MemoryError, and the worker is replaced after answering. Postern's clock
(:mod:`postern.clock`) follows the local stack's: when a test has frozen it,
each invocation carries the frozen time and the worker's clock is set to it.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

log = logging.getLogger("postern.local")

INIT_TIMEOUT = 60.0  # seconds a worker may take to import its handler (Lambda: 10 s; this machine is shared)


class HandlerError(RuntimeError):
    """The handler raised; ``type_name`` is the class name of what it raised."""

    def __init__(self, type_name: str, message: str, trace: str = ""):
        super().__init__(message)
        self.type_name = type_name
        self.trace = trace


class HandlerTimeout(HandlerError):
    """The invocation ran past the function's Timeout; its worker was killed."""


class HandlerCrashed(HandlerError):
    """The worker died or could not start."""


@dataclass(frozen=True)
class FunctionSpec:
    name: str  # logical id
    code_uri: str  # directory, relative to the repository root
    handler: str  # module.function
    timeout: float
    memory: int  # MB


@dataclass(frozen=True)
class Telemetry:
    """What :mod:`postern_local.evidence` asks a worker to measure during one invocation."""

    count: bool = False  # count AWS requests (postern_local.requests.RequestCounter)
    probe: bool = False  # ... reading item sizes with the administrator's credentials
    probe_credentials: dict | None = None
    faults: str | None = None  # POSTERN_FAULTS text for the worker's FaultInjector
    faults_enabled: bool = True
    scope: str = ""


@dataclass
class Report:
    usage: Any = None  # postern_local.requests.Usage
    faults: dict = field(default_factory=dict)  # (service, op, kind) -> n
    calls: dict = field(default_factory=dict)  # service -> calls seen by the injector
    failures: dict = field(default_factory=dict)  # SQS message id -> "Cls: message"
    pid: int = 0
    seconds: float = 0.0
    log_bytes: int = 0  # what the invocation wrote to stdout/stderr (CloudWatch Logs ingests it), UTF-8 bytes
    log_events: int = 0  # lines written (each a log event)
    log_records: int = 0  # of those, Powertools Logger records (JSON with a "level"; AWS adds xray_trace_id)


@dataclass
class Outcome:
    response: Any = None
    error: HandlerError | None = None
    report: Report = field(default_factory=Report)

    def result(self):
        if self.error is not None:
            raise self.error
        return self.response


# ---------------------------------------------------------------- parent side
class _Worker:
    def __init__(self, spec: FunctionSpec, env: dict[str, str], cwd: Path):
        parent, child = socket.socketpair()
        self.conn = Connection(parent.detach())
        fd = child.fileno()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "postern_local.worker", "--fd", str(fd), "--parent", str(os.getpid()),
             "--code", spec.code_uri, "--handler", spec.handler, "--memory", str(spec.memory)],
            env=env, cwd=str(cwd), pass_fds=(fd,))
        child.close()
        self.ready = False
        self.init_error: str | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = INIT_TIMEOUT) -> None:
        if self.ready:
            return
        try:
            if not self.conn.poll(timeout):
                raise HandlerCrashed("Runtime.InitTimeout", f"worker {self.pid} did not start in {timeout:.0f} s")
            msg = self.conn.recv()
        except (EOFError, OSError) as exc:
            raise HandlerCrashed("Runtime.ExitError", f"worker {self.pid} exited during Init: {exc}") from None
        if msg.get("kind") != "ready":
            self.init_error = msg.get("trace", "")
            raise HandlerCrashed("Runtime.ImportModuleError", msg.get("trace", "worker failed to start"))
        self.ready = True

    def kill(self) -> None:
        try:
            self.proc.kill()
        except OSError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        try:
            self.conn.close()
        except OSError:
            pass

    def close(self) -> None:
        try:
            self.conn.send({"kind": "exit"})
        except (OSError, ValueError):
            pass
        try:
            self.proc.wait(3)
        except subprocess.TimeoutExpired:
            self.kill()
            return
        try:
            self.conn.close()
        except OSError:
            pass


class RemoteHandler:
    def __init__(self, spec: FunctionSpec, env: dict[str, str], cwd: Path, max_workers: int = 4):
        self.spec = spec
        self.env = dict(env)
        self.cwd = cwd
        self.max_workers = max_workers
        self._idle: list[_Worker] = []
        self._busy = 0
        self._cond = threading.Condition()
        self._closed = False
        self.cold_starts = 0
        self.timeouts = 0
        self.__name__ = spec.name

    # --- pool ---------------------------------------------------------------
    def _spawn(self) -> _Worker:
        self.cold_starts += 1
        return _Worker(self.spec, self.env, self.cwd)

    def prewarm(self) -> None:
        """Start one worker now (in the background: its Init overlaps the rest of the start-up)."""
        with self._cond:
            if self._closed or self._idle or self._busy:
                return
            self._idle.append(self._spawn())

    def _checkout(self) -> _Worker:
        with self._cond:
            while True:
                if self._closed:
                    raise HandlerCrashed("Runtime.Closed", f"{self.spec.name}: the local stack is stopping")
                if self._idle:
                    w = self._idle.pop()
                    break
                if self._busy < self.max_workers:
                    w = None
                    break
                self._cond.wait()
            self._busy += 1
        return w or self._spawn()

    def _checkin(self, w: _Worker | None) -> None:
        with self._cond:
            self._busy -= 1
            if w is not None and not self._closed:
                self._idle.append(w)
                w = None
            self._cond.notify()
        if w is not None:
            w.close()

    @property
    def pids(self) -> list[int]:
        with self._cond:
            return [w.pid for w in self._idle]

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._cond.notify_all()
        for w in idle:
            w.close()

    # --- invoking -----------------------------------------------------------
    def __call__(self, event: dict, context=None):
        return self.invoke(event, context).result()

    def invoke(self, event: dict, context=None, telemetry: Telemetry | None = None) -> Outcome:
        from postern import clock

        w = self._checkout()
        try:
            w.wait_ready()
        except HandlerCrashed as exc:
            w.kill()
            self._checkin(None)
            return Outcome(error=exc)
        request_id = getattr(context, "aws_request_id", None) or str(uuid.uuid4())
        fake_now = clock.now() if clock._source is not time.time else None
        msg = {"kind": "invoke", "event": event, "request_id": request_id, "timeout": self.spec.timeout,
               "now": fake_now, "telemetry": telemetry}
        t0 = time.monotonic()
        try:
            w.conn.send(msg)
            if not w.conn.poll(self.spec.timeout):
                self.timeouts += 1
                w.kill()
                self._checkin(None)
                err = HandlerTimeout("Sandbox.Timedout", f"{request_id} Task timed out after "
                                                         f"{time.monotonic() - t0:.2f} seconds")
                log.warning("%s: %s (worker %d killed)", self.spec.name, err, w.pid)
                return Outcome(error=err)
            reply = w.conn.recv()
        except (EOFError, OSError) as exc:
            code = w.proc.poll()
            w.kill()
            self._checkin(None)
            return Outcome(error=HandlerCrashed("Runtime.ExitError", f"{request_id} worker {w.pid} exited "
                                                                      f"(status {code}): {exc}"))
        recycle = reply.get("recycle", False)
        self._checkin(None if recycle else w)
        if recycle:
            w.close()
        report = reply.get("report") or Report()
        report.pid, report.seconds = w.pid, time.monotonic() - t0
        if reply.get("error"):
            type_name, message, trace = reply["error"]
            return Outcome(error=HandlerError(type_name, message, trace), report=report)
        return Outcome(response=reply.get("response"), report=report)


# ---------------------------------------------------------------- child side
class _Telemetry:
    """The worker's request counter and fault injector, created when first asked for."""

    def __init__(self, function: str):
        self.function = function
        self.counter = None
        self.injector = None
        self._faults_text = None

    def begin(self, t: Telemetry | None):
        # Imported by main() during Init: importing boto3 here took 0.2 s of every fresh worker's
        # first invocation (past a 1 s Timeout on a loaded machine: a handler that does nothing
        # timed out again and again), and Lambda bills no runtime set-up to the handler's time.
        from postern.aws import get_clients

        if t is None:
            if self.injector is not None:
                self.injector.enabled = False
            return None
        if t.count and self.counter is None:
            import boto3

            from .requests import RequestCounter

            session = boto3.session.Session(**(t.probe_credentials or {}))
            self.counter = RequestCounter(probe=t.probe, session=session).install(get_clients())
        if t.faults and t.faults != self._faults_text:
            from .faults import FaultInjector, FaultSpec

            spec = FaultSpec.parse(t.faults)
            seed = spec.seed * 1000 + sum(map(ord, self.function))  # one sequence per function
            self.injector = FaultInjector(FaultSpec(rates=spec.rates, timeout=spec.timeout, late=spec.late,
                                                    seed=seed, skip=spec.skip))  # crashes stay the parent's
            self.injector.install(get_clients())
            self._faults_text = t.faults
        if self.injector is not None:
            self.injector.enabled = bool(t.faults) and t.faults_enabled
        if self.counter is not None and t.count:
            return self.counter.scope(t.scope or f"lambda:{self.function}")
        return None

    def end(self, report: Report) -> None:
        if self.counter is not None:
            report.usage = self.counter.snapshot()
            self.counter.reset()
        if self.injector is not None:
            with self.injector._lock:
                report.faults = dict(self.injector.counts)
                report.calls = dict(self.injector.calls)
                self.injector.counts.clear()
                self.injector.calls.clear()


def _status_kb(field_name: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    return 0


def _limit_memory(memory_mb: int) -> None:
    """RLIMIT_AS = what the process maps now + MemorySize - what it holds resident now."""
    size_kb, rss_kb = _status_kb("VmSize"), _status_kb("VmRSS")
    limit = (size_kb + max(memory_mb * 1024 - rss_kb, 32 * 1024)) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _batch_failures(module) -> dict:
    processor = getattr(module, "processor", None)  # the function's Powertools BatchProcessor
    out = {}
    try:
        for record, info in zip(processor.fail_messages, processor.exceptions):
            mid = getattr(record, "message_id", None) or (record.get("messageId") if isinstance(record, dict) else None)
            exc = info[1] if isinstance(info, tuple) and len(info) > 1 else info
            out[mid] = f"{exc.__class__.__name__}: {exc}"
    except Exception:  # noqa: BLE001 - no processor, or a Powertools detail changed: no reasons, no harm
        return {}
    return out


class _CountingStream:
    """stdout/stderr as the handler sees them: passes everything through, counting the bytes and lines
    an invocation writes (Lambda ships each line to CloudWatch Logs as one event)."""

    def __init__(self, inner, passthrough: bool = True):
        self._inner = inner
        self._passthrough = passthrough  # False: counted only (POSTERN_LOCAL_HANDLER_OUTPUT=count, make cost)
        self.bytes = 0
        self.lines = 0
        self.records = 0

    def write(self, s):
        if isinstance(s, str):
            self.bytes += len(s.encode("utf-8", "replace"))
            self.lines += s.count("\n")
            self.records += s.startswith('{"level":')
        return self._inner.write(s) if self._passthrough else len(s)

    def take(self) -> tuple[int, int, int]:
        out = (self.bytes, self.lines, self.records)
        self.bytes = self.lines = self.records = 0
        return out

    def __getattr__(self, name):
        return getattr(self._inner, name)


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(1)  # the local stack is gone: so is this execution environment


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="postern-local Lambda worker (started by postern_local.worker)")
    ap.add_argument("--fd", type=int, required=True)
    ap.add_argument("--parent", type=int, required=True)
    ap.add_argument("--code", required=True)
    ap.add_argument("--handler", required=True)
    ap.add_argument("--memory", type=int, default=128)
    args = ap.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in make run: the parent stops us
    conn = Connection(args.fd)
    threading.Thread(target=_watch_parent, args=(args.parent,), daemon=True).start()
    function = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "function")
    # Before the handler's import: Powertools' Logger keeps the stream it finds then.
    passthrough = os.environ.get("POSTERN_LOCAL_HANDLER_OUTPUT", "") != "count"
    streams = (_CountingStream(sys.stdout, passthrough), _CountingStream(sys.stderr, passthrough))
    sys.stdout, sys.stderr = streams
    # Init: import the handler as Lambda's runtime does (LAMBDA_TASK_ROOT first on sys.path).
    try:
        task_root = str(Path(args.code).resolve())
        sys.path.insert(0, task_root)
        module_name, _, fn_name = args.handler.rpartition(".")
        module = importlib.import_module(module_name)
        handler = getattr(module, fn_name)
        from postern import clock
        from postern.aws import get_clients  # noqa: F401 - the telemetry's, imported in Init (below)

        from .lambdas import FakeContext
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises it
        conn.send({"kind": "init_error", "trace": traceback.format_exc()})
        return 1
    _limit_memory(args.memory)
    conn.send({"kind": "ready", "pid": os.getpid()})
    telemetry = _Telemetry(function)
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return 0
        if msg.get("kind") != "invoke":
            return 0
        clock.set_clock((lambda t=msg["now"]: t) if msg.get("now") is not None else None)
        ctx = FakeContext(function_name=function, memory_limit_in_mb=args.memory, timeout=msg["timeout"],
                          aws_request_id=msg["request_id"], region=os.environ.get("AWS_REGION", "us-east-1"))
        report = Report()
        reply: dict = {"kind": "result", "report": report}
        for st in streams:
            st.take()  # what Init or the last reply printed is not this invocation's
        scope = telemetry.begin(msg.get("telemetry"))
        try:
            if scope is not None:
                with scope:
                    reply["response"] = handler(msg["event"], ctx)
            else:
                reply["response"] = handler(msg["event"], ctx)
        except MemoryError:
            reply["error"] = ("MemoryError", "Runtime exited: out of memory (MemorySize)", "")
            reply["recycle"] = True
        except BaseException as exc:  # noqa: BLE001 - the parent decides what a failed invocation means
            reply["error"] = (exc.__class__.__name__, str(exc), traceback.format_exc())
        report.failures = _batch_failures(module)
        telemetry.end(report)
        for st in streams:
            b, n, r = st.take()
            report.log_bytes += b
            report.log_events += n
            report.log_records += r
        try:
            conn.send(reply)
        except (OSError, ValueError, MemoryError):
            return 1
        if reply.get("recycle"):
            return 0


if __name__ == "__main__":
    # Run as the module's own name, so what it pickles (Report, Usage) unpickles in the parent.
    from postern_local.worker import main as _main

    sys.exit(_main())
