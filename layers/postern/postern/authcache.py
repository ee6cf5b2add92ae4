"""A short-lived cache of verified credentials (what Dovecot calls auth_cache).

In:   a canonical username and the password a client just proved with argon2id.
Out:  :class:`VerifiedCache`: ``get(username, password)`` returns the directory
      user when the same password was verified within ``ttl`` seconds, else
      None; ``put`` records a success. Only successes are cached: a wrong
      password always pays the full check and the failure delay.
Fails: never; a miss just means the caller verifies as usual.

Why: every IMAP/POP3 login verifies an argon2id hash (64 MiB, tens of ms of
CPU). Phones and desktop clients reconnect constantly and open several
connections at once; `make load` showed logins queueing behind hashing for
a minute. The cache keeps an HMAC-SHA256 of the password under a per-process
random key, never the password; entries expire after ``ttl`` (setting
``POSTERN_AUTH_CACHE_TTL``, 0 disables).

Revocation: a password change starts a new credential generation. A hit is good
once :meth:`VerifiedCache.confirm` has seen the account as the directory holds it
(one GetItem, no hash, same generation), or, on a gateway task with a live change
feed, while that confirmation is recent (:meth:`confirmed_within`): the feed carries
every change of a user item to every task, whose :meth:`revoke` drops the entry
(postern_gateway/auth.py). A check or confirmation that read the directory before a
revocation arrived cannot put the old answer back: each takes a :meth:`token` first,
and ``put``/``confirm`` refuse a token older than the account's last revocation.
:meth:`unconfirm_all` (the feed went down or came back: notices may have been
missed) makes every entry confirm again on its next use.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict


class VerifiedCache:
    def __init__(self, ttl: float, max_entries: int = 10_000, clock=time.monotonic):
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        # name -> (HMAC of the password, expiry, user, when the directory last confirmed it)
        self._entries: OrderedDict[str, tuple[bytes, float, object, float]] = OrderedDict()
        self._seq = 0  # revocations so far: a token is the number seen before a directory read
        self._revoked: OrderedDict[str, int] = OrderedDict()  # name -> the number of its last revocation
        self._revoked_floor = 0  # revocations forgotten (bounded memory) count as at most this number
        self._confirmed_floor = float("-inf")  # confirmations before this instant are not trusted

    def _digest(self, username: str, password: str) -> bytes:
        msg = username.lower().encode("utf-8") + b"\x00" + password.encode("utf-8", "surrogatepass")
        return hmac.new(self._key, msg, hashlib.sha256).digest()

    def key(self, username: str, password: str) -> tuple[str, bytes]:
        """An opaque key for these exact credentials (user and HMAC of the password, never the password)."""
        name = username.lower()
        return name, self._digest(name, password)

    def get(self, username: str, password: str):
        if self.ttl <= 0:
            return None
        name = username.lower()
        with self._lock:
            entry = self._entries.get(name)
            if entry is None:
                return None
            digest, expires, user, _confirmed = entry
            if self._clock() >= expires:
                del self._entries[name]
                return None
        return user if hmac.compare_digest(digest, self._digest(name, password)) else None

    def token(self) -> int:
        """Take before reading the directory; hand to ``put``/``confirm`` with what was read."""
        with self._lock:
            return self._seq

    def _stale(self, name: str, token: int | None) -> bool:
        """Was ``name`` revoked after ``token`` was taken? (caller holds the lock)"""
        return token is not None and self._revoked.get(name, self._revoked_floor) > token

    def put(self, username: str, password: str, user, token: int | None = None) -> None:
        """Remember a success; refused when the account was revoked since ``token``."""
        if self.ttl <= 0:
            return
        name = username.lower()
        now = self._clock()
        entry = (self._digest(name, password), now + self.ttl, user, now)
        with self._lock:
            if self._stale(name, token):
                return
            self._entries[name] = entry
            self._entries.move_to_end(name)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def confirm(self, username: str, cached, current, token: int | None = None):
        """``current`` (the directory's user now) if it is the account ``cached`` was verified as -
        same credential generation - else None, and the entry is dropped (the caller verifies).
        A match renews the entry's confirmation, unless the account was revoked since ``token``
        (the read may predate the change: None, the caller verifies)."""
        name = username.lower()
        if current is None or getattr(current, "generation", None) != getattr(cached, "generation", None):
            self.forget(username)
            return None
        with self._lock:
            if self._stale(name, token):
                return None
            entry = self._entries.get(name)
            if entry is not None and entry[2] is cached:
                self._entries[name] = (entry[0], entry[1], current, self._clock())
        return current

    def confirmed_within(self, username: str, age: float) -> bool:
        """The directory confirmed this account's entry less than ``age`` seconds ago (and since
        the last :meth:`unconfirm_all`)."""
        with self._lock:
            entry = self._entries.get(username.lower())
            if entry is None:
                return False
            confirmed = entry[3]
        return confirmed >= self._confirmed_floor and self._clock() - confirmed < age

    def revoke(self, username: str) -> None:
        """The account's credentials changed (the change feed said so): drop its entry, and refuse
        any check or confirmation that read the directory before now."""
        name = username.lower()
        with self._lock:
            self._seq += 1
            self._revoked[name] = self._seq
            self._revoked.move_to_end(name)
            while len(self._revoked) > self.max_entries:
                _, seq = self._revoked.popitem(last=False)
                self._revoked_floor = max(self._revoked_floor, seq)
            self._entries.pop(name, None)

    def unconfirm_all(self) -> None:
        """Every entry confirms with the directory on its next use (revocations may have been missed)."""
        with self._lock:
            self._confirmed_floor = self._clock()

    def forget(self, username: str) -> None:
        with self._lock:
            self._entries.pop(username.lower(), None)
