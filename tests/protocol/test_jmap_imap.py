"""One model: JMAP and IMAP on the same account see each other's changes.

IMAP: the gateway's server over 127.0.0.1 with stdlib imaplib (a raw socket
for IDLE); JMAP: the layer the HTTPS function calls, on the same store.
"""

from __future__ import annotations

import imaplib
import re
import socket
import time

import pytest

from postern import mailboxes
from postern.jmap import api, session
from postern.jmap.account import Account
from postern_gateway.imap.server import start_imap

from helpers import HOST, ServerThread, memory_backend

USER, PW = "alice@example.test", "secret-pw"
MSG = (b"From: Bob <bob@remote.test>\r\nTo: alice@example.test\r\nSubject: one model\r\n"
       b"Message-ID: <om@remote.test>\r\n\r\nbody\r\n")
USING = [session.CORE, session.MAIL]


@pytest.fixture
def backend():
    b = memory_backend(imap_poll_interval=0.05)
    b.directory.add_domain("example.test")
    b.directory.add_user(USER, PW)
    mailboxes.ensure_defaults(b.store, USER)
    return b


@pytest.fixture
def server(backend):
    with ServerThread(start_imap, backend) as srv:
        yield srv


def jmap(backend, name, args):
    acct = Account(USER, backend.store)
    out = api.handle(acct, {"using": USING, "methodCalls": [[name, {"accountId": acct.id, **args}, "c"]]})
    kind, body, _ = out["methodResponses"][0]
    assert kind == name, body
    return body


def flags_of(c: imaplib.IMAP4, uid: int = 1) -> set[str]:
    typ, data = c.uid("FETCH", str(uid), "(FLAGS)")
    assert typ == "OK"
    return set(re.search(rb"FLAGS \(([^)]*)\)", data[0]).group(1).decode().split()) - {"\\Recent"}


def flags_become(c: imaplib.IMAP4, want: set[str], uid: int = 1) -> set[str]:
    """The session learns of another writer's change from the change log (its watcher); NOOP asks."""
    deadline = time.monotonic() + 10
    while True:
        c.noop()
        got = flags_of(c, uid)
        if got == want or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def test_jmap_keywords_show_in_imap_fetch_flags_and_imap_stores_show_in_email_changes(server, backend):
    res = mailboxes.append(backend.store, USER, "INBOX", MSG)  # the store Lambda's ingest path
    c = imaplib.IMAP4(HOST, server.port, timeout=10)
    c.login(USER, PW)
    c.select("INBOX")
    assert flags_of(c) == set()
    state = jmap(backend, "Email/get", {"ids": []})["state"]
    # JMAP -> IMAP
    jmap(backend, "Email/set", {"update": {res.email_id: {"keywords/$seen": True, "keywords/$flagged": True,
                                                           "keywords/project-x": True}}})
    assert flags_become(c, {"\\Seen", "\\Flagged", "project-x"}) == {"\\Seen", "\\Flagged", "project-x"}
    changed = jmap(backend, "Email/changes", {"sinceState": state})
    assert changed["updated"] == [res.email_id] and changed["created"] == []
    state = changed["newState"]
    # IMAP -> JMAP
    assert c.uid("STORE", "1", "-FLAGS", "(\\Seen)")[0] == "OK"
    assert c.uid("STORE", "1", "+FLAGS", "($Forwarded)")[0] == "OK"
    changed = jmap(backend, "Email/changes", {"sinceState": state})
    assert changed["updated"] == [res.email_id] and changed["destroyed"] == []
    got = jmap(backend, "Email/get", {"ids": [res.email_id], "properties": ["keywords"]})["list"][0]
    assert got["keywords"] == {"$flagged": True, "project-x": True, "$forwarded": True}
    # IMAP MOVE keeps the Email id (RFC 8474 EMAILID): an update in JMAP, not a new Email
    state = jmap(backend, "Email/get", {"ids": []})["state"]
    assert c.uid("MOVE", "1", "Archive")[0] == "OK"
    changed = jmap(backend, "Email/changes", {"sinceState": state})
    assert changed["updated"] == [res.email_id] and changed["created"] == [] and changed["destroyed"] == []
    archive = next(m["id"] for m in jmap(backend, "Mailbox/get", {})["list"] if m["role"] == "archive")
    got = jmap(backend, "Email/get", {"ids": [res.email_id], "properties": ["mailboxIds"]})["list"][0]
    assert got["mailboxIds"] == {archive: True}
    # IMAP EXPUNGE -> destroyed
    c.select("Archive")
    c.uid("STORE", "1", "+FLAGS.SILENT", "(\\Deleted)")
    c.expunge()
    changed = jmap(backend, "Email/changes", {"sinceState": changed["newState"]})
    assert changed["destroyed"] == [res.email_id]
    c.logout()


def test_a_jmap_keyword_change_reaches_an_imap_idle_session(server, backend):
    res = mailboxes.append(backend.store, USER, "INBOX", MSG)
    sock = socket.create_connection((HOST, server.port), timeout=10)
    f = sock.makefile("rb")
    f.readline()
    sock.sendall(f"a LOGIN {USER} {PW}\r\nb SELECT INBOX\r\nc IDLE\r\n".encode())
    while not f.readline().startswith(b"+ "):
        pass
    t0 = time.monotonic()
    jmap(backend, "Email/set", {"update": {res.email_id: {"keywords/$flagged": True}}})
    line = f.readline()
    while not line.startswith(b"* 1 FETCH"):
        line = f.readline()
    assert b"\\Flagged" in line
    assert time.monotonic() - t0 < 10  # liveness ceiling with a wide margin
    sock.sendall(b"DONE\r\nd LOGOUT\r\n")
    sock.close()


def test_a_mailbox_created_over_jmap_is_listed_by_imap_and_imap_renames_keep_its_id(server, backend):
    made = jmap(backend, "Mailbox/set", {"create": {"n": {"name": "Reisen"}}})["created"]["n"]["id"]
    c = imaplib.IMAP4(HOST, server.port, timeout=10)
    c.login(USER, PW)
    typ, data = c.list()
    assert any(b'"Reisen"' in ln or ln.endswith(b" Reisen") for ln in data)
    state = jmap(backend, "Mailbox/get", {"ids": []})["state"]
    assert c.rename("Reisen", "Travel")[0] == "OK"
    changed = jmap(backend, "Mailbox/changes", {"sinceState": state})
    assert changed["updated"] == [made]
    assert jmap(backend, "Mailbox/get", {"ids": [made], "properties": ["name"]})["list"][0]["name"] == "Travel"
    c.logout()
