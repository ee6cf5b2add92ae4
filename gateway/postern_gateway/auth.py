"""Authentication shared by SMTP AUTH, IMAP LOGIN/AUTHENTICATE and POP3 USER/PASS/AUTH.

In:   a username and password from any protocol, the client IP, the protocol name.
Out:  :func:`authenticate` -> the directory :class:`~postern.directory.User`
      or None. A failure costs the client a delay (``POSTERN_LOGIN_FAIL_DELAY``,
      growing with consecutive failures on the connection) before the caller
      answers; password hashing runs on the executor's hashing pool, never on the loop,
      at most ``blocking.HASH_THREADS`` at a time, and a password verified
      within POSTERN_AUTH_CACHE_TTL is not hashed again (authcache.py); logins
      arriving together with the same credentials share one check. A cached login makes no
      backend call while the change feed is live (credential changes arrive on it: :func:`revoke`;
      the directory re-confirms the entry every POSTERN_CHANGE_FEED_POLL_INTERVAL, in the
      background while the account keeps logging in: :func:`_trusted`), else one, the
      credential generation's read; no lockout read (:func:`_lockout_known`); the
      known-client write only when due.
      :func:`decode_plain` parses a SASL PLAIN response (RFC 4616).
      :func:`claim_session` / :func:`claim_idle`: a per-account ticket the protocol holds while
      the user is logged in / idling, released when it ends (postern.limits caps).
Fails: backend errors propagate as StoreUnavailable (caller answers a temporary
      failure: 454 4.7.0, ``NO [UNAVAILABLE]``, ``-ERR [SYS/TEMP]``); a locked account or
      address raises AuthLocked, a login that found no password-check slot within
      POSTERN_AUTH_QUEUE_WAIT AuthBusy (an AuthLocked: the same temporary replies), too many
      sessions TooManySessions (each knows its replies).

Every name a client types goes through :func:`postern.directory.account_name` first: the lockout,
the failure counters, the verified-password cache, the per-account caps and the log lines all
see the one canonical account, whatever the spelling (``<Carol@EXAMPLE.test>``, fullwidth or
IDNA domains). Passwords and AUTH lines are never logged; a login name that is no address (a
password typed into the user field) is logged as a keyed hash (:func:`log_name`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import weakref
from dataclasses import dataclass

from postern.directory import account_name, log_name
from postern.errors import AuthLocked, TooManySessions
from postern.limits import ALLOWED_MEMO, UNLIMITED

from postern.authcache import VerifiedCache

log = logging.getLogger("postern.auth")

_running_loop = asyncio.get_running_loop  # bound now: tests patch asyncio.sleep
_shield = asyncio.shield
# Checks in progress per loop, keyed by VerifiedCache.key (user + HMAC of the password):
# a client opening several connections at once (or a reconnect storm) hashes once, not
# once per connection. `make load` (170 simultaneous logins over 20 accounts) spent two
# cores on 170 argon2id checks where 20 gave every answer.
_in_flight: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_refreshing: set[tuple[str, str]] = set()  # (ip, account) whose lockout read is being renewed in the background
_confirming: set[str] = set()  # accounts whose cached login is being confirmed in the background


def _cache(backend) -> VerifiedCache:
    """The backend's verified-credentials cache (one per gateway process)."""
    if backend.auth_cache is None:
        backend.auth_cache = VerifiedCache(backend.settings.auth_cache_ttl)
    return backend.auth_cache


def feed_live(backend) -> bool:
    """This task's change feed is receiving: credential changes reach :func:`revoke` within its latency."""
    cf = getattr(backend, "change_feed", None)
    return cf is not None and bool(cf.live)


def revoke(backend, accounts) -> None:
    """The change feed says these accounts' credentials changed (a new password, a removed user):
    their cached logins end here now; the next login checks the password against the directory."""
    cache = _cache(backend)
    for account in accounts:
        cache.revoke(account)
        log.info("credentials changed: cached login dropped user=%s", account)


