"""Credentials -> an account: HTTP Basic over TLS (RFC 7617) or a bearer token (RFC 6750).

In:   the ``Authorization`` header (or, for ``POST /auth/token``, a user name and password from
      the JSON body), the :class:`~postern_https.viewer.Viewer` and the :class:`~postern_https.services.Services`.
Out:  :func:`require` -> :class:`Principal` (the directory user, and how it proved itself);
      :func:`password_login` -> the user for a user name and password.
Fails: :class:`~postern_https.errors.HttpError`: 401 (``WWW-Authenticate: Bearer``) for missing,
      malformed or wrong credentials and unknown or revoked tokens; 403 for credentials over
      plain HTTP (unless ``POSTERN_ALLOW_PLAINTEXT_AUTH``, the local stack's setting, as on the
      gateway); 429 with ``Retry-After`` while the client's address or the account is locked out.
      A directory or state-table fault raises StoreUnavailable (503), never a 401.

The order is the point: the lockout and per-address counters of :mod:`postern.limits` are read
BEFORE any password hash is computed (argon2id takes 64 MiB and most of a Lambda's CPU share for
a noticeable fraction of a second: a locked-out attacker costs one BatchGetItem, not a hash);
then the verified-password cache; then argon2id. A failure is counted for the address and the
account (:meth:`~postern.limits.Limits.auth_failed`) but the function does not sleep out the
delay the gateway would (Lambda bills the sleep): the lockout caps the rate instead. Names are
canonical accounts (``postern.directory.account_name``) for every counter and log line; a name
that is no address costs no hash at all. Passwords are never logged and never accepted in a URL.
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass

from postern.directory import User, account_name, log_name

from .errors import locked, plaintext_refused, unauthorized

log = logging.getLogger("postern.auth")

MAX_HEADER = 8192
MAX_USER = 320
MAX_PASSWORD = 1024  # longer passwords are refused unhashed (argon2's cost grows with the input)


@dataclass(frozen=True)
class Principal:
    user: User
    via: str  # basic | bearer

    @property
    def address(self) -> str:
        return self.user.address


def _transport_ok(svc, viewer) -> None:
    if not viewer.secure and not svc.settings.allow_plaintext_auth:
        raise plaintext_refused()


def password_login(svc, viewer, username: str, password: str) -> User:
    _transport_ok(svc, viewer)
    account = account_name(username[:MAX_USER]) if len(username) <= MAX_USER else None
    refusal = svc.limits.auth_allowed(viewer.ip, account, "https")  # before any hash: see the docstring
    if refusal is not None:
        raise locked(refusal.text, refusal.retry_after)
    user = None
    if account is not None and 0 < len(password) <= MAX_PASSWORD:
        user = svc.cache.get(account, password)
        if user is not None:  # still the same credentials as the directory holds them (authcache.confirm)
            user = svc.cache.confirm(account, user, svc.directory.get_user(account))
        if user is None:
            user = svc.directory.authenticate(account, password)
            if user is not None:
                svc.cache.put(account, password, user)
    if user is None:
        svc.limits.auth_failed(viewer.ip, account)
        log.warning("auth failed protocol=https ip=%s user=%s", viewer.ip, log_name(username[:MAX_USER]))
        raise unauthorized("Wrong user name or password")
    svc.limits.auth_succeeded(viewer.ip, user.address)
    log.info("auth ok protocol=https ip=%s user=%s", viewer.ip, user.address)
    return user


def decode_basic(value: str) -> tuple[str, str]:
    """RFC 7617 §2: base64 of ``user-id ":" password`` (UTF-8, §2.1); the user-id has no colon."""
    try:
        raw = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise unauthorized("Malformed Basic credentials") from None
    username, sep, password = raw.partition(":")
    if not sep or not username:
        raise unauthorized("Malformed Basic credentials")
    return username, password


def require(svc, viewer, headers) -> Principal:
    raw = (headers or {}).get("authorization", "")
    if not raw:
        raise unauthorized()
    if len(raw) > MAX_HEADER:
        raise unauthorized("Malformed credentials")
    scheme, _, value = raw.strip().partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        _transport_ok(svc, viewer)
        user = svc.tokens.verify(value.strip())
        if user is None:
            raise unauthorized("Invalid, expired or revoked token", error="invalid_token")
        return Principal(user, "bearer")
    if scheme == "basic":
        _transport_ok(svc, viewer)
        username, password = decode_basic(value)
        return Principal(password_login(svc, viewer, username, password), "basic")
    raise unauthorized("Unsupported authentication scheme: use Basic (over TLS) or Bearer")
