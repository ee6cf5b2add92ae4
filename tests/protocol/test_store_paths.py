"""Every store path the protocols use, over loopback, against both stores: in memory and DynamoDB + S3 on moto.

One scripted IMAP session per backend walks login (default mailboxes), SELECT and
EXAMINE (\\Recent), APPEND, STORE (keywords announced, capped), COPY and MOVE,
EXPUNGE, RENAME and DELETE, IDLE and a POP3 session. Two gateway tasks over one
store (two servers, two Runtimes) show that keywords are announced and \\Recent
is arbitrated across tasks, and that a selected mailbox follows a RENAME made
elsewhere. Mailbox names go through one validator on every path, SUBSCRIBE
included, and a backend's own error text never reaches the client.

The DynamoDB runs are marked ``dynamo`` (``pytest -m dynamo`` runs just them).
"""

from __future__ import annotations

import poplib
import re

import pytest
from helpers import HOST, ServerThread, memory_backend
from helpers import wait_for as wait
from postern_gateway.imap.server import start_imap
from postern_gateway.pop3.server import start_pop3
from test_imap import MSG1, USER, Raw

PW = "secret-pw"
BACKENDS = ["memory", pytest.param("dynamo", marks=pytest.mark.dynamo)]


@pytest.fixture(params=BACKENDS)
def store(request):
    if request.param == "memory":
        from postern.store.memory import MemoryMailStore

        return MemoryMailStore()
    return request.getfixturevalue("dynamo_store")


def backend_over(store, directory=None):
    from postern.directory import memory_directory

    d = directory or memory_directory()
    b = memory_backend(store=store, directory=d, imap_poll_interval=0.05)
    if directory is None:
        d.add_domain("example.test")
        d.add_user(USER, PW, quota=10 * 1024 * 1024)
    return b


def login(srv) -> Raw:
    r = Raw(srv.port)
    assert r.cmd(f"LOGIN {USER} {PW}")[-1].split()[1] == b"OK"
    return r


def tagged(lines) -> bytes:
    return lines[-1].split(b" ", 1)[1]