def feed_state(backend, _live: bool = True) -> None:
    """The change feed went down or came back: notices may have been missed meanwhile, so every
    cached login confirms with the directory on its next use."""
    _cache(backend).unconfirm_all()


async def _confirm(backend, cache: VerifiedCache, username: str, cached):
    """The directory's word on a cached login (one GetItem): the user, or None (verify again)."""
    token = cache.token()
    return cache.confirm(username, cached, await backend.run(backend.directory.get_user, username), token)


def _trusted(backend, cache: VerifiedCache, username: str, cached) -> bool:
    """May this cached login skip the directory read? Only while the change feed is live (a
    password change reaches :func:`revoke` within the feed's latency) and the directory confirmed
    the entry less than ``POSTERN_CHANGE_FEED_POLL_INTERVAL`` ago: the safety net that bounds how
    long a lost notice leaves an old password usable. Past half that age the confirmation is
    renewed in the background, so an account that logs in regularly never waits for it."""
    interval = float(backend.settings.change_feed_poll_interval)
    if interval <= 0 or not feed_live(backend) or not cache.confirmed_within(username, interval):
        return False
    if not cache.confirmed_within(username, interval / 2):
        key = username.lower()

        async def renew():
            try:
                await _confirm(backend, cache, username, cached)
            except Exception:  # noqa: BLE001 - the next login past the interval confirms in line
                log.warning("background confirmation of a cached login failed user=%s", key, exc_info=True)

        _in_background(backend, _confirming, key, renew, "auth-confirm")
    return True


def _in_background(backend, running: set, key, work, label: str) -> None:
    """Run ``work()`` (a coroutine function) on the gateway's background lane unless one for ``key``
    is still running (``running`` holds those keys): a renewal is made once however many logins ask."""
    if key in running:
        return
    running.add(key)

    async def run():
        try:
            await work()
        finally:
            running.discard(key)

    backend.mail.later(run(), label)


async def _verify(backend, cache: VerifiedCache, username: str, password: str):
    """The directory user for these credentials or None: from the cache, a check already
    running for the same user and password, or a new check on the hashing pool (AuthBusy when
    it found no slot within ``POSTERN_AUTH_QUEUE_WAIT``: every waiter gets it, nothing is kept).

    The check is a task of its own, shielded: a waiter that disconnects does not cancel
    it for the others, and its result still reaches the cache. Only identical credentials
    share a check, so a wrong password never rides on a right one's result (or the reverse).
    """
    user = cache.get(username, password)
    if user is not None:
        if _trusted(backend, cache, username, user):
            return user
        # no hash, but the directory's word that the password has not changed since (authcache.confirm)
        user = await _confirm(backend, cache, username, user)
        if user is not None:
            return user
    loop = _running_loop()
    pending = _in_flight.get(loop)
    if pending is None:
        pending = _in_flight[loop] = {}
    key = cache.key(username, password)
    task = pending.get(key)
    if task is None:
        async def check():
            async with backend.blocking.hashing(backend.settings.auth_queue_wait):
                token = cache.token()  # a revocation arriving during the check keeps its answer out of the cache
                found = await backend.blocking.run_hashing(backend.directory.authenticate, username, password)
            if found is not None:
                cache.put(username, password, found, token)
            return found

        task = pending[key] = loop.create_task(check())

        def done(t, key=key):
            if pending.get(key) is t:
                del pending[key]
            if not t.cancelled():
                t.exception()  # retrieved: waiters that left early leave no "never retrieved" warning

        task.add_done_callback(done)
    return await _shield(task)


def claim_session(backend, account: str, client_ip: str = "", protocol: str = ""):
    """A logged-in session of ``account`` (canonical); release it when the session ends."""
    limits = getattr(backend, "limits", None)
    if limits is None:
        return UNLIMITED
    ticket = limits.open_session(account, client_ip, protocol)
    if ticket is None:
        raise TooManySessions()
    return ticket


