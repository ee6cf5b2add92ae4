"""The POP3 maildrop lock shared by every gateway task (postern_gateway.pop3.lock) on the state table."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from postern import clock, keys
from postern.errors import StoreUnavailable
from postern_gateway.pop3.lock import MaildropLocks, SharedMaildropLocks, maildrop_locks


def task(aws, ttl: float = 60.0) -> SharedMaildropLocks:
    """One gateway task's lock table (each task its own object, the table shared)."""
    settings, clients, _ = aws

    async def run(fn, *args):
        return fn(*args)

    return SharedMaildropLocks(SimpleNamespace(settings=settings, clients=clients, run=run), ttl)


def item(aws, user="u@example.test", mbid="mb1"):
    settings, clients, _ = aws
    k = keys.maildrop_lock_key(user, mbid)
    return clients.dynamodb.get_item(TableName=settings.state_table,
                                     Key={"pk": {"S": k["pk"]}, "sk": {"S": k["sk"]}}).get("Item")


def test_one_session_per_maildrop_across_tasks_released_by_its_owner_only(aws):
    a, b = task(aws), task(aws)

    async def scenario():
        lease = await a.acquire("u@example.test", "mb1")
        assert lease is not None and item(aws)["owner"]["S"] == lease.token
        assert await b.acquire("u@example.test", "mb1") is None  # the other task: IN-USE
        assert await b.acquire("u@example.test", "mb2") is not None  # another mailbox is another lock
        await a.release(lease)
        assert item(aws) is None
        again = await b.acquire("U@Example.test", "mb1")  # account names are case-insensitive keys
        assert again is not None
        b._delete(lease)  # a stale owner's release never removes the new owner's lock
        assert item(aws)["owner"]["S"] == again.token
        await b.release(again)

    asyncio.run(scenario())


def test_a_dead_tasks_lock_goes_stale_after_the_ttl(aws):
    a, b = task(aws, ttl=60), task(aws, ttl=60)

    async def scenario():
        with clock.frozen(1_800_000_000) as c:
            dead = await a.acquire("u@example.test", "mb1")
            dead.heartbeat.cancel()  # the task died: no heartbeat, no release
            c.advance(59)
            assert await b.acquire("u@example.test", "mb1") is None
            c.advance(3)
            taken = await b.acquire("u@example.test", "mb1")
            assert taken is not None and item(aws)["owner"]["S"] == taken.token
            assert not a._renew(dead)  # the dead one, had it lived, learns it lost the lock
            await b.release(taken)

    asyncio.run(scenario())


def test_the_heartbeat_keeps_the_lock_and_notices_its_loss(aws):
    a, b = task(aws, ttl=0.3), task(aws, ttl=0.3)  # renewed every 0.1 s

    async def scenario():
        with clock.frozen(1_800_000_000) as c:
            lease = await a.acquire("u@example.test", "mb1")
            c.advance(10)  # long past the first expiry ...
            await asyncio.sleep(0.25)
            assert int(item(aws)["expires"]["N"]) >= 1_800_000_010  # ... but renewed
            assert not lease.lost and await b.acquire("u@example.test", "mb1") is None
            settings, clients, _ = aws
            k = keys.maildrop_lock_key("u@example.test", "mb1")
            clients.dynamodb.delete_item(TableName=settings.state_table,
                                         Key={"pk": {"S": k["pk"]}, "sk": {"S": k["sk"]}})
            await asyncio.sleep(0.25)
            assert lease.lost  # QUIT will then commit nothing
            await a.release(lease)

    asyncio.run(scenario())


def test_a_state_table_fault_is_a_temporary_error_never_a_second_session(aws):
    a = task(aws)
    a.table = "no-such-table"

    async def scenario():
        with pytest.raises(StoreUnavailable):
            await a.acquire("u@example.test", "mb1")

    asyncio.run(scenario())


def test_the_gateway_picks_shared_locks_on_aws_and_local_ones_in_memory(aws):
    settings, clients, _ = aws
    on_aws = SimpleNamespace(settings=settings, clients=clients, maildrop_locks=None)
    assert isinstance(maildrop_locks(on_aws), SharedMaildropLocks) and maildrop_locks(on_aws) is on_aws.maildrop_locks
    in_memory = SimpleNamespace(settings=settings, clients=None, maildrop_locks=None)
    assert isinstance(maildrop_locks(in_memory), MaildropLocks)