def test_every_store_path_over_imap_and_pop3(store):
    b = backend_over(store)
    with ServerThread(start_imap, b) as srv:
        r = login(srv)  # login creates INBOX and the SPECIAL-USE mailboxes
        listed = b"".join(r.cmd('LIST "" *'))
        assert all(n in listed for n in (b"INBOX", b"\\Sent", b"\\Trash", b"\\Archive"))
        # APPEND (keyword), then EXAMINE shows \Recent without claiming it, SELECT claims it
        out = r.cmd(b"APPEND INBOX ($Project) {%d}\r\n" % len(MSG1) + MSG1)
        assert re.search(rb"OK \[APPENDUID \d+ 1\]", out[-1])
        out = r.cmd("EXAMINE INBOX")
        assert b"* 1 RECENT\r\n" in out and b"$Project" in out[0]
        out = r.cmd("SELECT INBOX")
        assert b"* 1 RECENT\r\n" in out and tagged(out).startswith(b"OK [READ-WRITE]")
        # STORE: a new keyword is announced (FLAGS, PERMANENTFLAGS) before the FETCH that shows it
        out = r.cmd("STORE 1 +FLAGS ($Urgent)")
        assert out[0].startswith(b"* FLAGS (") and b"$Urgent" in out[0]
        assert out[1].startswith(b"* OK [PERMANENTFLAGS (") and b"\\*)]" in out[1]
        assert out[2].startswith(b"* 1 FETCH (FLAGS (") and b"$Urgent" in out[2]
        # beyond the cap: NO [LIMIT], nothing changed
        many = " ".join(f"$k{i}" for i in range(250))
        assert tagged(r.cmd(f"STORE 1 +FLAGS ({many})")).startswith(b"NO [LIMIT]")
        assert b"$k0" not in b"".join(r.cmd("FETCH 1 (FLAGS)"))
        # COPY and MOVE (COPYUID), EXPUNGE
        assert re.search(rb"OK \[COPYUID \d+ 1 1\]", r.cmd("COPY 1 Archive")[-1])
        out = r.cmd("MOVE 1 Trash")
        assert any(b"[COPYUID" in ln for ln in out) and b"* 1 EXPUNGE\r\n" in out
        r.cmd("SELECT Archive")
        r.cmd("STORE 1 +FLAGS (\\Deleted)")
        assert b"* 1 EXPUNGE\r\n" in r.cmd("EXPUNGE")
        # RENAME with inferiors, DELETE; the hierarchy moves in one change
        assert tagged(r.cmd("CREATE Work/2024/Q1")).startswith(b"OK")
        r.cmd(b"APPEND Work/2024 {%d}\r\n" % len(MSG1) + MSG1)
        assert tagged(r.cmd("RENAME Work Old/Work")).startswith(b"OK")
        names = b"".join(r.cmd('LIST "" "Old*"'))
        assert all(n in names for n in (b'"/" Old\r\n', b"Old/Work\r\n", b"Old/Work/2024\r\n", b"Old/Work/2024/Q1"))
        assert b"* STATUS Old/Work/2024 (MESSAGES 1)" in b"".join(r.cmd("STATUS Old/Work/2024 (MESSAGES)"))
        used = store.usage(USER)
        assert tagged(r.cmd("DELETE Old/Work/2024")).startswith(b"OK")
        wait(lambda: store.usage(USER) < used)  # quota freed at once, the blob by the sweep
        # IDLE: a delivery from outside (the store Lambda) arrives
        r.cmd("SELECT INBOX")
        r.send(b"i IDLE\r\n")
        assert r.line().startswith(b"+ ")
        from postern import mailboxes

        mailboxes.append(store, USER, "INBOX", b"Subject: late\r\n\r\nx\r\n")
        assert r.line() == b"* 1 EXISTS\r\n"
        r.send(b"DONE\r\n")
        assert tagged(r.until("i")).startswith(b"OK")
        r.cmd("LOGOUT")
    # a POP3 session over the same store: RETR, DELE, QUIT expunges
    with ServerThread(start_pop3, backend_over(store, directory=b.directory)) as srv:
        p = poplib.POP3(HOST, srv.port, timeout=10)
        p.user(USER)
        p.pass_(PW)
        assert p.stat()[0] == 1
        assert b"Subject: late" in b"\r\n".join(p.retr(1)[1])
        p.dele(1)
        p.quit()
    assert store.get_mailbox(USER, "INBOX").exists == 0


def test_two_gateway_tasks_share_keywords_recent_and_renames(store):
    """Two servers with their own Runtime over one store, as two Fargate tasks behind the NLB."""
    a = backend_over(store)
    b = backend_over(store, directory=a.directory)
    with ServerThread(start_imap, a) as one, ServerThread(start_imap, b) as two:
        r1, r2 = login(one), login(two)
        r1.cmd(b"APPEND INBOX {%d}\r\n" % len(MSG1) + MSG1)
        r1.cmd(b"APPEND INBOX {%d}\r\n" % len(MSG1) + MSG1)
        out1, out2 = r1.cmd("SELECT INBOX"), r2.cmd("SELECT INBOX")
        assert b"* 2 RECENT\r\n" in out1 and b"* 0 RECENT\r\n" in out2  # one session of all tasks is first
        r2.cmd("STORE 2 +FLAGS ($Shared)")  # the other task introduces a keyword
        seen = []
        wait(lambda: seen.extend(r1.cmd("NOOP")) or any(b"FETCH" in ln for ln in seen))
        flags_at = next(i for i, ln in enumerate(seen) if ln.startswith(b"* FLAGS ("))
        fetch_at = next(i for i, ln in enumerate(seen) if b"FETCH" in ln)
        assert flags_at < fetch_at and b"$Shared" in seen[flags_at] and b"$Shared" in seen[fetch_at]
        assert any(ln.startswith(b"* OK [PERMANENTFLAGS") and b"$Shared" in ln for ln in seen[:fetch_at])
        # a RENAME made on one task: the session selected on the other follows the mailbox
        assert tagged(r2.cmd("RENAME INBOX Kept")).startswith(b"OK")
        assert tagged(r1.cmd("FETCH 2 (FLAGS)")).startswith(b"OK")
        r1.cmd("LOGOUT")
        r2.cmd("LOGOUT")


