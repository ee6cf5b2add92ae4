"""The IMAP listener.

In:   a Backend, host/port, optional TLS context.
Out:  :func:`start_imap` -> a started ``asyncio.Server``; each connection runs
      one :class:`~.session.Session`. ``ssl_context`` with ``implicit_tls=False``
      offers STARTTLS; ``implicit_tls=True`` is TLS from the first byte (993).
Fails: session errors never escape (see session.py); closing the server and
      cancelling its tasks stops the sessions.
"""

from __future__ import annotations

import asyncio
import logging

from ..trust.gate import connection_ticket
from .session import Session

log = logging.getLogger("postern.imap")

STREAM_LIMIT = 64 * 1024


async def start_imap(backend, host: str, port: int, *, ssl_context=None, implicit_tls: bool = False):
    sessions: set[asyncio.Task] = set()
    limit = max(1, int(backend.settings.max_sessions))

    async def handle(reader, writer):
        task = asyncio.current_task()
        if len(sessions) >= limit:
            writer.write(b"* BYE Too many connections, try again later\r\n")
            try:
                await writer.drain()
            finally:
                writer.close()
            return
        peer = writer.get_extra_info("peername")
        ticket = connection_ticket(backend, peer[0] if peer else "", "imap")  # trust: per-IP cap (postern.limits)
        if ticket is None:
            writer.write(b"* BYE [UNAVAILABLE] Too many connections from your address, try again later\r\n")
            try:
                await writer.drain()
            finally:
                writer.close()
            return
        sessions.add(task)
        session = Session(backend, reader, writer, ssl_context=ssl_context, tls=implicit_tls)
        seats = getattr(backend, "sessions", None)  # counted; * BYE when the gateway stops
        session.seat = seats.join("imap") if seats is not None else None
        try:
            await session.run()
        except asyncio.CancelledError:
            pass  # listener shutting down
        except Exception:  # noqa: BLE001
            log.exception("imap session crashed")
        finally:
            if session.seat is not None:
                session.seat.release()
            sessions.discard(task)
            ticket.release()

    # limit: the StreamReader pauses the socket past twice this much unread input, so a client
    # cannot park more than 128 KiB in our memory while its session is busy (pre-login included).
    server = await asyncio.start_server(handle, host, port, ssl=ssl_context if implicit_tls else None,
                                        limit=STREAM_LIMIT)
    server.imap_sessions = sessions
    return server
