"""One stream listener for the line protocols served over asyncio streams (IMAP, ManageSieve).

In:   :func:`start_stream_listener` with the backend, the protocol's name (the per-IP cap's and the
      session counter's key), host/port, TLS settings, a ``make_session(reader, writer)`` factory whose
      session has an async ``run()`` and a ``seat`` attribute, the two refusal lines in the protocol's
      own wire form, and the protocol's logger; ``run`` (default ``session.run()``) serves one session.
Out:  a started ``asyncio.Server`` whose ``stream_sessions`` is the set of live session tasks. Each
      connection takes a place under the listener's ``settings.max_sessions`` cap and a per-address
      ticket (postern.limits via trust.gate), joins the gateway's session counter (``backend.sessions``:
      it says goodbye when the gateway drains), runs its session, and gives all three back when it ends.
      :func:`start_tls` upgrades one of its connections in place for STARTTLS.
Fails: a connection over either cap gets its refusal line and is closed; a session's unexpected
      exception is logged and ends only that connection; cancellation (the listener shutting down)
      ends the session quietly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from .trust.gate import connection_ticket

# The StreamReader pauses the socket past twice this much unread input, so a client cannot park more
# than 128 KiB in our memory while its session is busy (pre-login included).
STREAM_LIMIT = 64 * 1024


async def _refuse(writer, line: bytes) -> None:
    writer.write(line)
    try:
        await writer.drain()
    finally:
        writer.close()


async def start_tls(reader, writer, ssl_context) -> None:
    """Upgrade a stream connection to TLS in place (IMAP RFC 3501 §6.2.1, ManageSieve RFC 5804 §2.2).

    The caller has dropped what its own parser buffered. Bytes that reached the StreamReader while we
    answered (after our read, before the TLS layer takes the socket) are plaintext too: drop them with
    no await in between, or they would be read as if they had come over TLS (CVE-2011-0411 class).
    asyncio has no public API for this; aiosmtpd clears the same private buffer for the same reason
    (smtp.py connection_made)."""
    buffered = getattr(reader, "_buffer", None)
    if buffered:
        buffered.clear()
    await writer.start_tls(ssl_context)


async def start_stream_listener(backend, protocol: str, host: str, port: int, *, ssl_context, implicit_tls: bool,
                                make_session: Callable, busy: bytes, busy_address: bytes,
                                log: logging.Logger, run: Callable | None = None) -> asyncio.Server:
    sessions: set[asyncio.Task] = set()
    limit = max(1, int(backend.settings.max_sessions))

    async def handle(reader, writer):
        task = asyncio.current_task()
        if len(sessions) >= limit:
            await _refuse(writer, busy)
            return
        peer = writer.get_extra_info("peername")
        ticket = connection_ticket(backend, peer[0] if peer else "", protocol)  # per-IP cap (postern.limits)
        if ticket is None:
            await _refuse(writer, busy_address)
            return
        sessions.add(task)
        session = make_session(reader, writer)
        seats = getattr(backend, "sessions", None)  # counted; goodbye when the gateway stops
        session.seat = seats.join(protocol) if seats is not None else None
        try:
            await (session.run() if run is None else run(session))
        except asyncio.CancelledError:
            pass  # listener shutting down
        except Exception:  # noqa: BLE001
            log.exception("%s session crashed", protocol)
        finally:
            if session.seat is not None:
                session.seat.release()
            sessions.discard(task)
            ticket.release()

    server = await asyncio.start_server(handle, host, port, ssl=ssl_context if implicit_tls else None,
                                        limit=STREAM_LIMIT)
    server.stream_sessions = sessions
    return server
