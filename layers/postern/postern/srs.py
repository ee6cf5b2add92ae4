"""The Sender Rewriting Scheme: one module for every forward (aliases, Sieve ``redirect``).

In:   the secrets (``POSTERN_SRS_SECRET_ID``: a Secrets Manager secret holding
      ``{"secrets": ["newest", "older", ...]}`` or one plain string; else
      ``POSTERN_SRS_SECRET``, comma-separated; the first signs, every one
      verifies, so a secret can be rotated without breaking bounces in
      flight), ``POSTERN_SRS_MAX_AGE_DAYS`` (21, libsrs2's default).
Out:  :class:`Srs` with
        ``forward(sender, domain, now)``: the envelope sender a forward from
            ``domain`` uses, so the receiver's SPF check sees our domain:
            ``SRS0=HHHH=TT=orig.domain=local@domain``, or for a sender that
            is already an SRS address of another forwarder,
            ``SRS1=HHHH=first.forwarder==HHHH=TT=orig.domain=local@domain``
            (Shevek's scheme as libsrs2 and postsrsd write it: HMAC-SHA1 over
            the lower-cased parts, base64, 4 characters; the timestamp is the
            day number modulo 1024 in two base32 characters);
        ``reverse(address, now)``: where a bounce to one of our SRS addresses
            goes: the original sender (SRS0), or the previous forwarder's
            SRS0 address (SRS1), after checking the hash and, for SRS0, the
            age (timestamps from the future count as forged);
        ``is_srs(address)``: looks like one (SRS0/SRS1 and a separator).
Fails: :class:`SrsError` (a :class:`~postern.errors.PosternError` answering
      ``550 5.1.1``) for an address that is not a valid SRS address of ours:
      malformed, wrong hash (forged: never relay on it), or expired. The null
      sender and a sender without a domain are never rewritten (``forward``
      returns them as they are). :func:`from_settings` raises
      :class:`~postern.errors.StoreUnavailable` when the secret cannot be read,
      and ``SrsError`` when there is no secret at all (configuration).

Routing a bounce: :mod:`postern.routing` asks :meth:`Srs.reverse` for an
SRS recipient in a local domain and sends the message on to the result.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
import time
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

from . import clock, status
from .errors import PosternError, StoreUnavailable

_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
HASH_LENGTH = 4
DAY = 86400
_PREFIX = re.compile(r"^(SRS[01])([=+-])(.*)$", re.I | re.S)
CACHE_SECONDS = 300


class SrsError(PosternError):
    smtp = status.NO_SUCH_USER
    permanent = True


def _timestamp(now: float) -> str:
    day = int(now // DAY) % 1024
    return _B32[day >> 5] + _B32[day & 31]


def _age_days(ts: str, now: float) -> int:
    if len(ts) != 2 or any(c not in _B32 for c in ts.upper()):
        raise SrsError("malformed SRS timestamp")
    then = (_B32.index(ts[0].upper()) << 5) | _B32.index(ts[1].upper())
    return (int(now // DAY) - then) % 1024


def _split_address(address: str) -> tuple[str, str]:
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise SrsError("not an address")
    return local, domain


@dataclass(frozen=True)
class Srs:
    secrets: tuple[bytes, ...]
    max_age_days: int = 21

    def __post_init__(self):
        if not self.secrets or not all(self.secrets):
            raise SrsError("no SRS secret configured (POSTERN_SRS_SECRET_ID or POSTERN_SRS_SECRET)")

    def _hash(self, secret: bytes, *parts: str) -> str:
        mac = hmac.new(secret, "".join(p.lower() for p in parts).encode("utf-8"), hashlib.sha1).digest()
        return base64.b64encode(mac).decode("ascii")[:HASH_LENGTH]

    def _check(self, given: str, *parts: str) -> None:
        # Compared without case: some MTAs lower-case the local part (libsrs2 does the same).
        for secret in self.secrets:
            if hmac.compare_digest(self._hash(secret, *parts).lower().encode(), given.lower().encode()):
                return
        raise SrsError("SRS hash does not match: not an address we made")

    @staticmethod
    def is_srs(address: str) -> bool:
        local = address.rpartition("@")[0] or address
        return _PREFIX.match(local) is not None

    def forward(self, sender: str, domain: str, now: float | None = None) -> str:
        """The envelope sender for mail from ``sender`` forwarded by ``domain``."""
        if not sender or "@" not in sender:
            return sender  # the null reverse-path stays null (RFC 5321 §4.5.5)
        now = clock.now() if now is None else now
        local, host = _split_address(sender)
        domain = domain.lower()
        if host.lower() == domain:
            return sender  # ours already: SPF passes as it is
        m = _PREFIX.match(local)
        if m and m.group(1).upper() == "SRS1":
            # SRS1=HHH=first==opaque@host -> keep first forwarder and opaque, re-hash, our domain
            rest = m.group(3)
            _, _, after_hash = rest.partition("=")
            first, sep, opaque = after_hash.partition("=")
            if sep and first and opaque:  # opaque keeps its leading separator: "=HHH=TT=..."
                h = self._hash(self.secrets[0], first, opaque)
                return f"SRS1={h}={first}={opaque}@{domain}"
        if m and m.group(1).upper() == "SRS0":
            # SRS0<sep>opaque@host (the first forwarder is host) -> SRS1=HHH=host=<sep>opaque@domain
            opaque = m.group(2) + m.group(3)
            h = self._hash(self.secrets[0], host, opaque)
            return f"SRS1={h}={host}={opaque}@{domain}"
        ts = _timestamp(now)
        h = self._hash(self.secrets[0], ts, host, local)
        return f"SRS0={h}={ts}={host}={local}@{domain}"

    def reverse(self, address: str, now: float | None = None) -> str:
        """Where mail to our SRS ``address`` goes: the sender it stands for."""
        now = clock.now() if now is None else now
        local, _domain = _split_address(address)
        m = _PREFIX.match(local)
        if m is None:
            raise SrsError("not an SRS address")
        kind, rest = m.group(1).upper(), m.group(3)
        if kind == "SRS0":
            parts = rest.split("=", 3)
            if len(parts) != 4 or not all(parts):
                raise SrsError("malformed SRS0 address")
            given, ts, host, orig_local = parts
            self._check(given, ts, host, orig_local)
            if _age_days(ts, now) > self.max_age_days:
                raise SrsError("SRS address expired")
            return f"{orig_local}@{host}"
        given, _, after_hash = rest.partition("=")
        first, sep, opaque = after_hash.partition("=")
        if not given or not first or not sep or not opaque:
            raise SrsError("malformed SRS1 address")
        self._check(given, first, opaque)
        # opaque begins with the separator the first forwarder put after "SRS0": "=HHH=TT=..."
        return f"SRS0{opaque}@{first}"


# --- the process's Srs, from settings -----------------------------------------------------
_lock = threading.Lock()
_cached: tuple[tuple, Srs, float] | None = None


def _secrets_from_value(value: str) -> tuple[bytes, ...]:
    try:
        d = json.loads(value)
    except ValueError:
        d = value
    if isinstance(d, dict):
        d = d.get("secrets") or d.get("secret") or []
    if isinstance(d, str):
        d = [d]
    return tuple(s.encode("utf-8") for s in d if isinstance(s, str) and s)


def configured(settings) -> bool:
    return bool(settings.srs_secret_id or settings.srs_secret)


def optional(settings, clients) -> Srs | None:
    """:func:`from_settings`, or None when no SRS secret is configured (no forwarding rewrite)."""
    return from_settings(settings, clients) if configured(settings) else None


def from_settings(settings, clients) -> Srs:
    """The Srs for these settings: the Secrets Manager secret (cached 5 minutes) or the setting."""
    global _cached
    key = (settings.srs_secret_id, settings.srs_secret, settings.srs_max_age_days)
    with _lock:
        if _cached is not None and _cached[0] == key and _cached[2] > time.monotonic():
            return _cached[1]
    if settings.srs_secret_id:
        try:
            value = clients.secrets.get_secret_value(SecretId=settings.srs_secret_id)["SecretString"]
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailable(f"SRS secret unreadable: {exc.__class__.__name__}") from exc
        secrets = _secrets_from_value(value)
    else:
        secrets = tuple(s.encode("utf-8") for s in settings.srs_secret)
    srs = Srs(secrets, settings.srs_max_age_days)
    with _lock:
        _cached = (key, srs, time.monotonic() + CACHE_SECONDS)
    return srs
