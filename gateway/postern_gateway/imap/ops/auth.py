"""CAPABILITY, LOGOUT, ID, STARTTLS, LOGIN, AUTHENTICATE (PLAIN, SASL-IR), ENABLE.

RFC 3501 §6.1-§6.2, RFC 4959 (SASL-IR), RFC 2971 (ID), RFC 5161 (ENABLE:
CONDSTORE and QRESYNC, RFC 7162).
Credentials are refused before TLS unless ``allow_plaintext_auth``
(LOGINDISABLED advertised). Failures cost the shared login delay
(``postern_gateway.auth.authenticate``). Passwords are never logged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ... import auth as shared_auth
from .. import parser as P
from .. import responses as R
from ..errors import BadCommand, NoCommand
from ..parser import Command
from . import OpResult

if TYPE_CHECKING:
    from ..session import Session


async def capability(s: Session, cmd: Command) -> OpResult:
    P.arity(cmd, 0)
    s.send(R.untagged(f"CAPABILITY {s.capabilities()}"))
    return "CAPABILITY completed"


async def logout(s: Session, cmd: Command) -> OpResult:
    P.arity(cmd, 0)
    s.send(R.untagged("BYE Logging out"))
    s.logout()
    return "LOGOUT completed"


async def id_(s: Session, cmd: Command) -> OpResult:
    P.arity(cmd, 1)
    arg = cmd.args[0]
    if not (isinstance(arg, list) or (isinstance(arg, str) and arg.upper() == "NIL")):
        raise BadCommand("ID expects a list or NIL")
    if isinstance(arg, list) and (len(arg) % 2 or len(arg) > 60):
        raise BadCommand("ID list must hold field/value pairs")
    s.send(R.untagged('ID ("name" "Postern" "vendor" "Postern" "support-url" "https://example.invalid/postern")'))
    return "ID completed"


async def starttls(s: Session, cmd: Command) -> OpResult:
    P.arity(cmd, 0)
    if s.ssl_context is None or s.tls:
        raise BadCommand("STARTTLS not available")
    s.send(R.tagged(cmd.tag, "OK", "Begin TLS negotiation now"))
    await s.flush()
    await s.start_tls()
    return None  # RFC 3501 §6.2.1: the client re-issues CAPABILITY after the handshake


def _require_privacy(s: Session) -> None:
    if not s.plaintext_ok:
        raise NoCommand("Plaintext authentication disallowed before STARTTLS", "PRIVACYREQUIRED")


async def _login_as(s: Session, username: str, password: str) -> OpResult:
    if s.fail_counter is None:
        s.fail_counter = shared_auth.FailureCounter()
    if len(username) > 320 or len(password) > 1024:
        user = None
    else:
        user = await shared_auth.authenticate(s.backend, username, password, client_ip=s.client_ip,
                                              protocol="imap", counter=s.fail_counter)
    if user is None:
        raise NoCommand("Invalid credentials", "AUTHENTICATIONFAILED")
    ticket = shared_auth.claim_session(s.backend, user.address, s.client_ip, "imap")  # NO [LIMIT] when over
    try:
        await s.backend.mail.ensure_defaults(user.address)
    except BaseException:
        ticket.release()
        raise
    s.logged_in(user, ticket)
    return ("OK", f"CAPABILITY {s.capabilities()}", "Logged in")


async def login(s: Session, cmd: Command) -> OpResult:
    P.arity(cmd, 2)
    _require_privacy(s)
    return await _login_as(s, P.text(cmd.args[0]), P.text(cmd.args[1]))


async def authenticate(s: Session, cmd: Command) -> OpResult:
    P.arity(cmd, 1, 2)
    mech = cmd.args[0]
    if not isinstance(mech, str) or mech.upper() != "PLAIN":
        raise NoCommand("Unsupported authentication mechanism", "CANNOT")
    _require_privacy(s)
    if len(cmd.args) == 2:  # RFC 4959 SASL-IR; "=" is an empty initial response
        resp = P.astring(cmd.args[1])
        resp = b"" if resp == b"=" else resp
    else:
        s.send(b"+ \r\n")
        await s.flush()
        resp = (await s.next_request()).strip()
    if resp == b"*":
        raise BadCommand("Authentication cancelled")  # RFC 3501 §6.2.2
    try:
        _, authcid, passwd = shared_auth.decode_plain(resp)
    except shared_auth.SaslError as exc:
        raise BadCommand(f"Invalid SASL response: {exc}") from None
    return await _login_as(s, authcid, passwd)


async def enable(s: Session, cmd: Command) -> OpResult:
    if not cmd.args:
        raise BadCommand("ENABLE needs capability names")
    done = []
    for a in cmd.args:
        if not isinstance(a, str):
            raise BadCommand("ENABLE takes atoms")
        cap = a.upper()
        if cap in ("CONDSTORE", "QRESYNC") and cap not in s.enabled:
            s.enabled.add(cap)
            s.enable_condstore()  # QRESYNC implies CONDSTORE (RFC 7162 §3.2.3)
            done.append(cap)
    s.send(R.untagged("ENABLED" + "".join(" " + d for d in done)))
    return "ENABLE completed"
