"""The IMAP listener.

In:   a Backend, host/port, optional TLS context.
Out:  :func:`start_imap` -> a started ``asyncio.Server``; each connection runs
      one :class:`~.session.Session`. ``ssl_context`` with ``implicit_tls=False``
      offers STARTTLS; ``implicit_tls=True`` is TLS from the first byte (993).
Fails: session errors never escape (see session.py); closing the server and
      cancelling its tasks stops the sessions. The caps, the session counter and the crash
      log are the shared stream listener's (postern_gateway.listener).
"""

from __future__ import annotations

import logging

from ..listener import start_stream_listener
from .session import Session

log = logging.getLogger("postern.imap")


async def start_imap(backend, host: str, port: int, *, ssl_context=None, implicit_tls: bool = False):
    server = await start_stream_listener(
        backend, "imap", host, port, ssl_context=ssl_context, implicit_tls=implicit_tls,
        make_session=lambda reader, writer: Session(backend, reader, writer, ssl_context=ssl_context,
                                                    tls=implicit_tls),
        busy=b"* BYE Too many connections, try again later\r\n",
        busy_address=b"* BYE [UNAVAILABLE] Too many connections from your address, try again later\r\n",
        log=log)
    server.imap_sessions = server.stream_sessions
    return server
