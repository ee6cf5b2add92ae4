"""POP3 listener: sockets, TLS and timeouts around :class:`~.session.Pop3Session`.

In:   ``start_pop3(backend, host, port, *, ssl_context=None, implicit_tls=False)``.
      With ``ssl_context`` and ``implicit_tls=False`` STLS is offered
      (RFC 2595, port 110); with ``implicit_tls=True`` TLS starts with the
      first byte (port 995, RFC 8314).
Out:  a started :class:`asyncio.Server`. Closing it (``close()``, also via
      ``serve_forever`` being cancelled) cancels its sessions, which close
      their connections without committing any DELE.
Fails: more than ``settings.max_sessions`` concurrent connections on one
      listener, or more than ``settings.max_conn_per_ip`` from one address
      when ``backend.limits`` is set, get ``-ERR [SYS/TEMP]`` and are closed; a line over the bound
      gets ``-ERR`` and the connection is dropped, as does a connection that sends more than
      ``settings.preauth_max_bytes`` before logging in (postern_gateway.preauth); ``settings.pop3_timeout``
      seconds without a command (or without the client reading our output)
      ends the session (RFC 1939 §3: an autologout timer of at least 10
      minutes). An unexpected exception is logged and answered with
      ``-ERR``, and only that connection closes.

The connection is an :class:`asyncio.Protocol` of our own rather than
streams so STLS can discard, in one place and without private attributes,
every byte the client sent before the handshake (RFC 2595 §4, the
STARTTLS command-injection class of bugs, CVE-2011-0411).
"""

from __future__ import annotations

import asyncio
import logging
import ssl

from ..preauth import EXCEEDED, PreauthBudget
from ..sessions import Leaving
from ..trust.gate import connection_ticket
from .protocol import CODE_SYS_TEMP, LineBuffer, LineTooLong, err
from .lock import MaildropLocks, SharedMaildropLocks, maildrop_locks
from .session import AUTHORIZATION, UPDATE, Action, Pop3Session

log = logging.getLogger("postern.pop3")

HIGH_WATER = 64 * 1024  # pause reading when this much unprocessed input is buffered
TLS_HANDSHAKE_TIMEOUT = 30.0


class _Listener:
    def __init__(self, backend, ssl_context, implicit_tls: bool, locks: MaildropLocks | SharedMaildropLocks):
        self.backend = backend
        self.ssl_context = ssl_context
        self.implicit_tls = implicit_tls
        self.locks = locks
        self.connections: set[_Connection] = set()
        self.tasks: set[asyncio.Task] = set()

    def cancel_all(self) -> None:
        for t in list(self.tasks):
            t.cancel()


