"""rspamd and Redis for the local stack and the tests, from Debian's packages, on free loopback ports.

In:   the ``rspamd`` and ``redis-server`` programs (Debian: ``apt-get install rspamd redis-server``),
      the repository's rspamd configuration (``rspamd/local.d``, ``rspamd/configure.sh``: the same
      files the sidecar image uses).
Out:  :class:`LocalRspamd`: ``start()`` runs Redis (no persistence) and rspamd in the foreground on
      free 127.0.0.1 ports, with rspamd's DNS pointed at a stub that answers NXDOMAIN at once
      (:class:`~postern_local.fakedns.FakeDNS`: there is no internet here) and the checks that
      only mean something with real DNS (hostname/HELO resolution, ``hfilter``) off, so a given
      message scores the same on every run; with ``clamd`` (host:port) rspamd's antivirus module
      asks that clamd about every attachment (a virus: rspamd's ``reject``, refused in the
      session); ``url``/``controller_url`` for the gateway's settings
      (``POSTERN_RSPAMD_URL``, ``POSTERN_RSPAMD_CONTROLLER_URL``); ``stop()``; :func:`available`.
      The hyperscan cache lives in ``~/.cache/postern/rspamd`` (the first start compiles it:
      14 s measured here; later ones take under 2 s).
Fails: :class:`RspamdError` when a program is missing or does not come up in time (its output
      tail in the message).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from .fakedns import FakeDNS
from .procs import stop_process

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "rspamd"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "postern" / "rspamd"
START_TIMEOUT = 240.0  # a first start compiles the hyperscan cache (14 s measured; wide margin for loaded cores)


class RspamdError(RuntimeError):
    pass


def available() -> bool:
    return bool(shutil.which("rspamd") and shutil.which("redis-server"))


def version() -> str:
    out = subprocess.run(["rspamd", "--version"], capture_output=True, text=True, timeout=30).stdout
    return out.strip().rsplit(" ", 1)[-1] if out else "?"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalRspamd:
    def __init__(self, *, redis: bool = True, clamd: str = ""):
        self.with_redis = redis
        self.clamd = clamd  # host:port of a clamd: rspamd's antivirus module on (POSTERN_LOCAL_CLAMD)
        self.dir: Path | None = None
        self.dns: FakeDNS | None = None
        self.redis: subprocess.Popen | None = None
        self.proc: subprocess.Popen | None = None
        self.port = self.controller_port = self.redis_port = 0
        self._log = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def controller_url(self) -> str:
        return f"http://127.0.0.1:{self.controller_port}"

    def start(self) -> LocalRspamd:
        if not available():
            raise RspamdError("rspamd or redis-server not installed (apt-get install rspamd redis-server)")
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="postern-rspamd-"))
        conf, db, run = self.dir / "conf", self.dir / "db", self.dir / "run"
        for d in (conf, db, run, CACHE):
            d.mkdir(parents=True, exist_ok=True)
        shutil.copytree(CONFIG / "local.d", conf / "local.d")
        self.dns = FakeDNS()  # no records: every name is NXDOMAIN, answered at once
        dns_port = self.dns.start()
        self.port, self.controller_port = _free_port(), _free_port()
        env = {**os.environ, "RSPAMD_NORMAL": f"127.0.0.1:{self.port}",
               "RSPAMD_CONTROLLER": f"127.0.0.1:{self.controller_port}", "RSPAMD_DNS": f"127.0.0.1:{dns_port}",
               "RSPAMD_REDIS": "", "RSPAMD_CLAMD": self.clamd}
        if self.with_redis:
            self.redis_port = _free_port()
            self.redis = subprocess.Popen(
                ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--daemonize", "no", "--dir", str(db), "--loglevel", "warning"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            env["RSPAMD_REDIS"] = f"127.0.0.1:{self.redis_port}"
        subprocess.run(["sh", str(CONFIG / "configure.sh"), str(conf)], env=env, check=True, timeout=30)
        # Local only: checks that resolve the client's names mean nothing without DNS (they would add
        # several points to every message); the hyperscan cache survives between runs.
        (conf / "local.d" / "hfilter.conf").write_text("enabled = false;\n")
        with open(conf / "override.d" / "options.inc", "a") as f:
            f.write(f'hs_cache_dir = "{CACHE}/";\n')
        args = ["rspamd", "-f", "-c", "/etc/rspamd/rspamd.conf", f"--var=LOCAL_CONFDIR={conf}", f"--var=DBDIR={db}",
                f"--var=RUNDIR={run}", f"--var=LOGDIR={run}"]
        if os.geteuid() == 0:
            args += ["-i", "-u", "root", "-g", "root"]
        self._log = open(self.dir / "rspamd.log", "wb")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        self._wait()

    def _wait(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RspamdError(f"rspamd exited ({self.proc.returncode}): {self.log_tail()}")
            try:
                for url in (self.url, self.controller_url):
                    urllib.request.urlopen(f"{url}/ping", timeout=2).read()  # noqa: S310 - loopback
                return
            except OSError:
                time.sleep(0.25)
        raise RspamdError(f"rspamd did not answer within {START_TIMEOUT:.0f} s: {self.log_tail()}")

    def log_tail(self, n: int = 2000) -> str:
        try:
            return (self.dir / "rspamd.log").read_bytes()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop_rspamd(self) -> None:
        """Stop rspamd only (tests: the filter is down, mail still flows)."""
        stop_process(self.proc, 15)

    def stop(self) -> None:
        self.stop_rspamd()
        self.proc = None
        stop_process(self.redis, 10)
        self.redis = None
        if self.dns is not None:
            self.dns.stop()
            self.dns = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> LocalRspamd:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
