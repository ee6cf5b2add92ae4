"""The one place where Postern bends aiosmtpd: a thin ``aiosmtpd.smtp.SMTP`` subclass.

In:   an aiosmtpd handler (``handler.MXHandler`` / ``submission.SubmissionHandler``)
      and aiosmtpd's own constructor arguments, plus ``sessions`` (the listener's
      live-session cap) and ``implicit_tls``.
Out:  :class:`PosternSMTP`, the protocol object ``server.start_smtp`` creates per
      connection, and the pure :func:`enhance` used by its ``push``.
Fails: nothing of its own; handlers' replies pass through unchanged.

Why a subclass and what it changes (everything else is aiosmtpd 1.4.6 as shipped):

(a) Enhanced status codes (RFC 2034, RFC 3463). aiosmtpd writes every reply
    through ``SMTP.push`` and most of its built-in replies have no enhanced
    code. ``push`` rewrites them with :data:`REPLIES`, a table from aiosmtpd's
    reply texts to codes (a few are replaced outright, e.g. SIZE refusals become
    ``552 5.3.4``); anything unknown gets the class default ``X.0.0``. Replies
    that already carry a code (all of Postern's own) pass unchanged. Not coded,
    as RFC 2034 §3 and common practice have it: the 220 greeting, the 250 lines
    answering EHLO/HELO, 354 and 334 continuations.
(b) EHLO keywords. aiosmtpd advertises SIZE, 8BITMIME, SMTPUTF8 and STARTTLS
    itself but not PIPELINING (RFC 2920) or ENHANCEDSTATUSCODES (RFC 2034):
    :meth:`EsmtpHandler.handle_EHLO` (aiosmtpd's 5-argument EHLO hook, which
    receives the response lines) adds them and drops AUTH where it is not offered.
(c) DATA ends only on CRLF "." CRLF (RFC 5321 §4.1.1.4, §2.3.8). aiosmtpd 1.4.5
    fixed SMTP smuggling (GHSA-pr2m-px7j-xg65): DATA is read with
    ``readuntil(b"\\r\\n")`` and only the exact line ``b".\\r\\n"`` ends it, so
    ``\\n.\\n``, ``\\n.\\r\\n`` and ``\\r\\n.\\n`` stay message content and commands
    after them are never executed. We do not re-implement DATA: we refuse to run
    on an aiosmtpd older than 1.4.5 (:data:`MIN_AIOSMTPD`), and the protocol tests
    pin the behaviour. A bare CR anywhere in DATA is refused (``status.BARE_CR``,
    in ``handler.PolicyHandler.handle_DATA``), as Postfix's
    ``smtpd_forbid_bare_newline`` refuses a bare LF. A bare LF is accepted and
    stored exactly as received; smtplib does NOT re-terminate lines or stuff
    dots after a bare CR for bytes, so outbound mail is made canonical (CRLF,
    dot-stuffed) by :mod:`postern.canonical` before any transport sees it.
(d) Strict paths. aiosmtpd parses MAIL/RCPT addresses with the email package's
    lenient header parser (``MAIL FROM:<unterminated`` becomes ``unterminated``).
    ``smtp_MAIL``/``smtp_RCPT`` first check the path with :mod:`.paths` and answer
    ``501 5.1.7`` / ``501 5.1.3``; a non-ASCII path without SMTPUTF8 gets
    ``553 5.6.7`` (RFC 6531 §3.4). MAIL's ``AUTH=`` parameter (RFC 4954 §5), which
    aiosmtpd does not know, is accepted and ignored. VRFY never reaches the stdlib's
    lenient parser: it verifies nothing anyway (RFC 5321 §3.5.3, §7.3), and that parser raised
    IndexError on ``VRFY <`` and AttributeError on other shapes (found by the long fuzz run), an
    internal error per command; :meth:`PosternSMTP.smtp_VRFY` answers 252 to any argument, and
    ``_getaddr`` (still used by MAIL/RCPT after the strict check) reads such a raise as no address.

Also here, because they are per-connection protocol matters: a cap on live
sessions (``421 4.3.2`` to the extra connection), an idle timer that every
completed line resets (aiosmtpd only resets it per command, which would cut a
slow DATA upload; a byte-trickling client still times out) and that says
``421 4.4.2`` before closing, implicit TLS
(port 465) recognised as TLS, a per-instance command-size table (aiosmtpd keeps
it on the class, shared by every session), and a connect hook
(``handler.handle_CONNECT(server, session)`` may return a refusal instead of
the greeting) and a disconnect hook (``handler.handle_DISCONNECT(server)``) for
the trust checks, and the pre-login byte budget of submission (``421 4.7.0`` and close past
``preauth_max_bytes`` before AUTH succeeds; postern_gateway.preauth). When the gateway stops
(``seats``: postern_gateway.sessions) a session between commands gets ``421 4.3.2`` and is
closed at once; one in the middle of a command (a DATA being received or spooled) is closed
right after that command's reply (RFC 5321 §3.8).
"""