class _Connection(asyncio.Protocol):
    def __init__(self, listener: _Listener):
        self.listener = listener
        self.settings = listener.backend.settings
        self.buffer = LineBuffer()
        self.transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._data = asyncio.Event()
        self._eof = False
        self._closed = False
        self._read_paused = False
        self._write_paused = False
        self._drain: list[asyncio.Future] = []
        self._serving: asyncio.Task | None = None  # the session loop (_serve)
        self._session = None  # its Pop3Session
        self._in_command = False  # a command is being answered (handle_line)
        self._ticket = None  # per-IP connection slot (postern.limits), released at disconnect
        self._seat = None  # postern_gateway.sessions.Seat, released at disconnect
        self.preauth = PreauthBudget(self.settings.preauth_max_bytes)  # bytes before login (preauth.py)

    # --- asyncio.Protocol callbacks ---------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        lst = self.listener
        if len(lst.connections) >= self.settings.max_sessions:
            log.warning("pop3 session cap reached (%d), refusing %s", self.settings.max_sessions, self._peer())
            transport.write(err("Too many connections, try again later", CODE_SYS_TEMP))
            transport.close()
            self._closed = True
            return
        self._ticket = connection_ticket(lst.backend, self._peer(), "pop3")  # per-IP cap (postern.limits)
        if self._ticket is None:
            transport.write(err("Too many connections from your address, try again later", CODE_SYS_TEMP))
            transport.close()
            self._closed = True
            return
        lst.connections.add(self)
        seats = getattr(lst.backend, "sessions", None)  # counted; -ERR [SYS/TEMP] when the gateway stops
        self._seat = seats.join("pop3") if seats is not None else None
        task = self._serving = self._loop.create_task(self._serve())
        lst.tasks.add(task)
        task.add_done_callback(lst.tasks.discard)

    def data_received(self, data: bytes) -> None:
        if not self.preauth.spend(len(data)):
            self.buffer.clear()
            self._last_words(err(EXCEEDED))
            self.transport.close()
            return
        self.buffer.feed(data)
        if len(self.buffer) > HIGH_WATER and not self._read_paused:
            self._read_paused = True
            self.transport.pause_reading()
        self._data.set()

    def eof_received(self):
        self._eof = True
        self._data.set()
        return False  # close the transport

    def connection_lost(self, exc) -> None:
        self._eof = True
        self._closed = True
        self._data.set()
        self._wake_writers()
        if self._in_command and self._serving is not None and getattr(self._session, "state", None) != UPDATE:
            # Nobody is left to read the answer: stop waiting for the backend now. The session's close
            # releases the maildrop lock at once (a client that timed out and reconnects finds it free,
            # not -ERR [IN-USE] until the abandoned command ends), and its calls not yet started are
            # dropped instead of taking the backend from the sessions still there (`make load`). A QUIT
            # under way (UPDATE, RFC 1939 §6) finishes: its deletions are committed or not at all.
            self._serving.cancel()
        self.listener.connections.discard(self)
        if self._seat is not None:
            self._seat.release()
            self._seat = None
        if self._ticket is not None:
            self._ticket.release()
            self._ticket = None

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_writers()

    def _wake_writers(self) -> None:
        for fut in self._drain:
            if not fut.done():
                fut.set_result(None)
        self._drain.clear()

    # --- what the session loop uses ------------------------------------------
    def _peer(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        return str(peer[0]) if peer else ""

    async def readline(self, limit: int) -> bytes | None:
        """The next line, or None at end of input. LineTooLong past ``limit``."""
        while True:
            line = self.buffer.next_line(limit)
            if line is not None:
                if self._read_paused and len(self.buffer) < HIGH_WATER // 2:
                    self._read_paused = False
                    self.transport.resume_reading()
                return line
            if self._eof:
                return None
            if self._read_paused:
                self._read_paused = False
                self.transport.resume_reading()
            self._data.clear()
            if self._seat is None:
                await self._data.wait()
            else:
                await self._seat.read(self._data.wait())  # Leaving when the gateway stops

    async def write(self, data: bytes) -> None:
        if self._closed:
            raise ConnectionResetError("connection closed")
        self.transport.write(data)
        if self._write_paused:
            fut = self._loop.create_future()
            self._drain.append(fut)
            # A client that stops reading is as idle as one that stops writing.
            async with asyncio.timeout(self.settings.pop3_timeout):
                await fut
            if self._closed:
                raise ConnectionResetError("connection closed")

    def _last_words(self, data: bytes) -> None:
        """A final line that must not wait on a client that does not read."""
        if not self._closed and self.transport is not None:
            self.transport.write(data)

    async def _start_tls(self) -> bool:
        # RFC 2595 §4: nothing sent before the handshake is a command. Clear the buffer and hand
        # the transport to TLS with no await in between, so no plaintext byte can slip in after.
        self.buffer.clear()
        self._data.clear()
        try:
            self.transport = await self._loop.start_tls(
                self.transport, self, self.listener.ssl_context, server_side=True,
                ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT,
            )
        except (OSError, ssl.SSLError, ConnectionError, TimeoutError) as exc:
            log.info("pop3 STLS handshake failed ip=%s: %s", self._peer(), exc)
            return False
        self._read_paused = False
        return True

    async def _serve(self) -> None:
        secure = self.listener.implicit_tls
        session = Pop3Session(
            self.listener.backend, self.write,
            tls_available=self.listener.ssl_context is not None and not secure,
            secure=secure, client_ip=self._peer(), locks=self.listener.locks,
        )
        self._session = session
        timeout = self.settings.pop3_timeout
        try:
            await session.greet()
            while True:
                try:
                    async with asyncio.timeout(timeout):
                        line = await self.readline(session.line_limit)
                except TimeoutError:
                    self._last_words(err("Idle timeout, closing connection"))  # RFC 1939 §3 autologout
                    break
                except LineTooLong:
                    self._last_words(err("Line too long, closing connection"))
                    break
                except Leaving:  # the gateway is stopping: no UPDATE state, no DELE commits (RFC 1939 §6)
                    self._last_words(err("Server shutting down, try again later", CODE_SYS_TEMP))
                    break
                if line is None:
                    break  # dropped: no UPDATE state, nothing is deleted (RFC 1939 §6)
                self._in_command = True
                try:
                    action = await session.handle_line(line)
                finally:
                    self._in_command = False
                if session.state != AUTHORIZATION:
                    self.preauth.done()
                if action is Action.CLOSE:
                    break
                if action is Action.STARTTLS:
                    if not await self._start_tls():
                        break
                    session.tls_started()
        except (ConnectionError, TimeoutError):
            pass
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pop3 session error ip=%s user=%s", session.client_ip, session.user)
            self._last_words(err("Internal server error, closing connection", CODE_SYS_TEMP))
        finally:
            session.close()
            if self.transport is not None:
                self.transport.close()


async def start_pop3(backend, host: str, port: int, *, ssl_context: ssl.SSLContext | None = None,
                     implicit_tls: bool = False, locks: MaildropLocks | None = None) -> asyncio.Server:
    """Start a POP3 listener; see the module docstring. ``locks`` defaults to the gateway's maildrop
    locks (pop3/lock.py: shared by every task through the state table when the backend is on AWS)."""
    if implicit_tls and ssl_context is None:
        raise ValueError("implicit_tls needs an ssl_context")
    loop = asyncio.get_running_loop()
    listener = _Listener(backend, ssl_context, implicit_tls, maildrop_locks(backend) if locks is None else locks)
    server = await loop.create_server(
        lambda: _Connection(listener), host, port,
        ssl=ssl_context if implicit_tls else None,
        ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT if implicit_tls else None,
        start_serving=True,
    )
    # asyncio.Server has no hook for "closed": wrap close() on this instance so closing the
    # listener also ends its sessions (serve_forever's cancellation calls self.close() too).
    plain_close = server.close

    def close() -> None:
        plain_close()
        listener.cancel_all()

    server.close = close  # type: ignore[method-assign]
    server.pop3_listener = listener  # type: ignore[attr-defined]  # for tests and metrics
    return server
