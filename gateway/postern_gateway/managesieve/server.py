"""The ManageSieve listener (RFC 5804; port 4190, ``POSTERN_MANAGESIEVE_PORT``).

In:   a Backend, host/port, optional TLS context (STARTTLS offered when given; RFC 5804 has
      no implicit-TLS port).
Out:  :func:`start_managesieve` -> a started ``asyncio.Server``; each connection runs one
      :class:`~.session.Session` over the script repository on the directory table
      (:func:`postern.sieve.repository` limits from settings: one rule with the CLI and JMAP).
Fails: more than ``settings.max_sessions`` connections on the listener, or more than the
      per-address cap (postern.limits), get ``BYE (TRYLATER)`` and are closed; a session's
      unexpected exception is logged and ends only that connection (the shared stream listener,
      postern_gateway.listener).
"""

from __future__ import annotations

import logging

from postern.sieve.repository import ScriptRepository

from ..listener import start_stream_listener
from . import wire
from .session import Session

log = logging.getLogger("postern.managesieve")


def script_repository(backend) -> ScriptRepository:
    """The users' scripts, on the directory table the backend's directory uses."""
    s = backend.settings
    return ScriptRepository(backend.directory.items, max_size=s.sieve_max_script_size,
                            max_scripts=s.sieve_max_scripts)


async def start_managesieve(backend, host: str, port: int, *, ssl_context=None, implicit_tls: bool = False):
    scripts = script_repository(backend)
    server = await start_stream_listener(
        backend, "managesieve", host, port, ssl_context=ssl_context, implicit_tls=implicit_tls,
        make_session=lambda reader, writer: Session(backend, scripts, reader, writer, ssl_context=ssl_context,
                                                    tls=implicit_tls),
        busy=wire.bye("Too many connections, try again later", "TRYLATER"),
        busy_address=wire.bye("Too many connections from your address, try again later", "TRYLATER"),
        log=log, run=Session.run_session)
    server.managesieve_sessions = server.stream_sessions
    return server
