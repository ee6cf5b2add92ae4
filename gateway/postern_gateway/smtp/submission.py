"""The submission role (RFC 6409): port 587 STARTTLS and 465 implicit TLS on AWS, 1587 locally.

In:   the same aiosmtpd hooks as the MX role, plus AUTH PLAIN (RFC 4616) and
      AUTH LOGIN, checked against the directory through
      :func:`postern_gateway.auth.authenticate` (argon2 off the loop, growing
      delay after each failure on the connection).
Out:  authenticated mail enters the same spool as inbound mail, with
      ``Envelope.auth_user`` set; recipients may be remote (the router sends
      them to the outbound queue). Message-ID and Date are added when missing
      by PREPENDING header lines; the rest of the message is byte-identical.
Fails: ``530 5.7.0`` MAIL (or RCPT/DATA) without AUTH: unauthenticated
      submission never relays; ``535 5.7.8`` bad credentials; ``538 5.7.11``
      AUTH before TLS unless ``allow_plaintext_auth`` (aiosmtpd's
      ``auth_require_tls``); ``553 5.7.1`` an envelope sender that is not one of
      the user's addresses or aliases; ``550 5.7.1`` a ``From:`` header naming
      an address the user does not own, and ``status.HEADER_REFUSED`` (also
      ``550 5.7.1``) a header section the one parser cannot read one way only
      (:func:`postern.mail.author.submission_problem`: a line that is not a
      field, a leading continuation line, not exactly one From:, a From:
      address without a domain); ``552 5.3.4`` a header section over 1 MiB; ``550 5.1.1``
      unknown local recipient; ``553 5.1.3`` a recipient we cannot deliver to;
      ``454 4.7.0`` directory failure during AUTH; ``421 4.7.0`` and the
      connection closed after ``MAX_AUTH_FAILURES`` failed AUTHs.

SCRAM-SHA-256 is not offered: the directory stores argon2id hashes and SCRAM
needs its own stored keys (RFC 5802 §3).
"""

from __future__ import annotations

import base64
import logging
import time

from aiosmtpd.smtp import MISSING, AuthResult

from postern import status
from postern.directory import Directory
from postern.errors import AuthLocked, TooManySessions
from postern.mail.author import author, submission_problem
from postern.status import Reply

from ..auth import FailureCounter, SaslError, authenticate, claim_session, decode_plain
from . import trace
from .checks import DataContext
from .handler import INVALID, UNKNOWN, PolicyHandler

log = logging.getLogger("postern.smtp.submission")

FROM_NOT_OWNED = Reply(550, "5.7.1", "From: header address not owned by authenticated user")
BAD_RCPT = Reply(553, "5.1.3", "Recipient address not deliverable")
HEADER_TOO_LARGE = Reply(552, "5.3.4", "Header block too large")
TOO_MANY_AUTH_FAILURES = Reply(421, "4.7.0", "Too many failed authentications, closing connection")
MAX_AUTH_FAILURES = 5  # per connection; each failure already costs a growing delay