from __future__ import annotations

import collections
import functools
import logging
import re
from importlib.metadata import version

from aiosmtpd.smtp import SMTP, Envelope, Session

from postern.status import Reply

from ..preauth import EXCEEDED, PreauthBudget
from .paths import PathError, parse_path

log = logging.getLogger("postern.smtp")

MIN_AIOSMTPD = (1, 4, 5)  # first release that ends DATA only on CRLF.CRLF (SMTP smuggling fix)


def _check_aiosmtpd() -> None:
    parts = tuple(int(p) for p in re.findall(r"\d+", version("aiosmtpd"))[:3])
    if parts < MIN_AIOSMTPD:
        raise RuntimeError(f"aiosmtpd {version('aiosmtpd')} is vulnerable to SMTP smuggling; need >= 1.4.5")


_check_aiosmtpd()

_TOO_BIG = "Message size exceeds fixed maximum message size"

# (verb or None, code, text prefix) -> (new code or None, enhanced code, new text or None).
# First match wins; verb-specific rows come first. Texts are aiosmtpd 1.4.6's.
REPLIES: list[tuple[str | None, str, str, tuple[str | None, str, str | None]]] = [
    ("MAIL", "553", "5.1.3 Error: malformed address", ("501", "5.1.7", "Bad sender address syntax")),
    ("RCPT", "553", "5.1.3 Error: malformed address", ("501", "5.1.3", "Bad recipient address syntax")),
    ("MAIL", "501", "Syntax:", (None, "5.5.4", None)),
    ("RCPT", "501", "Syntax:", (None, "5.5.4", None)),
    (None, "552", "Error: message size exceeds fixed maximum", (None, "5.3.4", _TOO_BIG)),
    (None, "552", "Error: Too much mail data", (None, "5.3.4", _TOO_BIG)),
    (None, "500", "Line too long", (None, "5.5.2", None)),
    (None, "500", "Command line too long", (None, "5.5.2", None)),
    (None, "500", "Error: bad syntax", (None, "5.5.2", None)),
    (None, "500", "Error: strict ASCII mode", (None, "5.6.7", None)),
    (None, "500", "Error: command", (None, "5.5.1", None)),  # "command "X" not recognized"
    (None, "502", "EXPN not implemented", (None, "5.5.1", None)),
    (None, "502", "Could not VRFY", (None, "5.5.4", None)),
    (None, "503", "Error: send", (None, "5.5.1", None)),  # "send HELO first"
    (None, "503", "Error: nested MAIL command", (None, "5.5.1", None)),
    (None, "503", "Error: need MAIL command", (None, "5.5.1", None)),
    (None, "503", "Error: need RCPT command", (None, "5.5.1", None)),
    (None, "503", "Already authenticated", (None, "5.5.1", None)),
    (None, "501", "Syntax:", (None, "5.5.4", None)),
    (None, "501", "Error: BODY can only be", (None, "5.5.4", None)),
    (None, "501", "Error: SMTPUTF8", (None, "5.5.4", None)),
    (None, "501", "Not enough value", (None, "5.5.4", None)),
    (None, "501", "Too many values", (None, "5.5.4", None)),
    (None, "501", "Supported commands", (None, "5.5.4", None)),
    (None, "555", "", (None, "5.5.4", None)),  # MAIL/RCPT parameters not recognized
    (None, "530", "Must issue a STARTTLS command first", (None, "5.7.0", None)),
    (None, "554", "Command refused due to lack of security", (None, "5.7.0", None)),
    (None, "454", "TLS not available", (None, "4.7.0", None)),
    (None, "252", "", (None, "2.0.0", None)),  # VRFY: cannot verify, will attempt
    (None, "220", "Ready to start TLS", (None, "2.0.0", None)),
    (None, "221", "", (None, "2.0.0", None)),
    (None, "250", "", (None, "2.0.0", None)),
]

