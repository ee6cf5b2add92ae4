"""One ManageSieve connection: read -> command reader -> gate -> op -> respond.

In:   asyncio streams of an accepted connection, the Backend, the script repository
      (:class:`postern.sieve.repository.ScriptRepository`), TLS options.
Out:  RFC 5804 responses on the stream: the capabilities and ``OK`` on connect, one
      response per command. Ops get this object as ``s`` and use :meth:`send`,
      :meth:`run` (the bounded executor), :meth:`next_command` (SASL continuations),
      ``s.account``, ``s.scripts``.
Fails: nothing escapes :meth:`run_session`: a malformed command or a refusal is ``NO``
      (with its response code); any other exception is ``NO (TRYLATER)`` (logged); more than
      :data:`MAX_BAD` consecutive bad commands, the idle timer, or more than the pre-login byte
      budget (:mod:`postern_gateway.preauth`) -> ``BYE`` and close.

States (RFC 5804 §2): non-authenticated -> authenticated (AUTHENTICATE) -> non-authenticated
(UNAUTHENTICATE); LOGOUT ends both. Only :meth:`logged_in`, :meth:`logged_out` and
:meth:`logout` change the state.
"""

from __future__ import annotations

import asyncio
import logging

from postern.errors import PosternError, StoreUnavailable
from postern.sieve import capability_string

from ..listener import start_tls as upgrade_to_tls
from ..preauth import EXCEEDED, PreauthBudget
from ..sessions import Leaving
from . import wire
from .gate import AUTHENTICATED, LOGOUT, NOT_AUTHENTICATED, State, handler
from .reader import Command, CommandReader, NeedMore, Reject
from .wire import SieveProtocolError

log = logging.getLogger("postern.managesieve")

IMPLEMENTATION = "Postern"
PREAUTH_TIMEOUT = 120.0  # seconds for a whole command before login
AUTOLOGOUT = 600.0  # seconds for a whole command once logged in (the NLB's idle timeout is above it)
MAX_BAD = 10  # consecutive bad commands before BYE
MAX_LINE = 8 * 1024  # non-literal bytes of one command
MAX_NAME_LITERAL = 4 * 1024  # a literal that is not a script (a name, a SASL response)
READ_SIZE = 65536


class ByeError(Exception):
    def __init__(self, text: str, code: str | None = None):
        super().__init__(text)
        self.text = text
        self.code = code


