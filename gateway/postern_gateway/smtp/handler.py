"""Postern's SMTP policy as an aiosmtpd handler; the MX role (port 25, 2525 locally).

In:   aiosmtpd hook calls (``handle_MAIL``, ``handle_RCPT``, ``handle_DATA``...)
      from :class:`~postern_gateway.smtp.replies.PosternSMTP`, and a Backend
      (settings, directory, spooler, bounded executor).
Out:  replies, each a named :mod:`postern.status` reply with its enhanced code;
      at end of DATA the message is spooled (S3 then SQS, off the event loop)
      and answered ``250 2.0.0 queued as <id>``.
Fails: ``550 5.7.1`` relaying denied (recipient outside our domains),
      ``550 5.1.1`` unknown local user (at RCPT time, so we never bounce),
      ``452 4.5.3`` beyond ``max_recipients``, ``552 5.3.4`` over SIZE (MAIL
      parameter and actual data, enforced by aiosmtpd's ``data_size_limit``),
      ``451 4.3.0`` when the directory or the spool fails (nothing was
      enqueued, the client retries), ``554 5.6.0`` for a bare CR in DATA
      (RFC 5321 §2.3.8; a bare LF is accepted and stored as received),
      ``status.HEADER_REFUSED`` (``550 5.7.1``) on the MX port for more than one
      From: field or a From: without a readable address (RFC 7489 §6.6.1: what
      DMARC cannot judge is refused, :func:`postern.mail.author.mx_problem`).
      The null sender ``<>`` is accepted: bounces must reach us.

Mechanics shared with submission live in :class:`PolicyHandler`; a role
overrides :meth:`mail_policy`, :meth:`rcpt_policy` and :meth:`data_policy`.
Extra checks (trust: SPF/DKIM/DMARC, limits) plug in as ``checks=[...]``,
see :mod:`.checks`. The ``Received:`` line goes into ``Envelope.trace_headers``
(the store and deliver stages prepend it); S3 keeps the bytes as they arrived.
"""

from __future__ import annotations

import logging
import time

from postern import status
from postern.address import parse_address
from postern.canonical import has_bare_cr
from postern.directory import ItemCache
from postern.errors import InvalidAddress, PosternError
from postern.mail.author import mx_problem
from postern.mail.header import Header
from postern.routing import route
from postern.srs import Srs
from postern.srs import optional as srs_optional
from postern.status import Reply
from postern.verdicts import AuthFacts

from . import trace
from .checks import Check, DataContext
from .replies import EsmtpHandler
from .spool import new_queue_id

log = logging.getLogger("postern.smtp")

LOCAL, REMOTE, UNKNOWN, INVALID = "local", "remote", "unknown", "invalid"
RCPT_CACHE_TTL = 30.0  # seconds a recipient found LOCAL is believed without asking the directory again
RCPT_CACHE_SIZE = 10_000


def classify_recipient(directory, rcpt: str, srs_source=None) -> str:
    """Blocking (run through backend.run): one directory pass for one RCPT.

    LOCAL: resolves to something in our domains; UNKNOWN: in our domains but no
    such user (or not a mailbox we could have); REMOTE: a plain mailbox outside
    our domains; INVALID: outside our domains and not a plain mailbox either.
    ``srs_source()`` gives the :class:`postern.srs.Srs` (or None): an SRS address
    of ours is LOCAL only with a valid hash and age (a bounce to mail we forwarded).
    """
    srs = srs_source() if srs_source is not None and Srs.is_srs(rcpt) else None
    if srs is not None:
        domain = rcpt.rpartition("@")[2]
        try:
            local_domain = directory.get_domain(domain) is not None
        except InvalidAddress:
            return INVALID
        if not local_domain:
            return REMOTE
        return UNKNOWN if route([rcpt], directory, allow_remote=False, srs=srs).failed else LOCAL
    try:
        a = parse_address(rcpt)
    except InvalidAddress:
        domain = rcpt.rpartition("@")[2]
        return UNKNOWN if domain and directory.get_domain(domain) is not None else INVALID
    # One BatchGetItem for the domain, alias and user items (and the plus-base's) instead of a GetItem each.
    view = directory.prefetched([str(a)]) if hasattr(directory, "prefetched") else directory
    if view.get_domain(a.domain) is None:
        return REMOTE
    decision = route([str(a)], view, allow_remote=False)
    return UNKNOWN if decision.failed else LOCAL


