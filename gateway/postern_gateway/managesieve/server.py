"""The ManageSieve listener (RFC 5804; port 4190, ``POSTERN_MANAGESIEVE_PORT``).

In:   a Backend, host/port, optional TLS context (STARTTLS offered when given; RFC 5804 has
      no implicit-TLS port).
Out:  :func:`start_managesieve` -> a started ``asyncio.Server``; each connection runs one
      :class:`~.session.Session` over the script repository on the directory table
      (:func:`postern.sieve.repository` limits from settings: one rule with the CLI and JMAP).
Fails: more than ``settings.max_sessions`` connections on the listener, or more than the
      per-address cap (postern.limits), get ``BYE (TRYLATER)`` and are closed; a session's
      unexpected exception is logged and ends only that connection.
"""

from __future__ import annotations

import asyncio
import logging

from postern.sieve.repository import ScriptRepository

from ..trust.gate import connection_ticket
from . import wire
from .session import Session

log = logging.getLogger("postern.managesieve")

STREAM_LIMIT = 64 * 1024  # the StreamReader pauses the socket past twice this much unread input


def script_repository(backend) -> ScriptRepository:
    """The users' scripts, on the directory table the backend's directory uses."""
    s = backend.settings
    return ScriptRepository(backend.directory.items, max_size=s.sieve_max_script_size,
                            max_scripts=s.sieve_max_scripts)


async def _refuse(writer, text: str) -> None:
    writer.write(wire.bye(text, "TRYLATER"))
    try:
        await writer.drain()
    finally:
        writer.close()


async def start_managesieve(backend, host: str, port: int, *, ssl_context=None, implicit_tls: bool = False):
    sessions: set[asyncio.Task] = set()
    limit = max(1, int(backend.settings.max_sessions))
    scripts = script_repository(backend)

    async def handle(reader, writer):
        task = asyncio.current_task()
        if len(sessions) >= limit:
            await _refuse(writer, "Too many connections, try again later")
            return
        peer = writer.get_extra_info("peername")
        ticket = connection_ticket(backend, peer[0] if peer else "", "managesieve")  # per-IP cap
        if ticket is None:
            await _refuse(writer, "Too many connections from your address, try again later")
            return
        sessions.add(task)
        session = Session(backend, scripts, reader, writer, ssl_context=ssl_context, tls=implicit_tls)
        seats = getattr(backend, "sessions", None)  # counted; BYE when the gateway stops
        session.seat = seats.join("managesieve") if seats is not None else None
        try:
            await session.run_session()
        except asyncio.CancelledError:
            pass  # listener shutting down
        except Exception:  # noqa: BLE001
            log.exception("managesieve session crashed")
        finally:
            if session.seat is not None:
                session.seat.release()
            sessions.discard(task)
            ticket.release()

    server = await asyncio.start_server(handle, host, port, ssl=ssl_context if implicit_tls else None,
                                        limit=STREAM_LIMIT)
    server.managesieve_sessions = sessions
    return server