class Session:
    def __init__(self, backend, scripts, reader, writer, *, ssl_context=None, tls: bool = False):
        self.backend = backend
        self.settings = backend.settings
        self.scripts = scripts
        self.reader = reader
        self.writer = writer
        self.ssl_context = ssl_context
        self.tls = tls
        peer = writer.get_extra_info("peername")
        self.client_ip = peer[0] if peer else ""
        self.preauth = PreauthBudget(self.settings.preauth_max_bytes)
        self.commands = CommandReader(max_line=MAX_LINE)
        self._limit_reader()
        self._state = NOT_AUTHENTICATED
        self.user = None
        self.account_ticket = None  # per-account session slot (postern.limits)
        self.fail_counter = None
        self.bad_count = 0
        self.seat = None  # postern_gateway.sessions.Seat, when the gateway counts sessions
        self._out: list[bytes] = []

    # --- state ------------------------------------------------------------------------------------
    @property
    def state(self) -> State:
        return self._state

    @property
    def account(self) -> str:
        return self.user.address

    @property
    def plaintext_ok(self) -> bool:
        return self.tls or self.settings.allow_plaintext_auth

    def _limit_reader(self) -> None:
        """Before login no literal exceeds the byte budget; after it a script may be as large as
        the repository allows (the reader refuses a larger one with QUOTA/MAXSIZE before reading it)."""
        budget = self.preauth.limit if self.preauth.active else 0
        script = self.scripts.max_size
        if budget:
            self.commands.max_literal = min(MAX_NAME_LITERAL, budget)
            self.commands.max_script = min(script, budget)
        else:
            self.commands.max_literal = MAX_NAME_LITERAL
            self.commands.max_script = script

    def logged_in(self, user, ticket) -> None:
        self._state = AUTHENTICATED
        self.user = user
        self.account_ticket = ticket
        self.preauth.done()
        self._limit_reader()

    def logged_out(self) -> None:
        """UNAUTHENTICATE: the account's session slot goes; a new pre-login budget starts."""
        self._release()
        self._state = NOT_AUTHENTICATED
        self.user = None
        self.preauth = PreauthBudget(self.settings.preauth_max_bytes)
        self._limit_reader()

    def logout(self) -> None:
        self._state = LOGOUT

    def _release(self) -> None:
        if self.account_ticket is not None:
            self.account_ticket.release()
            self.account_ticket = None

    # --- capabilities (§1.7) ------------------------------------------------------------------------
    def send_capabilities(self) -> None:
        lines = [wire.capability_line("IMPLEMENTATION", IMPLEMENTATION),
                 wire.capability_line("SASL", "PLAIN" if self.plaintext_ok else ""),
                 wire.capability_line("SIEVE", capability_string())]
        if self.ssl_context is not None and not self.tls and self.state is NOT_AUTHENTICATED:
            lines.append(wire.capability_line("STARTTLS"))
        if self.settings.sieve_max_redirects > 0:
            lines.append(wire.capability_line("MAXREDIRECTS", str(self.settings.sieve_max_redirects)))
        if self.state is AUTHENTICATED:
            lines.append(wire.capability_line("OWNER", self.account))
        lines += [wire.capability_line("UNAUTHENTICATE"), wire.capability_line("VERSION", "1.0")]
        for line in lines:
            self.send(line)

    # --- output -----------------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        self._out.append(data)

    async def flush(self) -> None:
        if self._out:
            self.writer.write(b"".join(self._out))
            self._out.clear()
        await self.writer.drain()

    async def run(self, fn, /, *args):
        """A blocking call (the repository: DynamoDB, compiling a script) on the bounded executor."""
        return await self.backend.run(fn, *args)

    # --- input ------------------------------------------------------------------------------------
    async def _read(self, timeout: float) -> bytes:
        if self.seat is None:
            return await asyncio.wait_for(self.reader.read(READ_SIZE), timeout)
        return await self.seat.read(self.reader.read(READ_SIZE), timeout)

    async def next_command(self) -> Command:
        """The next complete command (or SASL continuation). The timeout bounds the whole
        command, not each read: a client trickling bytes cannot hold the session open."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (PREAUTH_TIMEOUT if self.state is NOT_AUTHENTICATED else AUTOLOGOUT)
        while True:
            ev = self.commands.next()
            if isinstance(ev, Command):
                return ev
            if isinstance(ev, Reject):
                self.send(wire.bye(ev.text, ev.code) if ev.close else wire.no(ev.text, ev.code))
                await self.flush()
                self.bad_count += 1
                if ev.close or self.bad_count > MAX_BAD:
                    raise ByeError("Too many bad commands")
                continue
            assert isinstance(ev, NeedMore)
            try:
                data = await self._read(max(0.0, deadline - loop.time()))
            except (asyncio.TimeoutError, TimeoutError):
                raise ByeError("Idle for too long, closing connection") from None
            if not data:
                raise ConnectionResetError("client closed")
            if self.state is NOT_AUTHENTICATED and not self.preauth.spend(len(data)):
                raise ByeError(EXCEEDED)
            self.commands.feed(data)

    # --- main loop ----------------------------------------------------------------------------------
    async def run_session(self) -> None:
        try:
            self.send_capabilities()
            self.send(wire.ok(f"{self.settings.hostname} Postern ManageSieve ready"))
            await self.flush()
            while self.state is not LOGOUT:
                cmd = await self.next_command()
                await self.dispatch(cmd)
                await self.flush()
        except ByeError as exc:
            await self._bye(exc.text, exc.code)
        except Leaving:  # the gateway is stopping; a command in progress has had its response
            await self._bye("Server shutting down, reconnect later", "TRYLATER")
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            pass
        finally:
            self._release()
            try:
                self.writer.close()
            except Exception:  # noqa: BLE001
                pass

    async def _bye(self, text: str, code: str | None) -> None:
        try:
            self.send(wire.bye(text, code))
            await self.flush()
        except (ConnectionError, OSError, RuntimeError):
            pass

    async def dispatch(self, cmd: Command) -> None:
        name = cmd.name
        try:
            if not name:
                raise wire.Bad("Expected a command name")
            op = handler(self.state, name)
            reply = await op(self, cmd.args)
            self.bad_count = 0
            if reply is not None:
                self.send(reply)
        except SieveProtocolError as exc:
            self.bad_count = self.bad_count + 1 if exc.bad else 0
            self.send(wire.error_response(exc))
        except PosternError as exc:  # the repository's refusals, StoreUnavailable, AuthLocked, TooManySessions
            if isinstance(exc, StoreUnavailable):
                log.warning("managesieve %s: store unavailable: %s", name, exc.text)
            self.bad_count = 0
            self.send(wire.error_response(exc))
        except (ByeError, Leaving, ConnectionError, asyncio.CancelledError):
            raise
        except Exception:  # noqa: BLE001 - no input may crash the connection
            log.exception("managesieve %s failed", name)
            self.send(wire.no("Internal error, try again later", "TRYLATER"))
        if self.bad_count > MAX_BAD:
            raise ByeError("Too many bad commands")

    async def start_tls(self) -> None:
        """Upgrade in place (§2.2); anything the client pipelined before the handshake is dropped."""
        self.commands.discard()
        await upgrade_to_tls(self.reader, self.writer, self.ssl_context)
        self.tls = True
