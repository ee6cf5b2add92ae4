"""The live sessions of one gateway process: counted, and asked to leave when it stops.

In:   every protocol session joins (:meth:`Sessions.join`) when its connection is accepted and
      releases its :class:`Seat` when the connection ends. While waiting for client input a
      session reads through :meth:`Seat.read`; a session that cannot (aiosmtpd reads for us)
      gives ``on_leave``, called when the gateway starts draining.
Out:  :meth:`Sessions.count` (open sessions by protocol: the health check's body and the
      OpenSessions metric that scales the services); :meth:`Sessions.drain`: from then on every
      seat is leaving. A session idle in :meth:`Seat.read` gets :class:`Leaving` at once and
      says its protocol's goodbye (SMTP ``421 4.3.2``, IMAP ``* BYE [UNAVAILABLE]``, POP3
      ``-ERR [SYS/TEMP]``; RFC 5321 §3.8 asks for the 421 when a server shuts down); one busy
      with a command (a DATA being spooled, an APPEND being stored) finishes it, answers, and
      leaves at its next read. A connection that joins while draining is leaving from the start.
      :meth:`Sessions.wait_empty` waits, bounded, for the last one to go.
Fails: never; an ``on_leave`` that raises is logged and the session is left to the final cancel.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("postern.gateway")


class Leaving(Exception):
    """The gateway is stopping: say goodbye and close."""


class Seat:
    """One session's place in :class:`Sessions`."""

    def __init__(self, sessions: Sessions, protocol: str, on_leave: Callable[[], None] | None):
        self.sessions = sessions
        self.protocol = protocol
        self._on_leave = on_leave
        self._leaving = asyncio.Event()

    @property
    def leaving(self) -> bool:
        return self._leaving.is_set()

    def leave(self) -> None:
        if self._leaving.is_set():
            return
        self._leaving.set()
        if self._on_leave is not None:
            try:
                self._on_leave()
            except Exception:  # noqa: BLE001 - the final cancel still ends the session
                log.exception("%s session failed to say goodbye", self.protocol)

    async def read(self, awaitable: Awaitable, timeout: float | None = None):
        """``awaitable``'s result (client input), or :class:`Leaving` if the gateway starts
        draining first; ``TimeoutError`` after ``timeout`` seconds. Input already arrived wins."""
        if self._leaving.is_set():
            if asyncio.iscoroutine(awaitable):
                awaitable.close()
            raise Leaving
        read = asyncio.ensure_future(awaitable)
        stop = asyncio.ensure_future(self._leaving.wait())
        try:
            done, _ = await asyncio.wait({read, stop}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not read.done():
                read.cancel()
        if read in done:
            return read.result()
        if stop in done:
            raise Leaving
        raise TimeoutError

    def release(self) -> None:
        self.sessions._release(self)


class Sessions:
    def __init__(self) -> None:
        self._seats: set[Seat] = set()
        self.draining = False
        self._empty: asyncio.Event | None = None

    def join(self, protocol: str, on_leave: Callable[[], None] | None = None) -> Seat:
        seat = Seat(self, protocol, on_leave)
        self._seats.add(seat)
        if self.draining:
            asyncio.get_running_loop().call_soon(seat.leave)
        return seat

    def _release(self, seat: Seat) -> None:
        self._seats.discard(seat)
        if not self._seats and self._empty is not None:
            self._empty.set()

    def count(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for seat in self._seats:
            out[seat.protocol] = out.get(seat.protocol, 0) + 1
        return out

    def total(self) -> int:
        return len(self._seats)

    def drain(self) -> None:
        """Ask every session to leave (see the module docstring)."""
        self.draining = True
        for seat in list(self._seats):
            seat.leave()

    async def wait_empty(self, timeout: float) -> bool:
        """True when every session has gone within ``timeout`` seconds."""
        if not self._seats:
            return True
        self._empty = asyncio.Event()
        try:
            await asyncio.wait_for(self._empty.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False
