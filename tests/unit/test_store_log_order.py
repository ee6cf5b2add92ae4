"""Change numbers in commit order: concurrent writers on one mailbox while watchers follow the log.

Four writers (each its own store instance, as gateway tasks and store Lambdas
are) append, flag and expunge on one mailbox through the DynamoDB store on moto.
Two watchers follow the account's change log at the same time:

* a plain follower (``postern_local.logrun``) that reads ``follow(user, last)``
  in a loop and checks each number is the one after the last it saw;
* the gateway's own IMAP watcher (``imap.watcher.Runtime``: the per-account
  Feed polling every 50 ms, the mailbox's Watcher and index, and a selected
  session's :class:`~postern_gateway.imap.selected.Selected` view), over its
  own store instance and the gateway's executor, as a third gateway task.

Every change is seen exactly once, in number order, by both; replaying what was
seen gives the mailbox, and the session would tell its client exactly the
mailbox's messages and flags. (``bench/store_order.py`` prints the same run
with write units per change and the conflict rate.)
"""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

from postern import mailboxes
from postern.store.engine import LogStore
from postern_local.logrun import run

pytestmark = pytest.mark.dynamo
USER = "order@example.test"


def test_concurrent_writers_every_change_seen_exactly_once_in_order():
    from moto import mock_aws

    from postern.aws import Clients
    from postern.config import Settings
    from postern.store.dynamo import DynamoMailStore
    from postern_local.moto_atomic import install
    from postern_local.template import load_template, resources_of_type

    install()
    with mock_aws():
        clients = Clients(Settings())
        props = resources_of_type(load_template(), "AWS::DynamoDB::Table")["MailTable"]["Properties"]
        clients.dynamodb.create_table(TableName="order-mail", AttributeDefinitions=props["AttributeDefinitions"],
                                      KeySchema=props["KeySchema"], BillingMode="PAY_PER_REQUEST")
        clients.s3.create_bucket(Bucket="order-bucket")
        settings = Settings.from_env({**os.environ, "POSTERN_MAIL_TABLE": "order-mail", "POSTERN_BUCKET": "order-bucket"})
        _run(DynamoMailStore(settings, clients))


def _run(dynamo_store) -> None:
    def make_store():
        return LogStore(dynamo_store.items, dynamo_store.blobs, spool_prefix=dynamo_store.spool_prefix,
                        message_prefix=dynamo_store.message_prefix)

    setup = make_store()
    mailboxes.ensure_defaults(setup, USER)
    with GatewayWatcher(make_store(), USER, "INBOX") as gw:
        f = run(make_store, USER, writers=4, ops=6, seed=3)
        head = setup.follow(USER, 0)[-1].modseq
        gw.wait_until(head)
    print("\n" + f.report())
    assert not f.errors, f.errors
    assert f.changes >= 16, f.report()  # appends, flag changes and expunges were made
    assert f.seen == f.changes and f.out_of_order == 0 and f.duplicates == 0 and f.missing == 0, f.report()
    assert f.replay_matches, f.report()
    assert f.conflicts > 0, "the writers never raced: the test did not test ordering"

    # the gateway's watcher: each change of the mailbox handed to it once, in number order, none missed
    mb = setup.get_mailbox(USER, "INBOX")
    expected = [c.modseq for c in setup.follow(USER, gw.start) if c.mailbox_id == mb.mailbox_id]
    print(f"gateway watcher: {len(gw.seen)} changes of INBOX applied, {len(expected)} in the log")
    assert gw.seen == expected and len(expected) >= 16
    actual = {m.uid: m.flags for m in setup.list_messages(mb, light=True)}
    assert gw.index == actual, "the watcher's index is not the mailbox"
    assert gw.session == actual, "the selected session would not tell its client the mailbox"


class GatewayWatcher:
    """The IMAP watcher of one gateway task, on its own event loop thread, with one read-only session."""

    def __init__(self, store, user: str, name: str):
        from postern.config import Settings
        from postern.directory import memory_directory
        from postern_gateway.backend import Backend
        from postern_gateway.blocking import Blocking

        self.backend = Backend(settings=Settings().replace(imap_poll_interval=0.05), store=store,
                               directory=memory_directory(), blocking=Blocking(2))
        self.user, self.name = user, name
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="gateway-watcher", daemon=True)
        self.seen: list[int] = []  # change numbers handed to the mailbox's Watcher, in order
        self.start = 0

    def _call(self, coro, timeout: float = 30.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _open(self) -> None:
        from postern_gateway.imap.selected import Selected
        from postern_gateway.imap.watcher import Runtime

        mb = await self.backend.mail.get_mailbox(self.user, self.name)
        self.watcher = await Runtime.of(self.backend).open(mb)
        self.start = self.watcher.index.pos
        applied = self.watcher.on_change

        async def on_change(ch):
            self.seen.append(ch.modseq)
            await applied(ch)

        self.watcher.on_change = on_change  # what Feed/catch_up call for each change of this mailbox
        self.selected = Selected(self.watcher, self.watcher.mb, readonly=True)
        self.watcher.subscribe(self.selected)  # starts the account's Feed (polls every 50 ms)

    def __enter__(self) -> GatewayWatcher:
        self.thread.start()
        self._call(self._open())
        return self

    def wait_until(self, head: int, timeout: float = 30.0) -> None:
        """A condition wait: the feed has read the log through ``head``."""
        deadline = time.monotonic() + timeout
        while self.watcher.index.pos < head:
            assert time.monotonic() < deadline, f"watcher at {self.watcher.index.pos}, log at {head}"
            time.sleep(0.02)

    async def _views(self):
        idx = {u: m.flags for u, m in self.watcher.index.metas.items()}
        sel = self.selected
        view = {u: m.flags for u, m in sel.metas.items() if u not in sel.pending_expunge}
        view.update({u: m.flags for u, m in sel.pending_new.items()})
        view.update({u: m.flags for u, m in sel.pending_flags.items() if u in view})
        return idx, view

    def __exit__(self, *exc) -> None:
        try:
            if exc[0] is None:
                self.index, self.session = self._call(self._views())
            self._call(self._close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.backend.blocking.shutdown()

    async def _close(self) -> None:
        self.watcher.unsubscribe(self.selected)
