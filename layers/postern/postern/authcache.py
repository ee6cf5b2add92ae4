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
``POSTERN_AUTH_CACHE_TTL``, 0 disables). A hit is only good once
:meth:`VerifiedCache.confirm` has seen the account as the directory holds it
now (one GetItem, no hash): a password change starts a new credential
generation, so the old password stops working at once on every gateway task
and HTTPS environment, and a removed account too.
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
        self._entries: OrderedDict[str, tuple[bytes, float, object]] = OrderedDict()

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
            digest, expires, user = entry
            if self._clock() >= expires:
                del self._entries[name]
                return None
        return user if hmac.compare_digest(digest, self._digest(name, password)) else None

    def put(self, username: str, password: str, user) -> None:
        if self.ttl <= 0:
            return
        name = username.lower()
        entry = (self._digest(name, password), self._clock() + self.ttl, user)
        with self._lock:
            self._entries[name] = entry
            self._entries.move_to_end(name)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def confirm(self, username: str, cached, current):
        """``current`` (the directory's user now) if it is the account ``cached`` was verified as -
        same credential generation - else None, and the entry is dropped (the caller verifies)."""
        if current is None or getattr(current, "generation", None) != getattr(cached, "generation", None):
            self.forget(username)
            return None
        return current

    def forget(self, username: str) -> None:
        with self._lock:
            self._entries.pop(username.lower(), None)