def postmaster_address(directory, hostname: str) -> str | None:
    """Blocking: ``postmaster@`` the first local domain among our hostname and its parents."""
    labels = hostname.lower().strip(".").split(".")
    for i in range(len(labels) - 1):
        domain = ".".join(labels[i:])
        if directory.get_domain(domain) is not None:
            return f"postmaster@{domain}"
    return None


class BackendFailure(Exception):
    """Carries the reply for a failed directory/spool call."""

    def __init__(self, reply: Reply):
        super().__init__(str(reply))
        self.reply = reply


# Spool calls queued per bulk slot before a final dot is deferred (spool_backlog): a message waits
# for at most about this many calls ahead of it plus its own.
SPOOL_QUEUE_PER_SLOT = 4


class PolicyHandler(EsmtpHandler):
    """The transaction mechanics both roles share (state, limits, trace, spool)."""

    role = "mx"
    # NB: aiosmtpd treats every handler member named auth_* as an AUTH mechanism; name nothing else so.

    def __init__(self, backend, checks: list[Check] | tuple[Check, ...] = ()):
        self.backend = backend
        self.settings = backend.settings
        self.checks = list(checks)
        self._rcpt_cache = ItemCache(ttl=RCPT_CACHE_TTL, size=RCPT_CACHE_SIZE)  # lower-cased recipient -> LOCAL

    # --- role policy (overridden by roles) ---------------------------------
    async def mail_policy(self, server, session, envelope, sender: str) -> Reply | None:
        return None

    async def rcpt_policy(self, server, session, envelope, rcpt: str) -> Reply | None:
        return None

    async def data_policy(self, server, session, envelope, ctx: DataContext) -> Reply | None:
        return None

    # --- helpers -----------------------------------------------------------
    async def call(self, fn, *args):
        """A blocking directory/spool call off the loop; failures become BackendFailure(451/...)."""
        try:
            return await self.backend.run(fn, *args)
        except PosternError as exc:
            raise BackendFailure(exc.smtp if exc.smtp.transient else status.TEMP_BACKEND) from exc
        except Exception as exc:
            log.exception("backend call %s failed", getattr(fn, "__name__", fn))
            raise BackendFailure(status.TEMP_BACKEND) from exc

    def _srs(self):
        """Blocking: the SRS secrets (cached by postern.srs), or None when none are configured."""
        return srs_optional(self.settings, self.backend.clients)

    async def classify(self, rcpt: str) -> str:
        """:func:`classify_recipient` off the loop, with LOCAL answers cached for ``RCPT_CACHE_TTL``.

        Only positive answers are cached (Postfix proxymap does likewise): a user added a
        moment ago is never refused, a user removed a moment ago may still be accepted for
        the TTL and the router then reports the failure. Saves a DynamoDB read and an
        executor hop per recipient of a busy mailbox."""
        key = rcpt.lower()
        known, kind = self._rcpt_cache.lookup(key)
        if known:
            return kind
        kind = await self.call(classify_recipient, self.backend.directory, rcpt, self._srs)
        if kind == LOCAL:
            self._rcpt_cache.store(key, kind)
        return kind

    async def _run_checks(self, hook: str, *args) -> Reply | None:
        for check in self.checks:
            fn = getattr(check, hook, None)  # checks need not derive from Check
            verdict = await fn(*args) if fn is not None else None
            if verdict is not None:
                return verdict
        return None

    # --- aiosmtpd hooks ----------------------------------------------------
    async def handle_CONNECT(self, server, session) -> Reply | None:
        return await self._run_checks("on_connect", server, session)

    def handle_DISCONNECT(self, server) -> None:
        """Called once from ``connection_lost``; checks may free per-connection state (sync)."""
        for check in self.checks:
            hook = getattr(check, "on_disconnect", None)
            if hook is not None:
                try:
                    hook(server)
                except Exception:  # noqa: BLE001 - never break connection teardown
                    log.exception("check on_disconnect failed")

    async def handle_exception(self, error: Exception) -> str:
        if isinstance(error, BackendFailure):
            return str(error.reply)
        log.exception("SMTP session error", exc_info=error)
        return str(status.TEMP_BACKEND.with_text("Temporary internal error, try again later"))

    async def handle_MAIL(self, server, session, envelope, address: str, mail_options: list[str]) -> str:
        busy = self.spool_backlog()
        if busy is not None:
            return str(busy)
        sender = server.parsed_path if server.parsed_path is not None else address
        if sender == "<>":
            sender = ""
        try:
            verdict = await self.mail_policy(server, session, envelope, sender)
            verdict = verdict or await self._run_checks("on_mail", server, session, envelope, sender)
        except Exception as exc:
            verdict = _failure_reply(exc, "MAIL")
        if verdict is not None:
            return str(verdict)
        envelope.mail_from = address  # aiosmtpd's own record ("<>" for the null path)
        envelope.mail_options.extend(mail_options)
        envelope.sender = sender
        return str(status.SENDER_OK)

    def spool_backlog(self, at_data: bool = False) -> Reply | None:
        """451 4.3.2 when the oldest spool call under way (queued for a slot or running) started
        POSTERN_SPOOL_MAX_WAIT ago: a new transaction would wait about that long after its final dot,
        and past the sender's timeout
        the message is neither accepted nor refused (`make load`: 200 sessions offering more mail than
        the backend took waited 38 s at the median, and timed out). Refusing MAIL costs the sender no
        upload; it keeps the message and retries (RFC 5321 §4.2.5); nothing is taken that is not
        spooled.

        ``at_data`` (the final dot, before spooling): also when SPOOL_QUEUE_PER_SLOT times the lane's
        slots are already queued. The lag rule reacts to what has waited; many transactions that
        passed MAIL together (200 sessions starting at once) would all queue behind each other and
        wait past the sender's timeout: this bounds a message's wait to about SPOOL_QUEUE_PER_SLOT + 1
        spool calls."""
        limit = self.settings.spool_max_wait
        blocking = getattr(self.backend, "blocking", None)
        if limit <= 0 or blocking is None:
            return None
        lag = blocking.bulk_wait()
        queued = blocking.bulk_queued()
        if lag < limit and not (at_data and queued >= SPOOL_QUEUE_PER_SLOT * blocking.bulk_threads):
            return None
        log.info("spool lane %.1f s behind, %d queued: %s deferred (451 4.3.2)", lag, queued,
                 "DATA" if at_data else "MAIL")
        return status.SPOOL_BUSY

    async def handle_RCPT(self, server, session, envelope, address: str, rcpt_options: list[str]) -> str:
        rcpt = server.parsed_path if server.parsed_path is not None else address
        if rcpt.lower() == "postmaster":  # RFC 5321 §4.1.1.3: <Postmaster> without a domain must be accepted
            try:
                rcpt = await self.call(postmaster_address, self.backend.directory, self.settings.hostname)
            except BackendFailure as exc:
                return str(exc.reply)
            if rcpt is None:
                return str(status.NO_SUCH_USER.with_text("No postmaster domain configured here"))
        if rcpt in envelope.rcpt_tos:
            return str(status.RCPT_OK.with_text("Recipient OK (duplicate)"))
        if len(envelope.rcpt_tos) >= self.settings.max_recipients:
            return str(status.TOO_MANY_RECIPIENTS)  # RFC 5321 §4.5.3.1.10: 452, client retries the rest later
        try:
            verdict = await self.rcpt_policy(server, session, envelope, rcpt)
            verdict = verdict or await self._run_checks("on_rcpt", server, session, envelope, rcpt)
        except Exception as exc:
            verdict = _failure_reply(exc, "RCPT")
        if verdict is not None:
            return str(verdict)
        envelope.rcpt_tos.append(rcpt)
        envelope.rcpt_options.extend(rcpt_options)
        return str(status.RCPT_OK)

    async def handle_DATA(self, server, session, envelope) -> str:
        if has_bare_cr(envelope.original_content):  # two C-speed counts: cheap even at 25 MiB
            log.info("refused DATA with a bare CR from %s", _peer_ip(session))
            return str(status.BARE_CR)
        now = time.time()
        queue_id = new_queue_id()
        auth_user = self.authenticated_user(session)
        ctx = DataContext(
            raw=envelope.original_content,
            queue_id=queue_id,
            sender=envelope.sender or "",
            recipients=tuple(envelope.rcpt_tos),
            client_ip=_peer_ip(session),
            helo=session.host_name or "",
            auth_user=auth_user,
        )
        try:
            verdict = await self.data_policy(server, session, envelope, ctx)
            verdict = verdict or await self._run_checks("on_data", server, session, envelope, ctx)
        except Exception as exc:  # answered here so aiosmtpd still resets the transaction after DATA
            verdict = _failure_reply(exc, "DATA")
        if verdict is not None:
            return str(verdict)
        utf8 = bool(envelope.smtp_utf8)
        received = trace.received(
            hostname=self.settings.hostname, client_ip=ctx.client_ip, helo=ctx.helo, queue_id=queue_id,
            when=now, recipients=ctx.recipients, esmtp=session.extended_smtp, tls=session.tls,
            tls_info=session.tls_info, auth=auth_user is not None, utf8=utf8,
        )
        fields = dict(
            queue_id=queue_id,
            mail_from=ctx.sender,
            rcpt_to=ctx.recipients,
            received_at=now,
            client_ip=ctx.client_ip,
            helo=ctx.helo,
            tls=session.tls,
            auth_user=auth_user,
            trace_headers="".join(ctx.trace) + received,
            junk=ctx.junk,
            # the MX's checks; for authenticated submission the login vouches for the (own) sender
            auth=AuthFacts(submitted=True).to_dict() if auth_user is not None else ctx.auth,
            spam=ctx.spam,
            smtputf8=utf8,
            body_8bit="BODY=8BITMIME" in envelope.mail_options,
        )
        spooler = self.backend.spooler
        if spooler is None:
            log.error("no spooler configured; deferring queue_id=%s", queue_id)
            return str(status.TEMP_BACKEND)
        busy = self.spool_backlog(at_data=True)
        if busy is not None:
            return str(busy)
        try:
            env = await self.backend.run_bulk(spooler.spool, ctx.raw, **fields)  # blocking.py: keeps threads for logins
        except Exception as exc:  # StoreUnavailable or anything else: nothing is queued, client retries
            log.warning("spool failed queue_id=%s: %s", queue_id, exc)
            return str(status.TEMP_BACKEND)
        log.info("accepted queue_id=%s role=%s from=<%s> rcpts=%d size=%d ip=%s", env.queue_id, self.role,
                 ctx.sender, len(ctx.recipients), env.size, ctx.client_ip)
        return str(status.QUEUED.with_text(f"queued as {env.queue_id}"))

    def authenticated_user(self, session) -> str | None:
        return None


