"""The gateway as a separate process against a running LocalStack (for kill -9 and RSS).

In:   a started :class:`~postern_local.stack.LocalStack` (its moto endpoint,
      resources and settings) and the listeners wanted.
Out:  :class:`GatewayProcess`: ``start()`` runs ``python -m postern_gateway``
      with the stack's environment, every listener on a fixed loopback port
      picked at construction (so a restarted gateway listens where the old
      one did) and waits until they accept; ``kill()`` sends SIGKILL (no
      clean-up of any kind runs: the crash we want); ``stop()`` SIGTERM;
      ``pid``, ``ports``, ``rss_kb()``. Several processes over one stack are
      several gateway tasks behind the NLB (``spawn()`` each, then ``wait_ready()``):
      they share the backend, the state table (abuse limits, POP3 maildrop locks)
      and nothing else. ``preexec_fn`` runs in the child before exec
      (postern_local.liveness sets RLIMIT_AS there).
Fails: ``start()`` raises RuntimeError with the process's stderr tail if the
      listeners do not come up within the timeout.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

from .procs import stop_process

PORT_VARS = {
    "smtp": "POSTERN_SMTP_PORT",
    "submission": "POSTERN_SUBMISSION_PORT",
    "imap": "POSTERN_IMAP_PORT",
    "pop3": "POSTERN_POP3_PORT",
    "managesieve": "POSTERN_MANAGESIEVE_PORT",
}
OFF = {  # TLS listeners and /healthz: bound on a free port we never use (0 = any), never the fixed 8081
    "POSTERN_SUBMISSIONS_PORT": "0",
    "POSTERN_IMAPS_PORT": "0",
    "POSTERN_POP3S_PORT": "0",
    "POSTERN_HEALTH_PORT": "0",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GatewayProcess:
    def __init__(self, stack, extra_env: dict[str, str] | None = None, preexec_fn=None):
        self.stack = stack
        self.preexec_fn = preexec_fn
        self.ports = {name: free_port() for name in PORT_VARS}
        env = dict(os.environ)
        env.update(stack.env)
        env.update(stack.identities.for_component("gateway").env())  # the task role's credentials, not the admin's
        env.update(OFF)
        env.update({var: str(self.ports[name]) for name, var in PORT_VARS.items()})
        env.update({"POSTERN_BIND": "127.0.0.1", "POSTERN_ALLOW_PLAINTEXT_AUTH": "true",
                    "POSTERN_LOGIN_FAIL_DELAY": "0", "POSTERN_LOG_LEVEL": "WARNING"})
        env.update(extra_env or {})
        self.env = env
        self.proc: subprocess.Popen | None = None
        self._stderr = None

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    def start(self, timeout: float = 60.0) -> GatewayProcess:
        return self.spawn().wait_ready(timeout)

    def spawn(self) -> GatewayProcess:
        """Start the process without waiting (start several, then ``wait_ready`` each)."""
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([sys.executable, "-m", "postern_gateway"], env=self.env,
                                     stdout=subprocess.DEVNULL, stderr=self._stderr, preexec_fn=self.preexec_fn)
        return self

    def wait_ready(self, timeout: float = 60.0) -> GatewayProcess:
        deadline = time.monotonic() + timeout
        pending = set(self.ports)
        while pending and time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            for name in list(pending):
                try:
                    with socket.create_connection(("127.0.0.1", self.ports[name]), timeout=1) as s:
                        s.settimeout(5)
                        if s.recv(64):  # the banner / greeting: the listener serves
                            pending.discard(name)
                except OSError:
                    pass
            if pending:
                time.sleep(0.1)
        if pending:
            tail = self.stderr_tail()
            self.kill()
            raise RuntimeError(f"gateway listeners {sorted(pending)} did not come up: {tail}")
        return self

    def stderr_tail(self, n: int = 2000) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-n:]

    def kill(self) -> None:
        """SIGKILL: the process dies mid-whatever, nothing flushes or cleans up."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        stop_process(self.proc, 15, kill_wait=10)

    def rss_kb(self) -> int:
        try:
            with open(f"/proc/{self.pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            return 0
        return 0

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
