"""Bearer tokens for the HTTPS front and one-time tickets for its WebSocket connections.

In:   the account a request proved (HTTP Basic over TLS, or a still-valid bearer token), the
      directory (the user's credential generation and admin role) and an item layer on the
      state table (:mod:`postern.items`, table ``POSTERN_STATE_TABLE``).
Out:  :class:`Tokens`:
        ``issue(user)`` -> :class:`Issued`: a random bearer token (``pst_`` + 256 bits, base64url)
            valid ``POSTERN_TOKEN_TTL`` seconds (1 h). Stored as ONE item keyed by the SHA-256 of
            its value (``keys.token_key``): the value itself is never stored or logged, so a read
            of the state table yields no usable token. The item carries the user's credential
            generation (:attr:`postern.directory.User.generation`) and the table's TTL attribute.
        ``verify(token)`` -> the directory :class:`~postern.directory.User` or None: unknown,
            expired (checked here: TTL deletion lags by hours), a user who no longer exists, or a
            generation that is not the user's current one (the password changed since the token
            was issued: every token of the account is revoked by that one change). Two GetItems.
        ``revoke(token)``: sign-out (DeleteItem).
        ``issue_ticket(user)`` / ``redeem_ticket(ticket)``: a one-time ticket a WebSocket client
            presents when it connects (``POSTERN_TICKET_TTL``, 60 s); redeeming deletes it with a
            condition on its expiry (one DeleteItem, ReturnValues ALL_OLD), so a ticket works once,
            even when two connections race with it.
Fails: a state-table or directory fault raises :class:`~postern.errors.StoreUnavailable` (the
      caller answers 503: never "unauthenticated" for a backend fault, never "authenticated").
      A malformed token is just not found.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass

from . import keys
from .items import ConditionFailed, gt

PREFIX = "pst_"  # bearer tokens
TICKET_PREFIX = "psw_"  # WebSocket tickets
_SHAPE = re.compile(r"^ps[tw]_[A-Za-z0-9_-]{43}$")  # 32 random bytes, base64url without padding


@dataclass(frozen=True)
class Issued:
    value: str  # what the client presents; shown once, never stored
    user: str
    expires: float  # epoch seconds


def digest(value: str) -> str:
    return hashlib.sha256(value.encode("ascii")).hexdigest()


def well_formed(value: str) -> bool:
    return bool(_SHAPE.match(value or ""))


class Tokens:
    def __init__(self, items, directory, token_ttl: int = 3600, ticket_ttl: int = 60, clock=time.time):
        self.items = items  # state table
        self.directory = directory
        self.token_ttl = token_ttl
        self.ticket_ttl = ticket_ttl
        self._clock = clock

    # --- bearer tokens -----------------------------------------------------------------
    def issue(self, user) -> Issued:
        return self._issue(user, PREFIX, "bearer", self.token_ttl)

    def verify(self, value: str):
        if not well_formed(value) or not value.startswith(PREFIX):
            return None
        item = self.items.get(keys.token_key(digest(value), "bearer"), consistent=False)
        return self._user_of(item)

    def revoke(self, value: str) -> bool:
        if not well_formed(value):
            return False
        return self.items.delete(keys.token_key(digest(value), "bearer"))

    # --- one-time WebSocket tickets --------------------------------------------------------
    def issue_ticket(self, user) -> Issued:
        return self._issue(user, TICKET_PREFIX, "ticket", self.ticket_ttl)

    def redeem_ticket(self, value: str):
        """The user the ticket was issued to, once; None when unknown, used or expired."""
        if not well_formed(value) or not value.startswith(TICKET_PREFIX):
            return None
        try:
            # Deleted only while unexpired: a second redeem (or a racing one) finds nothing.
            item = self.items.delete_returning(keys.token_key(digest(value), "ticket"), gt("expires", self._clock()))
        except ConditionFailed:
            return None
        return self._user_of(item)

    # --- shared ----------------------------------------------------------------------------
    def _issue(self, user, prefix: str, kind: str, ttl: int) -> Issued:
        value = prefix + secrets.token_urlsafe(32)
        now = self._clock()
        expires = now + ttl
        self.items.put({**keys.token_key(digest(value), kind), "user": user.address,
                        "generation": user.generation, "issued": int(now), "expires": int(expires)})
        return Issued(value, user.address, float(int(expires)))

    def _user_of(self, item: dict | None):
        if not item or float(item.get("expires", 0)) <= self._clock():
            return None
        user = self.directory.get_user(item.get("user", ""))
        if user is None or user.generation != item.get("generation", ""):
            return None  # removed, or the password changed since: revoked
        return user


def tokens_for(settings=None, clients=None, directory=None) -> Tokens:
    """Tokens on the state table named by the settings."""
    from .aws import get_clients
    from .config import get_settings
    from .directory import dynamo_directory
    from .items import DynamoItems

    s = settings or get_settings()
    c = clients or get_clients()
    return Tokens(DynamoItems(lambda: c.dynamodb, s.state_table, "state"),
                  directory or dynamo_directory(s, c), s.token_ttl, s.ticket_ttl)
