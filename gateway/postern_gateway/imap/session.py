"""One IMAP connection: read -> receive -> parse -> gate -> op -> respond.

In:   asyncio streams of an accepted connection, the Backend, TLS options.
Out:  IMAP4rev1 responses on the stream. The ops modules get this object as
      ``s`` and use :meth:`send`, ``s.selected``, ``s.user``, ``s.backend``,
      :meth:`next_request` (AUTHENTICATE continuations, IDLE's DONE) and
      return the tagged reply text (or raise an error that carries it).
Fails: nothing escapes :meth:`run`: parse errors -> BAD; domain errors -> their
      ``imap_response``; any other exception -> ``NO [UNAVAILABLE]`` (logged);
      too many consecutive bad commands or the RFC 3501 §5.4 autologout timer
      -> ``* BYE`` and close.
"""

from __future__ import annotations

import asyncio
import logging

from postern.errors import PosternError, StoreUnavailable

from ..listener import start_tls as upgrade_to_tls
from ..preauth import EXCEEDED, PreauthBudget
from ..sessions import Leaving
from . import responses as R
from .errors import BadCommand, ByeError, ImapError, ParseError
from .gate import handler
from .parser import Command, parse_command
from .receiver import Complete, Continue, NeedMore, Receiver, Reject
from .state import AUTHENTICATED, LOGOUT, NOT_AUTHENTICATED, SELECTED, TRANSITIONS, State
from .watcher import Runtime

log = logging.getLogger("postern.imap")

AUTOLOGOUT = 30 * 60  # RFC 3501 §5.4: at least 30 minutes once authenticated
PREAUTH_TIMEOUT = 120.0
MAX_BAD = 20  # consecutive BAD replies before we hang up
MAX_LINE = 64 * 1024
MAX_LITERAL = 1024 * 1024
OUT_CHUNK = 256 * 1024
# RFC 3501 §7.4.1: no EXPUNGE while responding to FETCH, STORE or SEARCH (the UID forms may);
# SORT and THREAD answer with sequence numbers too (RFC 5256 §4).
NO_EXPUNGE = {"FETCH", "STORE", "SEARCH", "SORT", "THREAD"}


class Done(Exception):
    """The op asked to end the connection after its reply (LOGOUT)."""