def test_mailbox_names_go_through_one_validator(store):
    b = backend_over(store)
    with ServerThread(start_imap, b) as srv:
        r = login(srv)
        long_name = "x" * 1500
        for cmd in ("SUBSCRIBE &AAA-", "SUBSCRIBE a*b", "SUBSCRIBE %", f"SUBSCRIBE {long_name}",
                    f"CREATE {long_name}", "CREATE a//b", f"SELECT {long_name}", "RENAME Sent a%b",
                    f"APPEND {long_name} {{1+}}\r\nx"):
            reply = tagged(r.cmd(cmd))
            assert reply.startswith(b"NO [CANNOT] Invalid mailbox name"), (cmd[:30], reply)
            assert b"Validation" not in reply
        assert tagged(r.cmd("SUBSCRIBE Later/Box")).startswith(b"OK")  # need not exist (RFC 3501 §6.3.6)
        r.cmd("LOGOUT")


def test_create_past_the_mailbox_limit_is_no_limit(monkeypatch):
    from postern import mailboxes
    from postern.store.memory import MemoryMailStore

    monkeypatch.setattr(mailboxes, "MAX_MAILBOXES", len(mailboxes.DEFAULT_MAILBOXES) + 1)
    with ServerThread(start_imap, backend_over(MemoryMailStore())) as srv:
        r = login(srv)
        assert tagged(r.cmd("CREATE Work")).startswith(b"OK")
        assert tagged(r.cmd("CREATE Play")) == b"NO [LIMIT] Too many mailboxes (at most 7)\r\n"
        assert tagged(r.cmd("DELETE Work")).startswith(b"OK")
        assert tagged(r.cmd("CREATE Play")).startswith(b"OK")  # a DELETE makes room at once
        r.cmd("LOGOUT")


