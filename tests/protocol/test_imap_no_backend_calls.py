"""Issue 12: the commands the gateway can answer from its own state make no backend call.

`make load` holds IMAP NOOP, IDLE start and FETCH FLAGS to 5x their unloaded p99: they must not
wait for a backend call that other sessions' work is queued in front of. With the change feed
live (its notices wake the account's watcher), a selected session's FETCH 1:* (FLAGS), NOOP and
IDLE ... DONE are answered from the mailbox index: every executor call made meanwhile is counted
(over a real imaplib client) and there is none. Without a live feed NOOP reads the log, as before.
"""

from __future__ import annotations

import functools
import imaplib
from types import SimpleNamespace

from helpers import ServerThread, memory_backend

from postern_gateway.imap.server import start_imap
from postern_gateway.imap.watcher import Runtime

USER, PW = "alice@example.test", "secret"


def counted_backend(live: bool):
    # no safety-net read of the log during the test: a feed that is live is trusted
    backend = memory_backend(change_feed_poll_interval=3600.0, imap_poll_interval=3600.0)
    backend.directory.add_domain("example.test")
    backend.directory.add_user(USER, PW)
    backend.store.ensure_mailboxes(USER)
    for i in range(3):
        backend.store.append(USER, "INBOX", f"Subject: {i}\r\n\r\nbody {i}\r\n".encode())
    Runtime.of(backend).change_feed = SimpleNamespace(live=live)
    calls: list[str] = []
    real = backend.blocking.run

    async def run(fn, *args, **kwargs):
        calls.append(getattr(fn, "__name__", repr(fn)))
        return await real(fn, *args, **kwargs)

    backend.blocking.run = run
    store = backend.store
    for name in ("follow", "list_messages", "get_messages", "get_mailbox", "read", "claim_recent", "usage"):
        real_read = getattr(store, name)

        @functools.wraps(real_read)
        def touched(*args, _real=real_read, _name=name, **kwargs):  # a store read, however it is made
            calls.append("store." + _name)
            return _real(*args, **kwargs)

        setattr(store, name, touched)
    return backend, calls


def selected_commands(port, calls):
    c = imaplib.IMAP4("127.0.0.1", port, timeout=60)
    c.login(USER, PW)
    assert c.select("INBOX") == ("OK", [b"3"])
    mark = len(calls)
    typ, data = c.fetch("1:*", "(FLAGS)")
    assert typ == "OK" and len(data) == 3
    assert c.noop()[0] == "OK"
    tag = c._new_tag().decode()
    c.send(f"{tag} IDLE\r\n".encode())
    assert c.readline().startswith(b"+")
    c.send(b"DONE\r\n")
    while not (line := c.readline()).startswith(tag.encode()):
        pass
    assert line.split()[1] == b"OK"
    made = calls[mark:]
    c.logout()
    return made


def test_with_a_live_change_feed_fetch_flags_noop_and_idle_make_no_backend_call():
    backend, calls = counted_backend(live=True)
    with ServerThread(start_imap, backend) as srv:
        made = selected_commands(srv.port, calls)
    assert made == []


def test_without_a_live_change_feed_noop_and_idle_read_the_log():
    backend, calls = counted_backend(live=False)
    with ServerThread(start_imap, backend) as srv:
        made = selected_commands(srv.port, calls)
    assert made and set(made) <= {"follow", "store.follow"}, made
