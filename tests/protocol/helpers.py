"""Run a gateway listener on 127.0.0.1 port 0 for tests that use blocking stdlib clients.

In:   a listener factory with the agreed signature ``start(backend, host, port, **kw)``
      (``start_smtp``, ``start_pop3``, ``start_imap``) and a Backend.
Out:  :class:`ServerThread`: an event loop on a background thread running the
      listener; ``.port`` is the bound port, ``.call(coro_fn, *args)`` runs a
      coroutine on that loop from the test thread. Use as a context manager;
      leaving it closes the listener, its sessions and the loop.
      :func:`memory_backend` builds a Backend over the in-memory store and
      directory with test-friendly settings (no login delay, plaintext auth allowed
      unless overridden). :func:`wait_for` waits on a condition the server
      thread makes true (never a fixed sleep as synchronisation).

aiosmtpd's Controller cannot bind port 0 and every listener here is an
``asyncio.Server``, so one small generic helper serves SMTP, POP3 and IMAP.
"""

from __future__ import annotations

import asyncio
import threading
import time

from postern.config import Settings
from postern.directory import memory_directory
from postern.store.memory import MemoryMailStore
from postern_gateway.backend import Backend
from postern_gateway.blocking import Blocking

HOST = "127.0.0.1"


def wait_for(cond, timeout: float = 5.0, what: str = "condition") -> None:
    """Poll a condition the server thread makes true (a liveness ceiling, not a timing assertion)."""
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(0.01)


def memory_backend(*, spooler=None, store=None, directory=None, **settings_overrides) -> Backend:
    """A Backend over MemoryMailStore + memory_directory(); settings overrides as keywords."""
    base = {"login_fail_delay": 0.0, "allow_plaintext_auth": True, "hostname": "mx.example.test"}
    base.update(settings_overrides)
    settings = Settings().replace(**base)
    return Backend(
        settings=settings,
        store=store if store is not None else MemoryMailStore(),
        directory=directory if directory is not None else memory_directory(),
        blocking=Blocking(4),
        spooler=spooler,
    )


class ServerThread:
    """``with ServerThread(start_smtp, backend, role="mx") as srv: smtplib.SMTP(HOST, srv.port)``"""

    def __init__(self, start, backend, **kwargs):
        self._start = start
        self.backend = backend
        self._kwargs = kwargs
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="test-server", daemon=True)
        self.server = None
        self.port = 0

    def __enter__(self) -> ServerThread:
        self._thread.start()
        self.server = self.call(self._start, self.backend, HOST, 0, **self._kwargs)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def call(self, coro_fn, *args, timeout: float = 30, **kwargs):
        """Run ``coro_fn(*args, **kwargs)`` on the server loop and return its result."""
        fut = asyncio.run_coroutine_threadsafe(coro_fn(*args, **kwargs), self.loop)
        return fut.result(timeout)

    def __exit__(self, *exc) -> None:
        async def _stop():
            self.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            self.call(_stop, timeout=10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()
            self.backend.blocking.shutdown()