class SubmissionHandler(PolicyHandler):
    role = "submission"

    # --- AUTH mechanisms (aiosmtpd calls handler.auth_<MECH>(server, args)) --
    async def auth_PLAIN(self, server, args: list[str]) -> AuthResult:
        if len(args) == 1:  # RFC 4954 §4: empty challenge, response on the next line
            blob = await server.challenge_auth("")
            if blob is MISSING:
                return AuthResult(success=False, handled=True)
            b64 = base64.b64encode(blob)
        else:
            b64 = args[1].encode("ascii", "replace")
        try:
            _, login, password = decode_plain(b64)
        except SaslError as exc:
            return AuthResult(success=False, handled=False, message=f"501 5.5.2 {exc}")
        return await self._check_credentials(server, login, password)

    async def auth_LOGIN(self, server, args: list[str]) -> AuthResult:
        if len(args) == 1:
            login = await server.challenge_auth("Username:")
        else:
            try:
                login = base64.b64decode(args[1], validate=True)
            except ValueError:
                return AuthResult(success=False, handled=False, message="501 5.5.2 Cannot decode base64")
        if login is MISSING:
            return AuthResult(success=False, handled=True)
        password = await server.challenge_auth("Password:")
        if password is MISSING:
            return AuthResult(success=False, handled=True)
        try:
            return await self._check_credentials(server, login.decode("utf-8"), password.decode("utf-8"))
        except UnicodeDecodeError:
            return AuthResult(success=False, handled=False, message="501 5.5.2 Credentials are not UTF-8")

    async def _check_credentials(self, server, login: str, password: str) -> AuthResult:
        session = server.session
        if session.auth_failures is None:
            session.auth_failures = FailureCounter()
        try:
            user = await authenticate(self.backend, login, password, client_ip=_ip(session), protocol="smtp",
                                      counter=session.auth_failures)
        except AuthLocked as exc:  # trust: postern.limits lockout, 454 4.7.0 with its reason
            return AuthResult(success=False, handled=False, message=exc.smtp_reply())
        except Exception:
            log.exception("directory failure during AUTH")
            return AuthResult(success=False, handled=False, message=str(status.AUTH_TEMP))
        if user is None:
            if session.auth_failures.failures >= MAX_AUTH_FAILURES:  # Postfix smtpd_hard_error_limit, for AUTH
                await server.push(str(TOO_MANY_AUTH_FAILURES))
                server.transport.close()
                return AuthResult(success=False, handled=True)
            return AuthResult(success=False, handled=False, message=str(status.AUTH_FAILED))
        try:
            server.hold_account_ticket(claim_session(self.backend, user.address, _ip(session), "smtp"))
        except TooManySessions as exc:
            return AuthResult(success=False, handled=False, message=exc.smtp_reply())
        session.own_addresses = None
        return AuthResult(success=True, auth_data=user, message=str(status.AUTH_OK))

    def authenticated_user(self, session) -> str | None:
        user = session.auth_data if session.authenticated else None
        return getattr(user, "address", None)

    async def _owned(self, session) -> set[str]:
        if session.own_addresses is None:
            user = self.authenticated_user(session)
            session.own_addresses = await self.call(self.backend.directory.addresses_of, user)
        return session.own_addresses

    async def _owns(self, session, address: str) -> bool:
        return Directory.owns(await self._owned(session), address)  # the one sender rule (JMAP's too)

    # --- policy ---------------------------------------------------------------
    async def mail_policy(self, server, session, envelope, sender: str) -> Reply | None:
        if self.authenticated_user(session) is None:
            return status.AUTH_REQUIRED
        if not sender or not await self._owns(session, sender):
            return status.SENDER_NOT_OWNED.with_text(
                f"Sender address <{sender}> not owned by {self.authenticated_user(session)}")
        return None

    async def rcpt_policy(self, server, session, envelope, rcpt: str) -> Reply | None:
        if self.authenticated_user(session) is None:
            return status.AUTH_REQUIRED  # never relay unauthenticated
        kind = await self.classify(rcpt)
        if kind == UNKNOWN:
            return status.NO_SUCH_USER.with_text(f"No such user here: <{rcpt}>")
        if kind == INVALID:
            return BAD_RCPT
        return None  # LOCAL or REMOTE (authenticated relay)

    async def data_policy(self, server, session, envelope, ctx: DataContext) -> Reply | None:
        if self.authenticated_user(session) is None:
            return status.AUTH_REQUIRED
        try:
            header = trace.read_header(ctx.raw)
        except trace.HeaderTooLarge:
            return HEADER_TOO_LARGE
        # the one parser decides what the header says (issue 11 finding 5): what is checked here is
        # what the recipient's reader, DKIM signing and IMAP's ENVELOPE will see
        who = author(header)
        problem = submission_problem(header, who)
        if problem is not None:
            return status.HEADER_REFUSED.with_text(f"Message header refused: {problem}")
        for mailbox in who.mailboxes:
            addr = mailbox.addr_spec
            if not await self._owns(session, addr):
                return FROM_NOT_OWNED.with_text(
                    f"From: header address <{addr}> not owned by {self.authenticated_user(session)}")
        ctx.raw, added = trace.complete_submission(ctx.raw, hostname=self.settings.hostname,
                                                   queue_id=ctx.queue_id, when=time.time(), header=header)
        if added:
            log.info("submission queue_id=%s added %s", ctx.queue_id, ",".join(added))
        return None


def _ip(session) -> str:
    peer = session.peer
    return str(peer[0]) if isinstance(peer, tuple) and peer else ""


