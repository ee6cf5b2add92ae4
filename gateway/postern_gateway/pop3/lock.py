"""The POP3 maildrop lock (RFC 1939 §4: exclusive access while a session is in TRANSACTION).

In:   the account and the mailbox id of its INBOX (the item's key: ``keys.maildrop_lock_key``).
Out:  ``await locks.acquire(user, mailbox_id)`` -> a :class:`Lease`, or None when another session
      holds the maildrop (the session answers ``-ERR [IN-USE]``, RFC 2449 §8.1.1);
      ``await locks.release(lease)`` (QUIT), ``locks.release_nowait(lease)`` (a dropped
      connection). ``Lease.lost`` turns True when a shared lease could not be kept.
      Two implementations:
        :class:`MaildropLocks`: this process only (tests, a single in-memory backend).
        :class:`SharedMaildropLocks`: every gateway task behind the NLB, one conditional
          item in the state table per locked maildrop: ``PutItem`` if absent or stale
          (``expires`` in the past), renewed by a heartbeat every ``ttl / 3`` seconds while
          the session lives, deleted on QUIT or disconnect only by its owner (a condition on
          the owner token). A task that dies leaves its item behind; it is stale ``ttl``
          seconds after the last heartbeat and the next login takes it over
          (``POSTERN_POP3_LOCK_TTL``, default 120 s). The table's TTL (``expires``) removes
          it eventually; nothing depends on that.
Fails: a state-table fault while acquiring raises :class:`~postern.errors.StoreUnavailable`
      (``-ERR [SYS/TEMP]``, try again: never two sessions on one maildrop). A heartbeat
      that finds the item gone or owned by another session marks the lease lost (the
      session then commits nothing on QUIT); a heartbeat that cannot reach the table
      retries, and the lease is lost once its expiry has passed. A failed release is
      logged; the item goes stale after ``ttl``.
Blocking DynamoDB calls run through ``backend.run`` (the one bounded executor).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import uuid
from dataclasses import dataclass, field

from postern import clock, keys
from postern.errors import StoreUnavailable

log = logging.getLogger("postern.pop3")

CONDITIONAL = "ConditionalCheckFailedException"


@dataclass
class Lease:
    user: str
    mailbox_id: str
    token: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}")
    expires: float = 0.0
    lost: bool = False
    released: bool = False
    heartbeat: asyncio.Task | None = None

    @property
    def key(self) -> str:
        return f"{self.user}/{self.mailbox_id}"


class MaildropLocks:
    """Held per gateway process (every POP3 listener of the process shares one table)."""

    def __init__(self) -> None:
        self._held: set[str] = set()

    async def acquire(self, user: str, mailbox_id: str) -> Lease | None:
        lease = Lease(user, mailbox_id)
        if lease.key in self._held:
            return None
        self._held.add(lease.key)
        return lease

    async def release(self, lease: Lease) -> None:
        self.release_nowait(lease)

    def release_nowait(self, lease: Lease) -> None:
        if not lease.released:
            lease.released = True
            self._held.discard(lease.key)

    def __contains__(self, key: str) -> bool:
        return key in self._held


class SharedMaildropLocks:
    """One conditional item per locked maildrop in the state table, shared by all gateway tasks."""

    def __init__(self, backend, ttl: float):
        self.backend = backend
        self.ttl = float(ttl)
        self.table = backend.settings.state_table
        self._releasing: set[asyncio.Task] = set()

    # --- the item ---------------------------------------------------------------
    def _client(self):
        return self.backend.clients.dynamodb

    @staticmethod
    def _key(lease: Lease) -> dict:
        k = keys.maildrop_lock_key(lease.user, lease.mailbox_id)
        return {"pk": {"S": k["pk"]}, "sk": {"S": k["sk"]}}

    def _put(self, lease: Lease) -> bool:
        now = clock.now()
        lease.expires = now + self.ttl
        item = {**self._key(lease), "owner": {"S": lease.token}, "expires": {"N": str(math.ceil(lease.expires))}}
        try:
            self._client().put_item(
                TableName=self.table, Item=item,
                ConditionExpression="attribute_not_exists(pk) OR expires < :now",
                ExpressionAttributeValues={":now": {"N": str(int(now))}})
        except Exception as exc:  # noqa: BLE001 - botocore ClientError or a connection error
            if _code(exc) == CONDITIONAL:
                return False
            raise StoreUnavailable(f"maildrop lock: {exc}") from exc
        return True

    def _renew(self, lease: Lease) -> bool:
        expires = clock.now() + self.ttl
        try:
            self._client().update_item(
                TableName=self.table, Key=self._key(lease), UpdateExpression="SET expires = :e",
                ConditionExpression="#o = :me", ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={":e": {"N": str(math.ceil(expires))}, ":me": {"S": lease.token}})
        except Exception as exc:  # noqa: BLE001
            if _code(exc) == CONDITIONAL:
                return False
            raise
        lease.expires = expires
        return True

    def _delete(self, lease: Lease) -> None:
        try:
            self._client().delete_item(
                TableName=self.table, Key=self._key(lease), ConditionExpression="#o = :me",
                ExpressionAttributeNames={"#o": "owner"}, ExpressionAttributeValues={":me": {"S": lease.token}})
        except Exception as exc:  # noqa: BLE001
            if _code(exc) != CONDITIONAL:  # already taken over after going stale: not ours to delete
                log.warning("pop3 maildrop lock not released (stale in %.0f s): %s", self.ttl, exc)

    # --- the session's side -------------------------------------------------------
    async def acquire(self, user: str, mailbox_id: str) -> Lease | None:
        lease = Lease(user, mailbox_id)
        put = asyncio.ensure_future(self.backend.run(self._put, lease))
        try:
            taken = await asyncio.shield(put)
        except asyncio.CancelledError:
            # The session went away (pop3/server.py cancels a command whose client left) while the
            # conditional put was on its way: if it lands, the item is ours and nobody holds the
            # lease, so release it then, rather than leave the maildrop locked for ``ttl``.
            def landed(f: asyncio.Future) -> None:
                if not f.cancelled() and f.exception() is None and f.result():
                    self.release_nowait(lease)

            put.add_done_callback(landed)
            raise
        if not taken:
            return None
        lease.heartbeat = asyncio.get_running_loop().create_task(self._keep(lease))
        return lease

    async def _keep(self, lease: Lease) -> None:
        while not lease.released:
            await asyncio.sleep(self.ttl / 3)
            if lease.released:
                return
            try:
                if not await self.backend.run(self._renew, lease):
                    lease.lost = True
                    log.warning("pop3 maildrop lock %s lost: taken over or removed", lease.key)
                    return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the table is unreachable: try again, until expiry
                if clock.now() >= lease.expires:
                    lease.lost = True
                    log.warning("pop3 maildrop lock %s lost: not renewed before expiry (%s)", lease.key, exc)
                    return

    async def release(self, lease: Lease) -> None:
        if lease.released:
            return
        lease.released = True
        if lease.heartbeat is not None:
            lease.heartbeat.cancel()
        await self.backend.run(self._delete, lease)

    def release_nowait(self, lease: Lease) -> None:
        """From a connection that is going away (sync code): release in the background."""
        if lease.released:
            return
        try:
            task = asyncio.get_running_loop().create_task(self.release(lease))
        except RuntimeError:  # no loop any more (shutdown): the item goes stale after ttl
            lease.released = True
            return
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)


def _code(exc: Exception) -> str:
    return getattr(exc, "response", {}).get("Error", {}).get("Code", "")


def maildrop_locks(backend):
    """The lock table of a gateway: shared through the state table when the backend has AWS
    clients and the limits are shared (``POSTERN_LIMITS_BACKEND=dynamo``), else this process's."""
    locks = getattr(backend, "maildrop_locks", None)
    if locks is None:
        s = backend.settings
        if backend.clients is not None and s.limits_backend == "dynamo" and s.state_table:
            locks = SharedMaildropLocks(backend, s.pop3_lock_ttl)
        else:
            locks = MaildropLocks()
        backend.maildrop_locks = locks
    return locks