_LINE = re.compile(r"(\d{3})([ -])(.*)", re.S)
_HAS_CODE = re.compile(r"[245]\.\d{1,3}\.\d{1,3}(?: |$)")
_UNCODED = {"354", "334"}  # continuations carry no enhanced code


def enhance(line: str, verb: str | None = None) -> str:
    """Give one reply line its RFC 3463 enhanced code (pure; see module docstring (a))."""
    m = _LINE.fullmatch(line)
    if m is None:
        return line
    code, sep, text = m.groups()
    if code in _UNCODED or code[0] not in "245":
        return line
    coded = _HAS_CODE.match(text) is not None  # ours, or one of aiosmtpd's few coded replies
    for row_verb, row_code, prefix, (new_code, enhanced, new_text) in REPLIES:
        if coded and not prefix[:1].isdigit():
            continue  # only rows written for an already-coded text may rewrite one
        if row_code == code and (row_verb is None or row_verb == verb) and text.startswith(prefix):
            code = new_code or code
            text = new_text if new_text is not None else text
            break
    else:
        if coded:
            return line
        enhanced = f"{code[0]}.0.0"
    return f"{code}{sep}{enhanced} {text}".rstrip(" ")


class PosternSession(Session):
    """aiosmtpd's Session plus what Postern policy keeps per connection."""

    def __init__(self, loop):
        super().__init__(loop)
        self.tls = False  # TLS in force (STARTTLS done or implicit TLS)
        self.tls_version = ""  # e.g. "TLSv1.3", from the handshake
        self.tls_cipher = ""  # e.g. "TLS_AES_256_GCM_SHA384" ("unknown" when the SSL object has none)
        self.auth_failures = None  # postern_gateway.auth.FailureCounter, set by the submission handler
        self.own_addresses = None  # cached directory.addresses_of(user) after AUTH

    @property
    def tls_info(self) -> str:
        """The TLS parameters as Received's comment gives them ("" before TLS)."""
        return f"{self.tls_version} with cipher {self.tls_cipher}" if self.tls_version else ""


class PosternEnvelope(Envelope):
    """aiosmtpd's Envelope plus the strictly parsed sender ("" for the null path <>)."""

    def __init__(self):
        super().__init__()
        self.sender: str | None = None


