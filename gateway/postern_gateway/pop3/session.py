"""One POP3 session: the RFC 1939 state machine over a snapshot of INBOX.

In:   command lines from the connection (``handle_line``), one at a time;
      the :class:`~postern_gateway.backend.Backend` (directory for logins,
      mail store for the snapshot, reads and the final expunge, every call
      through the async facade ``backend.mail``).
Out:  response bytes through the ``write`` coroutine the connection gives
      us, and an :class:`Action` telling the connection what to do next
      (read on, close, or start TLS).
Fails: every refused command gets ``-ERR`` with a reason (RFC 2449 §8
      response codes where they apply: ``[AUTH]``, ``[SYS/TEMP]``,
      ``[IN-USE]``); a backend failure (StoreUnavailable) is
      ``-ERR [SYS/TEMP]`` and the session goes on; anything unexpected
      propagates to the connection, which logs it, answers ``-ERR`` and
      closes. A dropped connection deletes nothing.

States (RFC 1939 §3): AUTHORIZATION -> (USER/PASS | AUTH) -> TRANSACTION ->
QUIT -> UPDATE (commit the DELE marks, then close). The whole command
surface is the gate table :data:`COMMANDS`.

Passwords and AUTH lines are never logged.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable

from postern.errors import MailboxNotFound, PosternError, StoreUnavailable

from ..auth import FailureCounter, SaslError, authenticate, claim_session, decode_plain
from .lock import Lease, MaildropLocks
from .maildrop import Entry, Maildrop
from .protocol import (
    CODE_AUTH,
    CODE_IN_USE,
    CODE_SYS_TEMP,
    MAX_LINE,
    MAX_SASL_LINE,
    BadCommand,
    DotStuffer,
    Pop3Error,
    continuation,
    err,
    multiline,
    ok,
    parse_command,
    parse_number,
    take_lines,
)

log = logging.getLogger("postern.pop3")

AUTHORIZATION = "AUTHORIZATION"
TRANSACTION = "TRANSACTION"
UPDATE = "UPDATE"

# The state gate (mox imapserver/server.go style): which command is valid where.
# RFC 1939 §4 (AUTHORIZATION), §5 (TRANSACTION), §6 (UPDATE); RFC 2449 §5 CAPA in both;
# RFC 2595 §4 STLS and RFC 5034 §4 AUTH in AUTHORIZATION only.
COMMANDS: dict[str, frozenset[str]] = {
    AUTHORIZATION: frozenset({"USER", "PASS", "AUTH", "STLS", "CAPA", "QUIT"}),
    TRANSACTION: frozenset({"STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "TOP", "UIDL", "CAPA", "QUIT"}),
    UPDATE: frozenset(),
}
KNOWN = frozenset().union(*COMMANDS.values()) | {"APOP"}

SASL_MECHANISMS = ("PLAIN",)
READ_CHUNK = 1024 * 1024  # RETR streams the message in S3 ranges of this size
TOP_FIRST_READ = 16 * 1024  # TOP's first ranged read after the header; grows x4 until n lines are in


class Action(enum.Enum):
    CONTINUE = "continue"
    CLOSE = "close"
    STARTTLS = "starttls"


class Pop3Session:
    """The state machine. The connection feeds lines and performs the returned Action."""

    def __init__(
        self,
        backend,
        write: Callable[[bytes], Awaitable[None]],
        *,
        tls_available: bool = False,
        secure: bool = False,
        client_ip: str = "",
        locks: MaildropLocks | None = None,
        max_bad_commands: int = 10,
        max_auth_failures: int = 3,
    ):
        self.backend = backend
        self.settings = backend.settings
        self.mail = backend.mail  # the async store facade
        self._write = write
        self.tls_available = tls_available
        self.secure = secure
        self.client_ip = client_ip
        self.locks = MaildropLocks() if locks is None else locks  # the listener passes the gateway's
        self.max_bad_commands = max_bad_commands
        self.max_auth_failures = max_auth_failures

        self.state = AUTHORIZATION
        self.user: str | None = None
        self.maildrop: Maildrop | None = None
        self._pending_user: str | None = None  # after USER, before PASS
        self._sasl_pending = False  # AUTH PLAIN sent "+ ", the next line is the response
        self._lease: Lease | None = None
        self._session_ticket = None  # per-account session slot (postern.limits)
        self._bad = 0
        self._auth_failures = FailureCounter()

    # --- what the connection asks ------------------------------------------
    @property
    def line_limit(self) -> int:
        return MAX_SASL_LINE if self._sasl_pending else MAX_LINE

    async def greet(self) -> None:
        await self._write(ok(f"{self.settings.hostname} Postern POP3 server ready"))

    def tls_started(self) -> None:
        """STLS handshake done: forget what was learnt in plaintext (RFC 2595 §4)."""
        self.secure = True
        self._pending_user = None

    def close(self) -> None:
        """The connection is gone (QUIT, drop, timeout): release the lock, commit nothing."""
        if self._lease is not None:
            self.locks.release_nowait(self._lease)
            self._lease = None
        if self._session_ticket is not None:
            self._session_ticket.release()
            self._session_ticket = None

    async def handle_line(self, line: bytes) -> Action:
        """One line from the client -> responses written, and what to do next."""
        if self._sasl_pending:
            self._sasl_pending = False
            return await self._guard(self._sasl_response(line))
        try:
            cmd = parse_command(line)
        except BadCommand as exc:
            return await self._refuse(Pop3Error(str(exc)))
        if cmd.keyword not in COMMANDS[self.state]:
            if cmd.keyword in KNOWN:
                what = "Command not valid in this state"
                if cmd.keyword == "APOP":
                    what = "APOP is not supported"
                return await self._refuse(Pop3Error(f"{what}: {cmd.keyword}"))
            return await self._refuse(Pop3Error(f"Unknown command: {cmd.keyword[:16]}"))
        if cmd.keyword not in ("PASS", "AUTH"):
            log.debug("pop3 %s %s", self.client_ip, cmd.keyword)
        handler = getattr(self, "cmd_" + cmd.keyword.lower())
        return await self._guard(handler(cmd))

    async def _guard(self, coro) -> Action:
        try:
            action = await coro
        except Pop3Error as exc:
            return await self._refuse(exc)
        except StoreUnavailable as exc:
            log.warning("pop3 store unavailable ip=%s user=%s: %s", self.client_ip, self.user, exc.text)
            await self._write(exc.pop3_response())
            return Action.CONTINUE
        except PosternError as exc:
            await self._write(exc.pop3_response())
            return Action.CONTINUE
        self._bad = 0
        return action

    async def _refuse(self, exc: Pop3Error) -> Action:
        if exc.bad:
            self._bad += 1
            if self._bad >= self.max_bad_commands:
                await self._write(err(f"{exc.text}; too many bad commands, closing connection", exc.code))
                return Action.CLOSE
        await self._write(exc.response())
        return Action.CONTINUE

    # --- AUTHORIZATION ------------------------------------------------------
    def _plaintext_ok(self) -> bool:
        return self.secure or self.settings.allow_plaintext_auth

    def _require_plaintext_ok(self) -> None:
        if not self._plaintext_ok():
            # RFC 2595 §4 / RFC 3206 §4: refuse credentials in the clear, point at STLS.
            hint = "; use STLS first" if self.tls_available else ""
            raise Pop3Error(f"Plaintext authentication disallowed on non-TLS connection{hint}", CODE_AUTH)

    def capabilities(self) -> list[str]:
        caps = ["CAPA", "TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "EXPIRE NEVER"]
        if self.state == AUTHORIZATION:
            if self._plaintext_ok():
                caps += ["USER", "SASL " + " ".join(SASL_MECHANISMS)]
            if self.tls_available and not self.secure:
                caps.append("STLS")
        caps.append("IMPLEMENTATION Postern")
        return caps

    async def cmd_capa(self, cmd) -> Action:
        # RFC 2449 §5
        await self._write(multiline(ok("Capability list follows"), self.capabilities()))
        return Action.CONTINUE

    async def cmd_stls(self, cmd) -> Action:
        if cmd.args:
            raise Pop3Error("STLS takes no arguments")
        if self.secure:
            raise Pop3Error("Command not permitted when TLS active")  # RFC 2595 §4
        if not self.tls_available:
            raise Pop3Error("TLS not available")
        await self._write(ok("Begin TLS negotiation"))
        return Action.STARTTLS

    async def cmd_user(self, cmd) -> Action:
        self._require_plaintext_ok()
        name = cmd.rest.strip()
        if not name or " " in name:
            raise Pop3Error("USER requires exactly one argument: a mailbox name")
        self._pending_user = name
        await self._write(ok("Send your password"))
        return Action.CONTINUE

    async def cmd_pass(self, cmd) -> Action:
        self._require_plaintext_ok()
        if self._pending_user is None:
            raise Pop3Error("USER first")
        # RFC 1939 §7: PASS has exactly one argument, which may contain spaces.
        password = cmd.rest
        if not password:
            raise Pop3Error("PASS requires a password")
        user, self._pending_user = self._pending_user, None
        return await self._login(user, password)

    async def cmd_auth(self, cmd) -> Action:
        if not cmd.args:
            # Not in RFC 5034 but widely used to list mechanisms (before CAPA existed).
            await self._write(multiline(ok("Supported mechanisms follow"), list(SASL_MECHANISMS)))
            return Action.CONTINUE
        mech = cmd.args[0].upper()
        if mech not in SASL_MECHANISMS:
            raise Pop3Error(f"Unsupported authentication mechanism: {cmd.args[0][:20]}")
        if len(cmd.args) > 2:
            raise Pop3Error("AUTH takes a mechanism and an optional initial response")
        self._require_plaintext_ok()
        if len(cmd.args) == 2:
            initial = cmd.args[1]
            # RFC 5034 §4: "=" is an empty initial response.
            return await self._sasl_plain("" if initial == "=" else initial)
        self._sasl_pending = True
        await self._write(continuation())
        return Action.CONTINUE

    async def _sasl_response(self, line: bytes) -> Action:
        text = line.rstrip(b"\r\n")
        if text == b"*":
            raise Pop3Error("Authentication cancelled")  # RFC 5034 §4
        try:
            value = text.decode("ascii")
        except UnicodeDecodeError:
            raise Pop3Error("Invalid SASL response", CODE_AUTH) from None
        return await self._sasl_plain(value)

    async def _sasl_plain(self, b64: str) -> Action:
        try:
            _, authcid, passwd = decode_plain(b64)
        except SaslError as exc:
            raise Pop3Error(f"Invalid SASL response: {exc}", CODE_AUTH) from None
        return await self._login(authcid, passwd)

    async def _login(self, username: str, password: str) -> Action:
        user = await authenticate(self.backend, username, password, client_ip=self.client_ip, protocol="pop3",
                                  counter=self._auth_failures)
        if user is None:
            if self._auth_failures.failures >= self.max_auth_failures:
                await self._write(err("Authentication failed; too many failures, closing connection", CODE_AUTH))
                return Action.CLOSE
            raise Pop3Error("Authentication failed", CODE_AUTH, bad=False)
        ticket = claim_session(self.backend, user.address, self.client_ip, "pop3")  # -ERR [SYS/TEMP] when over
        try:
            await self._open_maildrop(user.address)
        except BaseException:
            ticket.release()
            raise
        self._session_ticket = ticket
        count, size = self.maildrop.stat()
        await self._write(ok(f"Logged in, maildrop has {count} messages ({size} octets)"))
        return Action.CONTINUE

    async def _open_maildrop(self, address: str) -> None:
        """Lock INBOX and take the snapshot; the session enters TRANSACTION only if both work."""
        try:
            mb = await self.mail.get_mailbox(address, "INBOX")
        except MailboxNotFound:
            mb = None  # nothing delivered yet: an empty maildrop
        lease = None
        if mb is not None:  # RFC 1939 §4: exclusive, across every gateway task (pop3/lock.py)
            lease = await self.locks.acquire(address, mb.mailbox_id)
            if lease is None:
                raise Pop3Error("Maildrop already in use by another session", CODE_IN_USE, bad=False)
        try:
            metas = await self.mail.list_messages(mb, light=True) if mb else []
        except BaseException:
            if lease is not None:
                self.locks.release_nowait(lease)
            raise
        self._lease = lease
        self.user = address
        self.maildrop = Maildrop(mb, metas)
        self.state = TRANSACTION
        log.info("pop3 login ip=%s user=%s messages=%d", self.client_ip, address, len(metas))

    # --- TRANSACTION --------------------------------------------------------
    def _one_arg(self, cmd, name: str) -> str:
        if len(cmd.args) != 1:
            raise Pop3Error(f"{name} requires exactly one argument: a message number")
        return cmd.args[0]

    async def cmd_stat(self, cmd) -> Action:
        if cmd.args:
            raise Pop3Error("STAT takes no arguments")
        count, size = self.maildrop.stat()
        await self._write(ok(f"{count} {size}"))  # RFC 1939 §5: exactly "+OK nn mm"
        return Action.CONTINUE

    async def cmd_list(self, cmd) -> Action:
        return await self._listing(cmd, "LIST", lambda e: str(e.meta.size))

    async def cmd_uidl(self, cmd) -> Action:
        return await self._listing(cmd, "UIDL", self.maildrop.uidl)

    async def _listing(self, cmd, name: str, value: Callable[[Entry], str]) -> Action:
        if len(cmd.args) > 1:
            raise Pop3Error(f"{name} takes at most one argument: a message number")
        if cmd.args:
            e = self.maildrop.get(cmd.args[0])
            await self._write(ok(f"{e.number} {value(e)}"))
            return Action.CONTINUE
        live = self.maildrop.live()
        if name == "LIST":
            count, size = self.maildrop.stat()
            first = ok(f"{count} messages ({size} octets)")
        else:
            first = ok("Unique-ID listing follows")
        await self._write(multiline(first, [f"{e.number} {value(e)}" for e in live]))
        return Action.CONTINUE

    async def cmd_dele(self, cmd) -> Action:
        e = self.maildrop.get(self._one_arg(cmd, "DELE"))
        self.maildrop.delete(e)  # RFC 1939 §5: only marked; removed in the UPDATE state
        await self._write(ok(f"Message {e.number} deleted"))
        return Action.CONTINUE

    async def cmd_rset(self, cmd) -> Action:
        if cmd.args:
            raise Pop3Error("RSET takes no arguments")
        self.maildrop.reset()
        count, size = self.maildrop.stat()
        await self._write(ok(f"Maildrop has {count} messages ({size} octets)"))
        return Action.CONTINUE

    async def cmd_noop(self, cmd) -> Action:
        if cmd.args:
            raise Pop3Error("NOOP takes no arguments")
        await self._write(ok())
        return Action.CONTINUE

    async def _full_meta(self, e: Entry):
        """RETR/TOP need the trace prefix and header summary the light listing left out.

        Fetched once per message and session; this also notices a message another
        client (IMAP) expunged since the snapshot.
        """
        if e.full:
            return e.meta
        found = await self.mail.get_messages(self.maildrop.mailbox, [e.meta.uid])
        if not found:
            raise Pop3Error(f"Message {e.number} is no longer available (removed by another client)", bad=False)
        self.maildrop.upgrade(e, found[0])
        return e.meta

    async def cmd_retr(self, cmd) -> Action:
        e = self.maildrop.get(self._one_arg(cmd, "RETR"))
        meta = await self._full_meta(e)
        read = self.mail.read
        # Read the first range before answering +OK so most failures can still be -ERR.
        first = await read(meta, 0, min(meta.size, READ_CHUNK))
        stuffer = DotStuffer()
        await self._write(ok(f"{meta.size} octets") + stuffer.feed(first))
        pos = len(first)
        while pos < meta.size:
            try:
                chunk = await read(meta, pos, min(meta.size, pos + READ_CHUNK))
            except StoreUnavailable as exc:
                # +OK is already out: the only honest signal left is to drop the connection.
                log.warning("pop3 RETR aborted mid-message ip=%s user=%s uid=%s: %s", self.client_ip, self.user,
                            meta.uid, exc.text)
                return Action.CLOSE
            if not chunk:
                break
            await self._write(stuffer.feed(chunk))
            pos += len(chunk)
        await self._write(stuffer.finish())
        return Action.CONTINUE

    async def cmd_top(self, cmd) -> Action:
        if len(cmd.args) != 2:
            raise Pop3Error("TOP requires two arguments: a message number and a number of lines")
        e = self.maildrop.get(cmd.args[0])
        n = parse_number(cmd.args[1], allow_zero=True)
        if n is None:
            raise Pop3Error(f"Invalid number of lines: {cmd.args[1][:40]}")
        meta = await self._full_meta(e)
        read = self.mail.read
        header = meta.header if meta.header is not None else await read(meta, 0, meta.header_len)
        body = b""
        hl = len(header)
        if n > 0 and meta.size > hl:
            # RFC 1939 §7: header, blank line, then n lines of the body; ranged reads, never the whole
            # of a huge message unless the client asks for that many lines.
            want = TOP_FIRST_READ
            while True:
                end = min(meta.size, hl + want)
                data = await read(meta, hl, end)
                k = take_lines(data, n)
                if k is not None:
                    body = data[:k]
                    break
                if end >= meta.size:
                    body = data
                    break
                want *= 4
        stuffer = DotStuffer()
        await self._write(ok("Top of message follows") + stuffer.feed(header) + stuffer.feed(body) + stuffer.finish())
        return Action.CONTINUE

    # --- QUIT / UPDATE ------------------------------------------------------
    async def cmd_quit(self, cmd) -> Action:
        if self.state == AUTHORIZATION:
            await self._write(ok(f"{self.settings.hostname} Postern POP3 server signing off"))
            return Action.CLOSE
        # RFC 1939 §6: QUIT from TRANSACTION enters UPDATE and removes the marked messages.
        self.state = UPDATE
        marked = self.maildrop.marked()
        left = len(self.maildrop) - len(marked)
        if marked and self._lease is not None and self._lease.lost:
            # Another session may own the maildrop now: removing messages from our snapshot is unsafe.
            log.warning("pop3 commit refused ip=%s user=%s: maildrop lock lost", self.client_ip, self.user)
            await self._write(err("Maildrop lock lost; no messages removed, try again", CODE_IN_USE))
            return Action.CLOSE
        if marked:
            try:
                await self.mail.expunge(self.maildrop.mailbox, marked)
            except (StoreUnavailable, MailboxNotFound) as exc:
                log.warning("pop3 commit failed ip=%s user=%s: %s", self.client_ip, self.user, exc)
                await self._write(err("Some deleted messages not removed, try again later", CODE_SYS_TEMP))
                return Action.CLOSE
        log.info("pop3 quit ip=%s user=%s deleted=%d", self.client_ip, self.user, len(marked))
        if self._lease is not None:  # before +OK: a client that reconnects at once finds the maildrop free
            lease, self._lease = self._lease, None
            await self.locks.release(lease)
        await self._write(ok(f"{self.settings.hostname} Postern POP3 server signing off ({left} messages left)"))
        return Action.CLOSE
