"""CAPABILITY, NOOP, LOGOUT, STARTTLS, AUTHENTICATE (PLAIN), UNAUTHENTICATE (RFC 5804 §2.1-§2.4, §2.14).

Credentials are refused before TLS unless ``allow_plaintext_auth`` (``NO (ENCRYPT-NEEDED)``,
and the ``SASL`` capability is empty until then), as IMAP's LOGINDISABLED. The check, its
delay, the lockout, the canonical account name and the per-account session cap are the
gateway's shared ones (:mod:`postern_gateway.auth`). Passwords are never logged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ... import auth as shared_auth
from .. import wire
from ..reader import Str
from ..wire import Bad, SieveProtocolError
from . import arity, raw, text

if TYPE_CHECKING:
    from ..session import Session


async def capability(s: Session, args: tuple) -> bytes:
    arity(args, 0)
    s.send_capabilities()
    return wire.ok("Capability completed")


async def noop(s: Session, args: tuple) -> bytes:
    arity(args, 0, 1)
    if args:  # §2.13: the string comes back in a TAG response code
        return wire.ok("Done", "TAG", text(args[0]))
    return wire.ok("Done")


async def logout(s: Session, args: tuple) -> bytes:
    arity(args, 0)
    s.logout()
    return wire.ok("Logout completed")


async def starttls(s: Session, args: tuple) -> None:
    arity(args, 0)
    if s.ssl_context is None or s.tls:
        raise Bad("STARTTLS not available")
    s.send(wire.ok("Begin TLS negotiation now"))
    await s.flush()
    await s.start_tls()
    # §2.2: after the handshake the server MUST re-issue the capabilities, then OK.
    s.send_capabilities()
    s.send(wire.ok("TLS negotiation successful"))
    return None


async def _sasl_response(s: Session) -> bytes:
    """§2.1: an empty challenge (PLAIN has none), then the client's string; ``"*"`` cancels."""
    s.send(wire.string(b"") + wire.CRLF)
    await s.flush()
    cmd = await s.next_command()
    if len(cmd.tokens) != 1 or not isinstance(cmd.tokens[0], Str):
        raise Bad("Expected a SASL response string")
    resp = cmd.tokens[0].value
    if resp.strip() == b"*":
        raise SieveProtocolError("Authentication cancelled")
    return resp


async def authenticate(s: Session, args: tuple) -> bytes:
    arity(args, 1, 2)
    if text(args[0]).upper() != "PLAIN":
        raise SieveProtocolError("Unsupported SASL mechanism")
    if not s.plaintext_ok:
        raise SieveProtocolError("Authentication needs TLS: use STARTTLS first", "ENCRYPT-NEEDED")
    resp = raw(args[1]) if len(args) == 2 else await _sasl_response(s)
    try:
        _, authcid, passwd = shared_auth.decode_plain(resp.strip())
    except shared_auth.SaslError as exc:
        raise SieveProtocolError(f"Invalid SASL response: {exc}") from None
    if s.fail_counter is None:
        s.fail_counter = shared_auth.FailureCounter()
    user = None
    if len(authcid) <= 320 and len(passwd) <= 1024:
        user = await shared_auth.authenticate(s.backend, authcid, passwd, client_ip=s.client_ip,
                                              protocol="managesieve", counter=s.fail_counter)
    if user is None:
        raise SieveProtocolError("Authentication failed")
    ticket = shared_auth.claim_session(s.backend, user.address, s.client_ip, "managesieve")  # TRYLATER when over
    s.logged_in(user, ticket)
    return wire.ok("Logged in")


async def unauthenticate(s: Session, args: tuple) -> bytes:
    arity(args, 0)
    s.logged_out()  # §2.14.1: back to the non-authenticated state, TLS kept
    return wire.ok("Unauthenticated")