def claim_idle(backend, account: str, client_ip: str = ""):
    """An IMAP IDLE of ``account``; release it when the IDLE ends."""
    limits = getattr(backend, "limits", None)
    if limits is None:
        return UNLIMITED
    ticket = limits.idle(account, client_ip)
    if ticket is None:
        raise TooManySessions("Too many IDLE commands for this account, try again later")
    return ticket


class SaslError(ValueError):
    """Malformed SASL exchange (the client gets a syntax error)."""


def decode_plain(b64: str | bytes) -> tuple[str, str, str]:
    """SASL PLAIN: base64(authzid NUL authcid NUL passwd) -> (authzid, authcid, passwd). RFC 4616 §2."""
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise SaslError("invalid base64") from None
    parts = raw.split(b"\x00")
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise SaslError("invalid PLAIN response")
    try:
        authzid, authcid, passwd = (p.decode("utf-8") for p in parts)
    except UnicodeDecodeError:
        raise SaslError("PLAIN response is not UTF-8") from None
    if authzid and authzid.lower() != authcid.lower():
        raise SaslError("authorization identity must match")  # no proxy authorisation
    return authzid, authcid, passwd


@dataclass
class FailureCounter:
    """Consecutive failures on one connection: drives the growing delay."""

    failures: int = 0


def _lockout_known(backend, limits, cache: VerifiedCache, ip: str, account: str, password: str, protocol: str) -> bool:
    """True when this login may skip the lockout read: a cached login (these credentials verified
    here within POSTERN_AUTH_CACHE_TTL) whose address and account the counters let in less than
    ``limits.ALLOWED_MEMO`` seconds ago. Past half that age the read is made again in the
    background (the next login finds it fresh). A cached login thus makes no backend call (with a
    live change feed; else one, the credential generation, ``authcache.confirm``) instead of three:
    under load each call queues behind other sessions' work (`make load`, docs/load.md)."""
    if not account or cache.get(account, password) is None:
        return False
    age = limits.allowed_age(ip, account)
    if age is None or age >= ALLOWED_MEMO:
        return False
    if age >= ALLOWED_MEMO / 2:
        _in_background(backend, _refreshing, (ip, account),
                       lambda: backend.run(limits.auth_allowed, ip, account, protocol), "auth-allowed-refresh")
    return True


async def authenticate(backend, username: str, password: str, *, client_ip: str = "", protocol: str = "",
                       counter: FailureCounter | None = None):
    """Check credentials; on failure sleep before returning None (RFC 3501 §6.2.3 advice, RFC 4954 §4).

    With ``backend.limits`` (postern.limits): an IP or account over its failure limit gets
    :class:`~postern.errors.AuthLocked` (454 / NO [UNAVAILABLE] / -ERR [SYS/TEMP]) without a
    password check, and a failure's delay grows with the failures counted across gateway tasks.
    """
    account = account_name(username[:320])
    limits = getattr(backend, "limits", None)
    cache = _cache(backend)
    if limits is not None and not _lockout_known(backend, limits, cache, client_ip, account, password, protocol):
        refusal = await backend.run(limits.auth_allowed, client_ip, account, protocol)
        if refusal is not None:
            if backend.settings.login_fail_delay > 0:
                await asyncio.sleep(backend.settings.login_fail_delay)
            raise AuthLocked(refusal.text)
    user = await _verify(backend, cache, account or username, password)
    if user is not None:
        if counter is not None:
            counter.failures = 0
        if limits is not None and not limits.known_client_fresh(client_ip, user.address):
            await backend.run(limits.auth_succeeded, client_ip, user.address)
        log.info("auth ok protocol=%s ip=%s user=%s", protocol, client_ip, user.address)
        return user
    n = 1
    if counter is not None:
        counter.failures += 1
        n = counter.failures
    log.warning("auth failed protocol=%s ip=%s user=%s", protocol, client_ip, log_name(username))
    delay = backend.settings.login_fail_delay * min(n, 8)
    if limits is not None:
        delay = max(delay, await backend.run(limits.auth_failed, client_ip, account))
    if delay > 0:
        await asyncio.sleep(delay)
    return None