class SessionSet:
    """The live sessions of one listener, capped at ``limit`` (POSTERN_MAX_SESSIONS)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.live: set[PosternSMTP] = set()

    def acquire(self, proto: PosternSMTP) -> bool:
        if self.limit and len(self.live) >= self.limit:
            return False
        self.live.add(proto)
        return True

    def release(self, proto: PosternSMTP) -> None:
        self.live.discard(proto)

    def close_all(self) -> None:
        for proto in list(self.live):
            if proto.transport is not None:
                proto.transport.close()


TOO_BUSY_LINE = b"421 4.3.2 Too many connections, try again later\r\n"
SHUTDOWN_LINE = b"421 4.3.2 Service shutting down, try again later\r\n"
TIMEOUT_LINE = b"421 4.4.2 Idle timeout, closing connection\r\n"
PREAUTH_LINE = f"421 4.7.0 {EXCEEDED}\r\n".encode()
AUTH_NOT_ENABLED = Reply(503, "5.5.1", "Error: authentication not enabled")
CONNECT_CHECK_FAILED = Reply(421, "4.3.0", "Temporary failure, try again later")


class PosternSMTP(SMTP):
    """aiosmtpd's SMTP with the changes listed in the module docstring, nothing more."""

    def __init__(self, handler, *, sessions: SessionSet | None = None, implicit_tls: bool = False,
                 offers_auth: bool = False, preauth_max_bytes: int = 0, seats=None, protocol: str = "smtp",
                 **kwargs):
        # aiosmtpd keeps command_size_limits on the class and grows it on every EHLO of
        # every session; give each connection its own table.
        self.command_size_limits = collections.defaultdict(lambda: SMTP.command_size_limit)
        self._sessions = sessions
        self.implicit_tls = implicit_tls
        self.offers_auth = offers_auth
        self._verb: str | None = None
        self._greeted = False
        self._refused = False
        self._disconnected = False
        self._helo_reply = False
        self.parsed_path: str | None = None  # the strictly parsed path of the current MAIL/RCPT
        # Submission: bytes before AUTH succeeds, across STARTTLS (postern_gateway.preauth).
        self.preauth = PreauthBudget(preauth_max_bytes if offers_auth else 0)
        self._account_ticket = None  # the logged-in account's session slot (postern.limits)
        self._seats = seats  # postern_gateway.sessions.Sessions: counted, told 421 when the gateway stops
        self._protocol = protocol
        self._seat = None
        self._busy = False  # inside a command (DATA included): leave only after its reply
        super().__init__(handler, **kwargs)
        self._smtp_methods = {verb: self._tracked(fn) for verb, fn in self._smtp_methods.items()}

    def _tracked(self, method):
        @functools.wraps(method)
        async def run(arg):
            self._busy = True
            try:
                return await method(arg)
            finally:
                self._busy = False
                if self._seat is not None and self._seat.leaving:
                    self._goodbye()

        return run

    def _leave(self) -> None:
        """The gateway is stopping (postern_gateway.sessions): goodbye now, or after the current command."""
        if not self._busy:
            self._goodbye()

    def _goodbye(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(SHUTDOWN_LINE)  # RFC 5321 §3.8
            self.transport.close()

    # --- connection life cycle -------------------------------------------
    def _create_session(self) -> PosternSession:
        return PosternSession(self.loop)

    def _create_envelope(self) -> PosternEnvelope:
        return PosternEnvelope()

    def connection_made(self, transport) -> None:
        first = self.transport is None and self._original_transport is None
        if first and self._sessions is not None and not self._sessions.acquire(self):
            self._refused = True  # RFC 5321 §3.1: 421 instead of the greeting
            transport.write(TOO_BUSY_LINE)
            transport.close()
            return
        super().connection_made(transport)
        if first and self.implicit_tls:
            self._mark_tls(transport)
        if first and self._seats is not None:
            self._seat = self._seats.join(self._protocol, on_leave=self._leave)

    def _mark_tls(self, transport) -> None:
        assert self.session is not None
        self.session.tls = True
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            cipher = ssl_object.cipher()
            self.session.tls_version = ssl_object.version() or ""
            self.session.tls_cipher = cipher[0] if cipher else "unknown"

    def hold_account_ticket(self, ticket) -> None:
        """Keep the authenticated account's session slot until the connection ends (a second
        AUTH after STARTTLS gives back the first)."""
        if self._account_ticket is not None:
            self._account_ticket.release()
        self._account_ticket = ticket

    def connection_lost(self, error) -> None:
        if self._refused:
            return
        if self._account_ticket is not None:
            self._account_ticket.release()
            self._account_ticket = None
        if self._sessions is not None:
            self._sessions.release(self)
        if self._seat is not None:
            self._seat.release()
            self._seat = None
        hook = getattr(self.event_handler, "handle_DISCONNECT", None)  # trust: release per-IP slots
        if hook is not None and not self._disconnected:  # aiosmtpd may call this twice after a failed STARTTLS
            self._disconnected = True
            hook(self)
        super().connection_lost(error)

    def eof_received(self):
        if self._refused:
            return False
        return super().eof_received()

    def data_received(self, data: bytes) -> None:
        # Idle means no complete line (trust: Postfix's smtpd_per_record_deadline): a command or DATA
        # line must arrive whole within the timeout, so a client trickling one byte a second cannot
        # hold the session; a slow DATA upload still completes lines and is never cut
        # (RFC 5321 §4.5.3.2.5/.6 timeouts apply per line).
        if self._timeout_handle is not None and b"\n" in data:
            self._reset_timeout()
        if self.preauth.active:
            if self.session is not None and self.session.authenticated:
                self.preauth.done()
            elif not self.preauth.spend(len(data)):
                if self.transport is not None:  # as aiosmtpd's own command-call limit: 421, close
                    self.transport.write(PREAUTH_LINE)
                    self.transport.close()
                return
        super().data_received(data)

    def _timeout_cb(self):
        if self.transport is not None:
            self.transport.write(TIMEOUT_LINE)  # RFC 5321 §4.5.3.2: say why before closing
        super()._timeout_cb()

    @property
    def tls_active(self) -> bool:
        return self.implicit_tls or self._tls_protocol is not None

    # --- replies -------------------------------------------------------------
    async def push(self, status) -> None:
        if not self._greeted:
            self._greeted = True
            hook = getattr(self.event_handler, "handle_CONNECT", None)
            try:
                refusal = await hook(self, self.session) if hook is not None else None
            except Exception:  # a broken check defers the client, never lets it in unchecked
                log.exception("connect check failed")
                refusal = CONNECT_CHECK_FAILED
            if refusal:
                await super().push(str(refusal))
                assert self.transport is not None
                self.transport.close()
                return
        elif isinstance(status, str) and not (self._helo_reply and status.startswith("250")):
            status = enhance(status, self._verb)
        if isinstance(status, str):
            # aiosmtpd echoes client text in some replies (e.g. "502 Could not VRFY <arg>"); bytes that
            # were not UTF-8 arrive as surrogates and made push() raise (found by trust's fuzzing).
            status = status.encode("utf-8", "replace").decode("utf-8")
        await super().push(status)

    # --- commands Postern adjusts ---------------------------------------------
    @functools.wraps(SMTP.smtp_EHLO, assigned=())  # keep aiosmtpd's HELP syntax attributes
    async def smtp_EHLO(self, hostname: str):
        self._helo_reply = True
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._helo_reply = False

    @functools.wraps(SMTP.smtp_HELO, assigned=())  # keep aiosmtpd's HELP syntax attributes
    async def smtp_HELO(self, hostname: str):
        self._helo_reply = True
        try:
            await super().smtp_HELO(hostname)
        finally:
            self._helo_reply = False

    @functools.wraps(SMTP.smtp_STARTTLS, assigned=())  # keep aiosmtpd's HELP syntax attributes
    async def smtp_STARTTLS(self, arg: str):
        await super().smtp_STARTTLS(arg)
        if self._tls_protocol is not None and self.transport is not None and self.session is not None:
            self._mark_tls(self.transport)  # connection_made made a fresh session (RFC 3207 §4.2)

    @functools.wraps(SMTP.smtp_AUTH, assigned=())  # keep aiosmtpd's HELP syntax attributes
    async def smtp_AUTH(self, arg: str) -> None:
        if not self.offers_auth:
            await self.push(str(AUTH_NOT_ENABLED))
            return
        self._verb = "AUTH"
        try:
            await super().smtp_AUTH(arg)
        finally:
            self._verb = None

    smtp_AUTH.__smtp_syntax_when__ = "offers_auth"  # HELP lists AUTH only where it is offered

    @functools.wraps(SMTP.smtp_MAIL, assigned=())  # keep aiosmtpd's HELP syntax attributes
    async def smtp_MAIL(self, arg: str | None) -> None:
        await self._with_path("MAIL", "FROM:", arg, super().smtp_MAIL)

    @functools.wraps(SMTP.smtp_RCPT, assigned=())  # keep aiosmtpd's HELP syntax attributes
    async def smtp_RCPT(self, arg: str | None) -> None:
        await self._with_path("RCPT", "TO:", arg, super().smtp_RCPT)

    async def _with_path(self, verb: str, keyword: str, arg: str | None, delegate) -> None:
        self._verb = verb
        self.parsed_path = None
        try:
            assert self.session is not None and self.envelope is not None
            ready = self.session.host_name and (verb == "MAIL" or self.envelope.mail_from)
            if ready and arg is not None and arg[: len(keyword)].upper() == keyword:
                reverse = verb == "MAIL"
                try:
                    mailbox, params = parse_path(arg[len(keyword):], reverse=reverse)
                except PathError as exc:
                    code = "5.1.7" if reverse else "5.1.3"  # RFC 3463 bad sender / destination syntax
                    what = "sender" if reverse else "recipient"
                    await self.push(f"501 {code} Bad {what} address syntax: {exc}")
                    return
                utf8 = "SMTPUTF8" in params.upper().split() if reverse else self.envelope.smtp_utf8
                if not mailbox.isascii() and not utf8:
                    await self.push("553 5.6.7 Non-ASCII address requires SMTPUTF8")  # RFC 6531 §3.4
                    return
                self.parsed_path = mailbox
                if reverse:
                    arg = _drop_auth_param(arg, params)
            await delegate(arg)
        finally:
            self._verb = None

    @functools.wraps(SMTP.smtp_VRFY, assigned=())  # keep aiosmtpd's HELP syntax attributes
    async def smtp_VRFY(self, arg: str | None) -> None:
        if await self.check_auth_needed("VRFY"):
            return
        if not arg:
            await self.push("501 Syntax: VRFY <address>")
            return
        # RFC 5321 §3.5.3: 252, we neither confirm nor deny (and never parse the argument).
        await self.push("252 Cannot VRFY user, but will accept message and attempt delivery")

    def _getaddr(self, arg: str):
        """aiosmtpd's address reader (MAIL/RCPT). A path :mod:`.paths` has already accepted for this
        command is read by that same strict grammar again (a regular expression), not by the stdlib
        header parser under aiosmtpd's reader, which cost more gateway CPU per message than the
        rest of MAIL and RCPT (bench/smtp_ingest.py); the handler uses ``parsed_path`` anyway. Anything
        else goes to aiosmtpd's reader, whose parser raises on some shapes: that is no address,
        never an internal error."""
        if self.parsed_path is not None and self._verb in ("MAIL", "RCPT"):
            try:
                mailbox, rest = parse_path(arg, reverse=self._verb == "MAIL")
            except PathError:
                pass
            else:
                return (mailbox or "<>"), rest  # aiosmtpd's reader gives "<>" for the null path too
        try:
            return super()._getaddr(arg)
        except (IndexError, AttributeError):
            return None, None


def _drop_auth_param(arg: str, params: str) -> str:
    """Remove ``AUTH=...`` from MAIL's parameters: RFC 4954 §5 says a server offering AUTH must
    accept it (and may ignore it, as we do: the session's own AUTH decides); aiosmtpd would answer 555."""
    tokens = params.split()
    kept = [t for t in tokens if not t.upper().startswith("AUTH=")]
    if len(kept) == len(tokens):
        return arg
    head = arg.rstrip(" ")
    head = head[: len(head) - len(params)].rstrip(" ")
    return " ".join([head, *kept])


class EsmtpHandler:
    """Base of Postern's aiosmtpd handlers: the EHLO keyword list (module docstring (b))."""

    extra_keywords = ("PIPELINING", "ENHANCEDSTATUSCODES")

    async def handle_EHLO(self, server: PosternSMTP, session, envelope, hostname: str, responses: list[str]):
        session.host_name = hostname  # aiosmtpd leaves this to a 5-argument hook
        lines = [r for r in responses if not (r.startswith("250-AUTH") and not server.offers_auth)]
        lines = [r for r in lines if r != "250 HELP"]  # HELP is a command, not an extension
        keywords = {line[4:].split(" ", 1)[0].upper() for line in lines[1:]}
        lines += [f"250-{k}" for k in self.extra_keywords if k not in keywords]
        last = lines[-1]
        lines[-1] = "250 " + last[4:]
        return lines
