"""JMAP push over WebSocket (RFC 8887): the connection registry and what a change becomes on a socket.

In:   API Gateway WebSocket connection ids with the account each was opened for (the ``$connect``
      authorizer redeemed a one-time ticket, :mod:`postern.tokens`), the client's
      ``WebSocketPushEnable`` / ``WebSocketPushDisable`` (parsed by :mod:`postern.jmap.websocket`),
      and change notices (:class:`postern.feed.Notice`) from the one change feed.
Out:  :class:`Registry` on the state table: ONE item per open connection, pk ``WS#<user>``, sk the
      connection id (:func:`postern.keys.push_key`), so the feed finds an account's connections
      with one Query of one partition (nothing to read for an account with none). The item says
      whether push is on and for which data types, and carries the table's TTL (``expires``):
      API Gateway closes a connection after 2 h, so an item whose ``$disconnect`` was lost goes
      by itself; readers skip expired items (TTL deletion lags).
      :func:`state_change` -> the StateChange object (RFC 8620 §7.1) of one notice for one
      connection; :func:`fan_out` posts it to every push-enabled connection of each notice's
      account through a ``post(connection_id, data)`` (the ``@connections`` management API
      deployed, the local front's fake of it locally) -> :class:`Outcome`.
Fails: a connection that is gone (``@connections`` answers 410: :class:`Gone`) has its item
      deleted; any other failure of a post is counted and logged, never raised: a push is a hint
      (the client's next ``/changes`` call reads the log), and it must not make the feed retry
      its batch. A registry fault (:class:`~postern.errors.StoreUnavailable`) propagates.

Every data type whose state is the account's change number (postern/jmap/changes.py: Mailbox,
Email, Thread and Quota answer ``/get`` with it) moves with each change, so each StateChange names
them all with the notice's number: a client that asked for some types only gets those.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from . import keys
from .items import Update, present
from .jmap.account import account_id

log = logging.getLogger("postern.push")

# RFC 8620 §7.1 type names whose state is the account change number (views' state_string).
CHANGE_NUMBER_TYPES = ("Mailbox", "Email", "Thread", "Quota")
# API Gateway closes a WebSocket connection after 2 h (WebSocket API quotas); a little slack.
CONNECTION_LIFETIME = 2 * 3600 + 300
MAX_POST_WORKERS = 8  # concurrent @connections posts per batch


class Gone(Exception):
    """The connection no longer exists (``@connections`` answered 410 GoneException)."""


@dataclass(frozen=True)
class Connection:
    user: str
    connection_id: str
    push: bool = False  # WebSocketPushEnable received (and no Disable since)
    types: tuple[str, ...] | None = None  # the dataTypes asked for; None: all

    def wants(self, type_name: str) -> bool:
        return self.types is None or type_name in self.types


def state_change(user: str, modseq: int, conn: Connection) -> dict | None:
    """The StateChange of change ``modseq`` of ``user`` for ``conn`` (None: no type it asked for moved)."""
    states = {t: str(modseq) for t in CHANGE_NUMBER_TYPES if conn.wants(t)}
    if not states:
        return None
    return {"@type": "StateChange", "changed": {account_id(user): states}}


class Registry:
    """The open connections of each account (state table items; see the module docstring)."""

    def __init__(self, items, clock: Callable[[], float] = time.time, lifetime: int = CONNECTION_LIFETIME):
        self.items = items
        self._clock = clock
        self.lifetime = lifetime

    def connect(self, user: str, connection_id: str) -> None:
        now = int(self._clock())
        self.items.put({**keys.push_key(user, connection_id), "user": user.lower(), "since": now,
                        "expires": now + self.lifetime})

    def enable(self, user: str, connection_id: str, types: tuple[str, ...] | None) -> bool:
        """Push on, for ``types`` (None: all). False when the connection is not registered (gone)."""
        from .items import ConditionFailed

        try:
            self.items.update(keys.push_key(user, connection_id),
                              Update(set={"push": True, "types": list(types) if types is not None else None}),
                              cond=present())
        except ConditionFailed:
            return False
        return True

    def disable(self, user: str, connection_id: str) -> bool:
        from .items import ConditionFailed

        try:
            self.items.update(keys.push_key(user, connection_id), Update(set={"push": None, "types": None}),
                              cond=present())
        except ConditionFailed:
            return False
        return True

    def disconnect(self, user: str, connection_id: str) -> None:
        self.items.delete(keys.push_key(user, connection_id))

    def of(self, user: str) -> list[Connection]:
        """The live connections of ``user`` (one eventually consistent Query)."""
        now = self._clock()
        out = []
        for item in self.items.query(keys.push_pk(user), consistent=False):
            if float(item.get("expires", 0)) <= now:
                continue
            types = item.get("types")
            out.append(Connection(user.lower(), item["sk"], bool(item.get("push")),
                                  tuple(str(t) for t in types) if isinstance(types, list) else None))
        return out


@dataclass
class Outcome:
    posted: int = 0
    gone: int = 0
    failed: int = 0
    accounts: int = 0
    errors: list[str] = field(default_factory=list)


def fan_out(notices: Iterable, registry: Registry, post: Callable[[str, bytes], None]) -> Outcome:
    """Post each notice's StateChange to its account's push-enabled connections (see the module docstring)."""
    out = Outcome()
    jobs: list[tuple[Connection, bytes]] = []
    for n in notices:
        out.accounts += 1
        for conn in registry.of(n.user):
            msg = state_change(n.user, n.modseq, conn) if conn.push else None
            if msg is not None:
                jobs.append((conn, json.dumps(msg, separators=(",", ":")).encode()))
    if not jobs:
        return out

    def one(job: tuple[Connection, bytes]) -> str:
        conn, data = job
        try:
            post(conn.connection_id, data)
        except Gone:
            registry.disconnect(conn.user, conn.connection_id)
            return "gone"
        except Exception as exc:  # noqa: BLE001 - a push is a hint: counted, never raised
            out.errors.append(f"{type(exc).__name__}: {exc}")
            return "failed"
        return "posted"

    if len(jobs) == 1:
        results = [one(jobs[0])]
    else:
        with ThreadPoolExecutor(max_workers=min(MAX_POST_WORKERS, len(jobs))) as pool:
            results = list(pool.map(one, jobs))
    out.posted, out.gone, out.failed = (results.count(k) for k in ("posted", "gone", "failed"))
    return out


def connections_poster(client) -> Callable[[str, bytes], None]:
    """``post`` over a ``@connections`` management API client (``Clients.connections(endpoint)``;
    API Gateway Developer Guide, "Use @connections commands in your backend service")."""

    def post(connection_id: str, data: bytes) -> None:
        try:
            client.post_to_connection(ConnectionId=connection_id, Data=data)
        except client.exceptions.GoneException:
            raise Gone(connection_id) from None

    return post


def registry_for(settings=None, clients=None) -> Registry:
    """The registry on the state table named by the settings."""
    from .aws import get_clients
    from .config import get_settings
    from .items import DynamoItems

    s = settings or get_settings()
    c = clients or get_clients()
    return Registry(DynamoItems(lambda: c.dynamodb, s.state_table, "state"))