class Session:
    def __init__(self, backend, reader, writer, *, ssl_context=None, tls: bool = False):
        self.backend = backend
        self.settings = backend.settings
        self.runtime = Runtime.of(backend)
        self.reader = reader
        self.writer = writer
        self.ssl_context = ssl_context
        self.tls = tls
        peer = writer.get_extra_info("peername")
        self.client_ip = peer[0] if peer else ""
        # Before login every limit is at most the connection's byte budget (postern_gateway.preauth):
        # a literal announced larger is refused before "+", and the total read is counted.
        self.preauth = PreauthBudget(self.settings.preauth_max_bytes)
        self.receiver = Receiver(**self._receiver_limits(self.preauth.limit))
        self._state = NOT_AUTHENTICATED
        self.user = None
        self.selected = None
        self.condstore = False
        self.enabled: set[str] = set()
        self.bad_count = 0
        self._out: list[bytes] = []
        self._out_len = 0
        self.fail_counter = None
        self.idling = False
        self.seat = None  # postern_gateway.sessions.Seat: reads end with * BYE when the gateway stops
        self.account_ticket = None  # per-account session slot (postern.limits), released at the end

    # --- output ---------------------------------------------------------------
    def send(self, data: bytes) -> None:
        self._out.append(data)
        self._out_len += len(data)

    async def flush(self) -> None:
        if self._out:
            self.writer.write(b"".join(self._out))
            self._out.clear()
            self._out_len = 0
        await self.writer.drain()

    async def maybe_flush(self) -> None:
        if self._out_len >= OUT_CHUNK:
            await self.flush()

    # --- capabilities -----------------------------------------------------------
    @property
    def plaintext_ok(self) -> bool:
        return self.tls or self.settings.allow_plaintext_auth

    def capabilities(self) -> str:
        caps = ["IMAP4rev1"]
        if self.state == NOT_AUTHENTICATED:
            if self.ssl_context is not None and not self.tls:
                caps.append("STARTTLS")
            if self.plaintext_ok:
                caps += ["AUTH=PLAIN", "SASL-IR"]
            else:
                caps.append("LOGINDISABLED")
        caps += ["LITERAL+", "ID", "ENABLE", "IDLE", "NAMESPACE", "UNSELECT", "CHILDREN", "SPECIAL-USE",
                 "UIDPLUS", "MOVE", "CONDSTORE", "QRESYNC", "QUOTA", "QUOTA=RES-STORAGE", "MULTIAPPEND",
                 f"APPENDLIMIT={self.settings.max_message_size}", "ESEARCH", "SORT", "SORT=DISPLAY",
                 "THREAD=ORDEREDSUBJECT", "THREAD=REFERENCES", "OBJECTID"]
        return " ".join(caps)

    # --- input ------------------------------------------------------------------
    def _timeout(self) -> float:
        return PREAUTH_TIMEOUT if self.state == NOT_AUTHENTICATED else AUTOLOGOUT

    async def next_request(self) -> bytes:
        """The next complete command (or continuation line); sends ``+`` for synchronising literals.

        The timeout bounds the whole request, not each read (trust): a client sending one byte a
        second cannot keep a session alive with a command that never ends.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout()
        while True:
            ev = self.receiver.next()
            if isinstance(ev, Complete):
                return ev.data
            if isinstance(ev, Continue):
                self.send(b"+ Ready for literal data\r\n")
                await self.flush()
                continue
            if isinstance(ev, Reject):
                self.send(ev.response)
                self.bad_count += 1
                await self.flush()
                if ev.close or self.bad_count > MAX_BAD:
                    raise ByeError("Too many bad commands")
                continue
            assert isinstance(ev, NeedMore)
            timeout = max(0.0, deadline - loop.time())
            try:
                if self.seat is None:
                    data = await asyncio.wait_for(self.reader.read(65536), timeout)
                else:
                    data = await self.seat.read(self.reader.read(65536), timeout)
            except asyncio.TimeoutError:
                raise ByeError("Autologout; idle for too long") from None
            except Leaving:  # the gateway is stopping; a command in progress has had its reply
                raise ByeError("[UNAVAILABLE] Server shutting down, reconnect later") from None
            if not data:
                raise ConnectionResetError("client closed")
            if self.state == NOT_AUTHENTICATED and not self.preauth.spend(len(data)):
                raise ByeError(f"[LIMIT] {EXCEEDED}")
            self.receiver.feed(data)

    # --- main loop -------------------------------------------------------------
    async def run(self) -> None:
        try:
            self.send(R.untagged(f"OK [CAPABILITY {self.capabilities()}] {self.settings.hostname} Postern IMAP4rev1 ready"))
            await self.flush()
            while self.state != LOGOUT:
                data = await self.next_request()
                await self.dispatch(data)
                await self.flush()
        except ByeError as exc:
            try:
                self.send(R.untagged(f"BYE {exc.text}"))
                await self.flush()
            except (ConnectionError, OSError, RuntimeError):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            pass
        finally:
            self.deselect()
            if self.account_ticket is not None:
                self.account_ticket.release()
            try:
                self.writer.close()
            except Exception:  # noqa: BLE001
                pass

    async def dispatch(self, data: bytes) -> None:
        tag = "*"
        cmd = None
        try:
            cmd = parse_command(data)
            tag = cmd.tag
            fn = handler(self.state, cmd.name, cmd.uid)
            result = await fn(self, cmd)
            self.bad_count = 0
            if result is None:
                return  # the op sent its own tagged reply (STARTTLS)
            self.before_tagged(cmd)
            status, code, text = result if isinstance(result, tuple) else ("OK", None, result)
            self.send(R.tagged(tag, status, text or f"{cmd.full_name} completed", code))
        except ParseError as exc:
            self.bad_count += 1
            self.send(exc.response(exc.tag))
        except (ImapError, PosternError) as exc:
            if isinstance(exc, StoreUnavailable):  # the client gets the class's text (public_text), the log the detail
                log.warning("imap %s: store unavailable: %s", cmd.name if cmd else "?", exc.text)
            if isinstance(exc, BadCommand):
                self.bad_count += 1
            else:
                self.bad_count = 0
            self.send(exc.imap_response(tag))
        except (ByeError, ConnectionError, asyncio.CancelledError):
            raise
        except Exception:  # noqa: BLE001 - no input may crash the connection handler
            log.exception("imap command failed")
            self.send(R.tagged(tag, "NO", "Internal error, try again later", "UNAVAILABLE"))
        if self.bad_count > MAX_BAD:
            raise ByeError("Too many bad commands")
        if self.selected is not None and self.selected.gone and self.state == SELECTED:
            raise ByeError("Selected mailbox was deleted or renamed")

    def before_tagged(self, cmd: Command) -> None:
        """Untagged updates the client may receive now (RFC 3501 §5.5, §7.4.1)."""
        if self.selected is None or self.state != SELECTED:
            return
        allow = cmd.uid or cmd.name not in NO_EXPUNGE
        for line in self.selected.flush(allow_expunge=allow, with_uid=cmd.uid):
            self.send(line)

    # --- state transitions (RFC 3501 §3); the only writers of ``_state`` ---------------
    @property
    def state(self) -> State:
        return self._state

    def _move(self, to: State) -> None:
        if to not in TRANSITIONS[self._state]:
            raise AssertionError(f"IMAP state {self._state.value} -> {to.value} is not a transition")
        self._state = to

    def logged_in(self, user, ticket=None) -> None:
        """LOGIN/AUTHENTICATE succeeded: (4) authenticated state, the pre-login budget lifted;
        ``ticket`` (the account's session slot) is released when the connection ends."""
        self._move(AUTHENTICATED)
        self.user = user
        self.account_ticket = ticket
        self.preauth.done()
        for name, value in self._receiver_limits(0).items():
            setattr(self.receiver, name, value)

    def _receiver_limits(self, cap: int) -> dict[str, int]:
        """The receiver's limits; before login (``cap`` > 0) none exceeds the byte budget."""
        limits = {"max_line": MAX_LINE, "max_literal": MAX_LITERAL, "max_append_literal": self.settings.max_message_size}
        if cap:
            return {**{k: min(v, cap) for k, v in limits.items()}, "max_command": cap}
        return {**limits, "max_command": limits["max_append_literal"] + MAX_LINE * 4}

    def enter_selected(self, sel) -> None:
        """SELECT / EXAMINE succeeded: (5) -> selected, with ``sel`` as the selected mailbox."""
        self._move(SELECTED)
        self.selected = sel

    def deselect(self) -> None:
        """CLOSE, UNSELECT, a new SELECT or the end of the connection: (6) selected -> authenticated."""
        if self.selected is not None:
            self.selected.watcher.unsubscribe(self.selected)
            self.selected = None
        if self._state == SELECTED:
            self._move(AUTHENTICATED)

    def enable_condstore(self) -> None:
        """A CONDSTORE-enabling command (RFC 7162 §3.1: SELECT/EXAMINE (CONDSTORE), STATUS
        HIGHESTMODSEQ, FETCH MODSEQ or CHANGEDSINCE, SEARCH MODSEQ, STORE UNCHANGEDSINCE, ENABLE
        CONDSTORE/QRESYNC): on for the rest of the connection, and for the selected mailbox."""
        self.condstore = True
        if self.selected is not None:
            self.selected.enable_condstore()

    def logout(self) -> None:
        """LOGOUT: (7) -> logout; the main loop ends after the tagged reply."""
        self.deselect()
        self._move(LOGOUT)

    async def start_tls(self) -> None:
        """Upgrade in place (RFC 3501 §6.2.1); anything pipelined before the handshake is discarded."""
        self.receiver.discard_buffer()
        await upgrade_to_tls(self.reader, self.writer, self.ssl_context)
        self.tls = True