class MXHandler(PolicyHandler):
    """Port 25: mail for our domains from anyone; no relaying, no AUTH."""

    role = "mx"

    async def rcpt_policy(self, server, session, envelope, rcpt: str) -> Reply | None:
        kind = await self.classify(rcpt)
        if kind in (REMOTE, INVALID):
            return status.RELAY_DENIED
        if kind != LOCAL:
            return status.NO_SUCH_USER.with_text(f"No such user here: <{_printable(rcpt)}>")
        return None

    async def data_policy(self, server, session, envelope, ctx: DataContext) -> Reply | None:
        # The one parser decides who the author is, for DMARC (trust/authres.py) and for IMAP's
        # ENVELOPE alike; what DMARC could not judge is refused (RFC 7489 §6.6.1), so a second
        # From: (or one only another parser reads) cannot carry a forged author past it.
        problem = mx_problem(Header(ctx.raw))
        if problem is None:
            return None
        log.info("refused queue_id=%s ip=%s: %s", ctx.queue_id, ctx.client_ip, problem)
        return status.HEADER_REFUSED.with_text(f"Message header refused: {problem}")


def _failure_reply(exc: Exception, stage: str) -> Reply:
    """A policy step or check that failed: defer (451/454...), never accept unchecked."""
    if isinstance(exc, BackendFailure):
        return exc.reply
    log.error("%s policy/check failed: %r", stage, exc, exc_info=exc)
    return status.TEMP_BACKEND


def _peer_ip(session) -> str:
    peer = session.peer
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer or "")


def _printable(s: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in s)[:256]