def test_an_append_stopped_mid_command_leaves_nothing_behind():
    """The gateway stops a session while its MULTIAPPEND is in the store (the first message stored,
    the second in flight on its thread): the client never hears OK, so once the one in flight has
    ended both are undone, and no message entry, blob or spool copy is left."""
    import threading

    from postern.store.memory import MemoryMailStore

    store = MemoryMailStore()
    entered, release, calls = threading.Event(), threading.Event(), []
    real = store.append

    def slow_append(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            entered.set()
            release.wait(10)
        return real(*a, **k)

    store.append = slow_append
    with ServerThread(start_imap, backend_over(store)) as srv:
        r = login(srv)
        r.send(b"m1 APPEND INBOX {%d+}\r\n%s {%d+}\r\n%s\r\n" % (len(MSG1), MSG1, len(MSG1), MSG1))
        assert entered.wait(10)

        async def stop_sessions():
            for task in list(srv.server.imap_sessions):
                task.cancel()

        srv.call(stop_sessions)
        release.set()
        wait(lambda: store.get_mailbox(USER, "INBOX").uidnext == 3 and store.get_mailbox(USER, "INBOX").exists == 0,
             what="the stopped APPEND undone")
    assert store.blob_count() == 0 and not [k for k in store.blobs.keys() if k.startswith(store.spool_prefix)]
    assert store.usage(USER) == 0


def test_a_missing_blob_and_a_rendering_bug_are_never_called_expunged(monkeypatch):
    """One domain error for "the bytes are gone" (BlobMissing: NO [UNAVAILABLE] with its own text), and
    a bug while rendering is the internal-error reply, never NO [EXPUNGEISSUED]."""
    from postern.store.memory import MemoryMailStore
    from postern_gateway.imap.ops import fetch

    store = MemoryMailStore()
    b = backend_over(store)
    with ServerThread(start_imap, b) as srv:
        r = login(srv)
        r.cmd(b"APPEND INBOX {%d}\r\n" % len(MSG1) + MSG1)
        r.cmd(b"APPEND INBOX {%d}\r\n" % len(MSG1) + MSG1)
        r.cmd("SELECT INBOX")

        async def broken(*a, **k):
            raise KeyError("a bug in rendering")

        monkeypatch.setattr(fetch, "bodystructure", broken)
        reply = tagged(r.cmd("FETCH 1 BODYSTRUCTURE"))
        assert reply.startswith(b"NO [UNAVAILABLE]") and b"EXPUNGE" not in reply
        monkeypatch.undo()
        (meta,) = store.get_messages(store.get_mailbox(USER, "INBOX"), [1])
        store.blobs.delete(meta.blob_key)
        out = r.cmd("FETCH 1:2 (BODY.PEEK[TEXT])")
        assert tagged(out) == b"NO [UNAVAILABLE] Message content unavailable\r\n"
        assert any(ln.startswith(b"* 2 FETCH") for ln in out)  # the others are still sent
        assert tagged(r.cmd("FETCH 1 (FLAGS)")).startswith(b"OK")  # the index is intact
        r.cmd("LOGOUT")
    with ServerThread(start_pop3, backend_over(store, directory=b.directory)) as srv:
        p = poplib.POP3(HOST, srv.port, timeout=10)
        p.user(USER)
        p.pass_(PW)
        with pytest.raises(poplib.error_proto) as exc:
            p.retr(1)
        assert exc.value.args[0] == b"-ERR [SYS/PERM] Message content unavailable"  # RFC 3206: do not retry
        assert p.retr(2)[1][-1] == MSG1.rstrip(b"\r\n").split(b"\r\n")[-1]  # the session goes on
        p.quit()


def test_objectid_ids_are_stable_across_copy_move_and_rename():
    """RFC 8474: MAILBOXID survives RENAME, EMAILID survives COPY and MOVE, replies share THREADID."""
    from postern.store.memory import MemoryMailStore

    b = backend_over(MemoryMailStore())
    with ServerThread(start_imap, b) as srv:
        r = login(srv)
        assert b" OBJECTID" in b"".join(r.cmd("CAPABILITY"))
        made = re.search(rb"OK \[MAILBOXID \(([\w-]+)\)\]", r.cmd("CREATE Work")[-1]).group(1)
        reply = (b"Subject: re\r\nMessage-ID: <r@x>\r\nIn-Reply-To: <1@remote.test>\r\n\r\nx\r\n")
        r.cmd(b"APPEND INBOX {%d}\r\n" % len(MSG1) + MSG1)
        r.cmd(b"APPEND INBOX {%d}\r\n" % len(reply) + reply)
        r.cmd("SELECT INBOX")
        ids = re.findall(rb"EMAILID \(([\w-]+)\) THREADID \(([\w-]+)\)", b"".join(r.cmd("FETCH 1:2 (EMAILID THREADID)")))
        (e1, t1), (e2, t2) = ids
        assert e1 != e2 and t1 == t2  # a reply joins its parent's thread
        assert b"* SEARCH 2\r\n" in r.cmd(f"SEARCH EMAILID {e2.decode()}")
        assert b"* SEARCH 1 2\r\n" in r.cmd(f"SEARCH THREADID {t1.decode()}")
        r.cmd("COPY 1 Work")
        r.cmd("MOVE 2 Work")
        assert tagged(r.cmd("RENAME Work Job")).startswith(b"OK")
        out = b"".join(r.cmd("SELECT Job"))
        assert b"[MAILBOXID (" + made + b")]" in out
        assert b"MAILBOXID (" + made + b")" in b"".join(r.cmd("STATUS Job (MAILBOXID)"))
        moved = re.findall(rb"EMAILID \(([\w-]+)\)", b"".join(r.cmd("FETCH 1:2 (EMAILID)")))
        assert moved == [e1, e2]
        r.cmd("LOGOUT")
