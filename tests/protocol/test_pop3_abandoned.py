"""A POP3 client that leaves while its command waits on the backend (issue 12, `make load`).

Under load a client's socket timeout expired while RETR waited for the store; the session kept
the maildrop locked until that read ended, and the client, reconnecting, got -ERR [IN-USE] again
and again. Now the command is abandoned with the connection: the lock is released at once (the
read still blocked), and a lock being taken when the session went away is released when it lands.
Gated backend calls, conditions waited on: no sleeps, no timing assertions.
"""

from __future__ import annotations

import asyncio
import poplib
import threading
from types import SimpleNamespace

from helpers import ServerThread, memory_backend
from pop3_fixtures import PASSWORD, USER, Raw, populate, wait_for

from postern_gateway.pop3.lock import MaildropLocks, SharedMaildropLocks
from postern_gateway.pop3.server import start_pop3


def test_a_client_that_leaves_during_retr_frees_the_maildrop_at_once():
    backend = memory_backend()
    populate(backend)
    entered, gate = threading.Event(), threading.Event()
    real_read = backend.store.read

    def gated_read(*args, **kwargs):
        entered.set()
        gate.wait(60)
        return real_read(*args, **kwargs)

    backend.store.read = gated_read
    locks = MaildropLocks()
    mailbox_id = backend.store.get_mailbox(USER, "INBOX").mailbox_id
    with ServerThread(start_pop3, backend, locks=locks) as srv:
        try:
            gone = Raw(srv.port)
            assert gone.line().startswith(b"+OK")
            gone.send(f"USER {USER}\r\nPASS {PASSWORD}\r\n".encode())
            assert gone.line().startswith(b"+OK") and gone.line().startswith(b"+OK")
            assert f"{USER}/{mailbox_id}" in locks
            gone.send(b"RETR 1\r\n")
            assert entered.wait(30)
            gone.sock.close()  # the client's timeout: it goes, the read is still blocked
            wait_for(lambda: f"{USER}/{mailbox_id}" not in locks, 30, "the maildrop lock released")
            back = poplib.POP3("127.0.0.1", srv.port, timeout=30)  # the reconnect is served, not [IN-USE]
            back.user(USER)
            assert back.pass_(PASSWORD).startswith(b"+OK")
            assert back.stat()[0] == 3
            back.quit()
        finally:
            gate.set()


class GatedDynamo:
    """The state table's lock item calls: put_item held until ``gate``; delete_item recorded."""

    def __init__(self):
        self.entered, self.gate = threading.Event(), threading.Event()
        self.deleted = []

    def put_item(self, **kw):
        self.entered.set()
        self.gate.wait(60)

    def delete_item(self, **kw):
        self.deleted.append(kw["ExpressionAttributeValues"][":me"]["S"])


def test_a_lock_taken_while_its_session_went_away_is_released_when_it_lands():
    dynamo = GatedDynamo()

    class Backend:
        settings = SimpleNamespace(state_table="state")
        clients = SimpleNamespace(dynamodb=dynamo)

        @staticmethod
        async def run(fn, *args):
            return await asyncio.to_thread(fn, *args)

    locks = SharedMaildropLocks(Backend(), ttl=120)

    async def run():
        acquiring = asyncio.create_task(locks.acquire(USER, "mb1"))
        await asyncio.to_thread(dynamo.entered.wait, 30)
        acquiring.cancel()  # the session's command abandoned (its client left)
        await asyncio.gather(acquiring, return_exceptions=True)
        assert dynamo.deleted == []  # not landed yet: nothing to release
        dynamo.gate.set()
        for _ in range(3000):  # the put lands on its thread, then the release runs on the loop
            if dynamo.deleted:
                break
            await asyncio.sleep(0.01)
        return list(dynamo.deleted)

    deleted = asyncio.run(run())
    assert len(deleted) == 1  # the item the put created is deleted by its owner token
