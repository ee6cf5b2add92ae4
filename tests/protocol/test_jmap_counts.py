"""JMAP Mailbox/get counts (RFC 8621 §2) are kept by the store and always equal a full recount.

A seeded random sequence of what changes a mailbox's membership or \\Seen, over the real paths:
deliveries through the store function's ``deliver`` (Sieve fileinto with flags, each SQS record
handled twice), IMAP over imaplib (STORE, COPY into another mailbox and into the same one, MOVE,
EXPUNGE, APPEND), JMAP over HTTP (keywords, mailboxIds moves and copies, destroy, drafts created)
and POP3 over poplib (DELE). After each round every mailbox's totalEmails, unreadEmails,
totalThreads and unreadThreads equal a recount of the store's entries written here, and a mailbox
whose counters predate this layout (no thread counters, no members items) is recounted once and
kept exact from then on, also when a delivery lands while it is being recounted.
"""

from __future__ import annotations

import base64
import imaplib
import json
import poplib
import random
import ssl
import urllib.request

import pytest

from postern import mailboxes
from postern.envelope import StoreJob
from postern.items import MemoryItems
from postern.jmap import session
from postern.pipeline import store as pipeline
from postern.sieve.delivery import SieveDelivery
from postern.sieve.effects import Effects, MemoryOutlet, MemoryState
from postern.sieve.repository import ScriptRepository
from postern.store import counts as C
from postern_gateway.imap.server import start_imap
from postern_gateway.pop3.server import start_pop3

from helpers import HOST, ServerThread, memory_backend
from jmap_http import JmapHttps

USER, PW = "alice@example.test", "secret-pw"
USING = [session.CORE, session.MAIL]
BOXES = ["INBOX", "Archive", "Trash", "Lists"]
SCRIPT = ('require ["fileinto", "mailbox", "imap4flags"];\n'
          'if header :contains "subject" "[list]" { fileinto :create "Lists"; }\n'
          'elsif header :contains "subject" "[read]" { fileinto :flags "\\\\Seen" "Archive"; }\n')


class World:
    def __init__(self, backend, tmp_path):
        self.b = backend
        self.store = backend.store
        self.repo = ScriptRepository(MemoryItems())
        self.outlet = MemoryOutlet()
        self.sieve = SieveDelivery(self.repo, Effects(self.outlet, MemoryState()), backend.directory,
                                   hostname="mx.example.test", body_reader=self.outlet.read_spool)
        self.repo.put(USER, "main", SCRIPT)
        self.repo.activate(USER, "main")
        self.sent: list[str] = []  # Message-IDs delivered so far (replies pick from them: threads)
        self.n = 0
        self.jmap_srv = JmapHttps(self.store, backend.directory, tmp_path)
        self.ctx = ssl.create_default_context(cafile=self.jmap_srv.ca_file)

    # --- deliveries: the store function's deliver, each record handled twice ---------------
    def deliver(self, rnd: random.Random) -> None:
        self.n += 1
        mid = f"<m{self.n}@remote.test>"
        head = f"From: Bob <bob@remote.test>\r\nTo: {USER}\r\nMessage-ID: {mid}\r\n"
        if self.sent and rnd.random() < 0.6:
            parent = rnd.choice(self.sent)
            head += f"In-Reply-To: {parent}\r\nReferences: {self.sent[0] if rnd.random() < 0.3 else parent}\r\n"
        tag = rnd.choice(["", "", "[list] ", "[read] "])
        raw = (head + f"Subject: {tag}message {self.n}\r\n\r\nbody {self.n}\r\n").encode()
        self.sent.append(mid)
        qid = f"q{self.n}"
        key = f"spool/{qid}"
        self.store.blobs.put(key, raw)  # what the gateway's S3 PUT does
        self.outlet.spool[key] = raw
        job = StoreJob(queue_id=qid, s3_key=key, user=USER, mail_from="bob@remote.test", original_recipient=USER,
                       received_at=1_800_000_000.0 + self.n, mailbox="INBOX", size=len(raw),
                       header=pipeline_header(raw), auth={}, spam={}, trace_headers="")
        for _ in range(2):  # SQS delivers at least once: the handler runs again on the same record
            pipeline.deliver(job, self.store, 0, self.sieve)

    # --- JMAP over HTTP ----------------------------------------------------------------------
    def jmap(self, calls: list) -> list:
        body = json.dumps({"using": USING, "methodCalls": calls}).encode()
        req = urllib.request.Request(f"https://{self.jmap_srv.host}/jmap/api", data=body, method="POST", headers={
            "Content-Type": "application/json",
            "Authorization": "Basic " + base64.b64encode(f"{USER}:{PW}".encode()).decode()})
        with urllib.request.urlopen(req, context=self.ctx, timeout=30) as r:
            return json.loads(r.read())["methodResponses"]

    def account(self) -> str:
        from postern.jmap.account import account_id

        return account_id(USER)

    def mailbox_counts(self) -> dict[str, tuple[int, int, int, int]]:
        (name, got, _), = self.jmap([["Mailbox/get", {"accountId": self.account()}, "m"]])
        assert name == "Mailbox/get", got
        return {m["id"]: (m["totalEmails"], m["unreadEmails"], m["totalThreads"], m["unreadThreads"])
                for m in got["list"]}

    def jmap_op(self, rnd: random.Random) -> None:
        a = self.account()
        ids = {m.name: m.mailbox_id for m in self.store.list_mailboxes(USER)}
        src = rnd.choice([n for n in BOXES if n in ids])
        (_, q, _), = self.jmap([["Email/query", {"accountId": a, "filter": {"inMailbox": ids[src]}}, "q"]])
        if not q["ids"]:
            return self.jmap_create(rnd, ids)
        eid = rnd.choice(q["ids"])
        dest = rnd.choice([n for n in BOXES if n in ids])
        kind = rnd.choice(["seen", "unseen", "move", "add", "destroy", "create"])
        patch = {"seen": {"keywords/$seen": True}, "unseen": {"keywords/$seen": None},
                 "move": {"mailboxIds": {ids[dest]: True}},
                 "add": {f"mailboxIds/{ids[dest]}": True}}.get(kind)
        if kind == "create":
            return self.jmap_create(rnd, ids)
        args = {"accountId": a, "destroy": [eid]} if kind == "destroy" else {"accountId": a, "update": {eid: patch}}
        (name, got, _), = self.jmap([["Email/set", args, "s"]])
        assert name == "Email/set" and not got.get("notUpdated") and not got.get("notDestroyed"), got

    def jmap_create(self, rnd: random.Random, ids: dict) -> None:
        kw = {"$draft": True} if rnd.random() < 0.5 else {"$draft": True, "$seen": True}
        create = {"d": {"mailboxIds": {ids["Drafts"]: True}, "keywords": kw, "subject": f"draft {rnd.random()}",
                        "from": [{"email": USER}], "bodyValues": {"b": {"value": "hello"}},
                        "textBody": [{"partId": "b", "type": "text/plain"}]}}
        (name, got, _), = self.jmap([["Email/set", {"accountId": self.account(), "create": create}, "s"]])
        assert name == "Email/set" and got["created"], got


def check_conversations(world: World) -> None:
    """Each mailbox's conversation view, first page: Email/query with collapseThreads (the page path, with
    calculateTotal) against the same query without a limit (the general path, over the whole account),
    and Thread/get of the page's Threads (by id: the members items) against the entries."""
    a = world.account()
    truth = threads_truth(world.store)
    for mbid, counts in recount(world.store).items():
        q = {"accountId": a, "filter": {"inMailbox": mbid}, "collapseThreads": True,
             "sort": [{"property": "receivedAt", "isAscending": False}]}
        props = ["threadId", "mailboxIds", "keywords", "receivedAt"]
        page, got, threads = world.jmap([  # the page path: Email/get through the page's threads
            ["Email/query", {**q, "position": 0, "limit": 5, "calculateTotal": True}, "p"],
            ["Email/get", {"accountId": a, "#ids": {"resultOf": "p", "name": "Email/query", "path": "/ids"},
                           "properties": props}, "g"],
            ["Thread/get", {"accountId": a, "#ids": {"resultOf": "g", "name": "Email/get", "path": "/list/*/threadId"}},
             "t"]])
        full, again = world.jmap([  # the general path over the whole account, and Email/get from that view
            ["Email/query", q, "f"],
            ["Email/get", {"accountId": a, "ids": page[1]["ids"], "properties": props}, "g"]])
        assert page[1]["ids"] == full[1]["ids"][:5] and page[1]["total"] == len(full[1]["ids"]) == counts[2]
        assert got[1]["list"] == again[1]["list"] and not got[1]["notFound"]
        assert {t["id"]: t["emailIds"] for t in threads[1]["list"]} == \
            {t["threadId"]: truth[t["threadId"]] for t in got[1]["list"]}


def threads_truth(store) -> dict[str, list[str]]:
    """Every Thread's Email ids in receivedAt order (then id), from the entries of every mailbox."""
    received: dict[str, tuple[str, float]] = {}  # Email id -> (thread, earliest date)
    for listed in store.list_mailboxes(USER):
        mb = store.get_mailbox(USER, listed.name)
        for m in store.list_messages(mb, light=True):
            eid = m.email_id or f"E{mb.mailbox_id[:8]}{m.uid}"
            tid, when = received.get(eid, (m.thread_id or "T" + eid[1:], m.internaldate))
            received[eid] = (tid, min(when, m.internaldate))
    out: dict[str, list[str]] = {}
    for eid, (tid, when) in sorted(received.items(), key=lambda kv: (kv[1][1], kv[0])):
        out.setdefault(tid, []).append(eid)
    return out


def pipeline_header(raw: bytes):
    from postern.store.summary import inline_header

    return inline_header(raw)


# --- IMAP / POP3 --------------------------------------------------------------------------
def imap_op(c: imaplib.IMAP4, rnd: random.Random, store) -> None:
    names = [n for n in BOXES if n in {m.name for m in store.list_mailboxes(USER)}]
    box = rnd.choice(names)
    assert c.select(box)[0] == "OK"
    typ, data = c.uid("SEARCH", "ALL")
    uids = data[0].split()
    kind = rnd.choice(["seen", "unseen", "copy", "selfcopy", "move", "expunge", "append"])
    if kind == "append" or not uids:
        flags = "(\\Seen)" if rnd.random() < 0.5 else "()"
        msg = f"From: c@remote.test\r\nMessage-ID: <a{rnd.random()}@x>\r\nSubject: appended\r\n\r\nhi\r\n".encode()
        assert c.append(box, flags, None, msg)[0] == "OK"
        return
    pick = b",".join(rnd.sample(uids, min(len(uids), rnd.randint(1, 3)))).decode()
    dest = box if kind == "selfcopy" else rnd.choice([n for n in names if n != box] or names)
    if kind == "seen":
        typ, _ = c.uid("STORE", pick, "+FLAGS.SILENT", "(\\Seen)")
    elif kind == "unseen":
        typ, _ = c.uid("STORE", pick, "-FLAGS.SILENT", "(\\Seen)")
    elif kind in ("copy", "selfcopy"):
        typ, _ = c.uid("COPY", pick, dest)
    elif kind == "move":
        typ, _ = c.uid("MOVE", pick, dest)
    else:
        assert c.uid("STORE", pick, "+FLAGS.SILENT", "(\\Deleted)")[0] == "OK"
        typ, _ = c.expunge()
    assert typ == "OK", kind


def pop3_op(port: int, rnd: random.Random) -> None:
    p = poplib.POP3(HOST, port, timeout=30)
    p.user(USER)
    p.pass_(PW)
    count, _ = p.stat()
    for n in rnd.sample(range(1, count + 1), min(count, rnd.randint(1, 2))):
        p.dele(n)
    p.quit()


# --- the reference ------------------------------------------------------------------------
def recount(store) -> dict[str, tuple[int, int, int, int]]:
    """Every mailbox's four counts from its entries, as RFC 8621 §2 reads them per mailbox (store.counts)."""
    out = {}
    for listed in store.list_mailboxes(USER):
        mb = store.get_mailbox(USER, listed.name)
        emails: dict[str, bool] = {}
        threads: dict[str, bool] = {}
        for m in store.list_messages(mb, light=True):
            eid = m.email_id or f"E{mb.mailbox_id[:8]}{m.uid}"
            tid = m.thread_id or "T" + eid[1:]
            unread = "\\Seen" not in m.flags
            emails[eid] = emails.get(eid, False) or unread
            threads[tid] = threads.get(tid, False) or unread
        out[mb.mailbox_id] = (len(emails), sum(emails.values()), len(threads), sum(threads.values()))
    return out


def table(store) -> dict[tuple[str, str], dict]:
    """Every item of the mail table (the in-memory twin's dump, or a Scan of moto's table)."""
    items = store.items
    if hasattr(items, "dump"):
        return items.dump()
    from postern.items import deserialize

    out, kw = {}, {"TableName": items.table}
    while True:
        page = items._c.scan(**kw)
        for raw in page["Items"]:
            it = deserialize(raw)
            out[(it["pk"], it["sk"])] = it
        if "LastEvaluatedKey" not in page:
            return out
        kw["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def members_of(store) -> dict[tuple[str, str], tuple[set, set]]:
    """What the members items of every counting mailbox say, against the entries (non-empty ones)."""
    everything = table(store)
    states = {it["mb"]: it for (pk, sk), it in everything.items() if pk.startswith("M#") and sk == "#"}
    out = {}
    for (pk, sk), it in everything.items():
        mbid, _, gen = sk.partition("#")
        st = states.get(mbid)
        assert not (it.get("m") and "expires" in it), it  # only an item the thread has left may expire
        if pk.startswith("H#") and st is not None and C.counting(st) and C.generation(st) == gen and it.get("m"):
            out[(mbid, pk.rpartition("#")[2])] = (set(it.get("m") or ()), set(it.get("s") or ()))
    return out


def members_recount(store) -> dict[tuple[str, str], tuple[set, set]]:
    out = {}
    for listed in store.list_mailboxes(USER):
        mb = store.get_mailbox(USER, listed.name)
        for m in store.list_messages(mb, light=True):
            eid = m.email_id or f"E{mb.mailbox_id[:8]}{m.uid}"
            got = out.setdefault((mb.mailbox_id, m.thread_id or "T" + eid[1:]), (set(), set()))
            got[0].add(m.uid)
            if "\\Seen" not in m.flags:
                got[1].add(m.uid)
    return out


def strip_counters(store) -> None:
    """Make every mailbox look as written before the thread counters: no tt/ut/tg, no members items."""
    items = store.items
    for (pk, sk), it in items.dump().items():
        if pk.startswith("H#"):
            items.delete({"pk": pk, "sk": sk})
        elif pk.startswith("M#") and sk == "#":
            for k in ("tt", "ut", "tg"):
                it.pop(k, None)
            items.put(it)


@pytest.fixture
def world(tmp_path, request):
    store = request.getfixturevalue("dynamo_store") if getattr(request, "param", "") == "dynamo" else None
    b = memory_backend(imap_poll_interval=0.05, store=store)
    b.directory.add_domain("example.test")
    b.directory.add_user(USER, PW)
    mailboxes.ensure_defaults(b.store, USER)
    w = World(b, tmp_path)
    with w.jmap_srv, ServerThread(start_imap, b) as imap, ServerThread(start_pop3, b) as pop3:
        w.imap_port, w.pop3_port = imap.port, pop3.port
        yield w


def run(world: World, rnd: random.Random, rounds: int, ops: int, conversations: bool = True) -> None:
    c = imaplib.IMAP4(HOST, world.imap_port, timeout=30)
    c.login(USER, PW)
    try:
        for _ in range(rounds):
            for _ in range(ops):
                r = rnd.random()
                if r < 0.35:
                    world.deliver(rnd)
                elif r < 0.65:
                    imap_op(c, rnd, world.store)
                elif r < 0.92:
                    world.jmap_op(rnd)
                else:
                    c.close() if c.state == "SELECTED" else None  # POP3 wants the maildrop to itself
                    pop3_op(world.pop3_port, rnd)
            assert world.mailbox_counts() == recount(world.store)
            assert members_of(world.store) == members_recount(world.store)
            if conversations:
                check_conversations(world)
    finally:
        c.logout()


@pytest.mark.parametrize("seed", [1515, 2026])
def test_counts_equal_a_recount_after_random_operations_over_every_path(world, seed):
    rnd = random.Random(seed)
    run(world, rnd, rounds=6, ops=25)
    states = {m.mailbox_id: world.store.items.get({"pk": f"M#{USER}#{m.mailbox_id}", "sk": "#"})
              for m in world.store.list_mailboxes(USER)}
    assert all(C.counting(st) for st in states.values())  # kept at each write, not recounted
    assert any(st.get("dp") for st in states.values())  # a COPY into the same mailbox happened


@pytest.mark.parametrize("world", ["dynamo"], indirect=True)
def test_counts_equal_a_recount_on_the_dynamodb_store(world):
    """The same over DynamoDB (moto): set ADD/DELETE and their conditions as DynamoDB applies them."""
    run(world, random.Random(99), rounds=2, ops=20, conversations=False)
    check_conversations(world)


def test_a_legacy_mailbox_is_recounted_once_then_kept(world):
    rnd = random.Random(7)
    run(world, rnd, rounds=1, ops=40)
    strip_counters(world.store)
    state_of = lambda mbid: world.store.items.get({"pk": f"M#{USER}#{mbid}", "sk": "#"})  # noqa: E731
    inbox = world.store.get_mailbox(USER, "INBOX").mailbox_id
    assert not C.counting(state_of(inbox))
    # a delivery lands while the first read recounts INBOX: counting must not start from that read
    real = world.store.list_messages
    landed = []

    def racing(mb, *a, **kw):
        out = list(real(mb, *a, **kw))
        if mb.mailbox_id == inbox and not landed:
            landed.append(1)
            world.deliver(rnd)
        return iter(out)

    world.store.list_messages = racing
    try:
        world.mailbox_counts()
    finally:
        del world.store.list_messages
    assert landed and not C.counting(state_of(inbox))
    assert world.mailbox_counts() == recount(world.store)  # recounted, and counting starts now
    assert C.counting(state_of(inbox))
    run(world, rnd, rounds=3, ops=25)
    strip_counters(world.store)  # Thread/get while some mailbox does not count threads: the account is read
    check_conversations(world)
    assert world.mailbox_counts() == recount(world.store)


def test_a_change_rolled_forward_twice_counts_once(world):
    rnd = random.Random(11)
    run(world, rnd, rounds=1, ops=30)
    store = world.store
    last = int(store.items.get({"pk": f"U#{USER}", "sk": "ACCT"})["ms"])
    for n in range(last, 0, -1):  # every change materialised again, late (a stalled writer resuming), newest first
        rec = store.items.get({"pk": f"L#{USER}", "sk": f"{n:020d}"})
        if rec is not None:
            store.materialiser.apply(rec)
    assert world.mailbox_counts() == recount(store)
    assert members_of(store) == members_recount(store)
    run(world, rnd, rounds=3, ops=25)  # what later changes read of the members items was not disturbed


def test_mailbox_get_reads_no_message_entry(world):
    rnd = random.Random(3)
    for _ in range(60):
        world.deliver(rnd)
    seen = []
    real = world.store.items.query

    def query(pk, *a, **kw):
        seen.append(pk)
        return real(pk, *a, **kw)

    world.store.items.query = query
    try:
        counts = world.mailbox_counts()
    finally:
        del world.store.items.query
    assert sum(c[0] for c in counts.values()) == 60
    assert not [pk for pk in seen if pk.startswith("M#")], seen  # states come by BatchGetItem, entries never


@pytest.mark.parametrize("members_batch", [1000, 0])
def test_the_conversation_views_first_page_reads_no_whole_mailbox(world, monkeypatch, members_batch):
    """Mailbox/get and the webmail's thread view page (Email/query collapseThreads with calculateTotal,
    Email/get, Thread/get by result reference) in one request read no mailbox's entries in full
    (Thread/get's members items by BatchGetItem, and by one Query per thread for many mailboxes)."""
    from postern.store import engine

    monkeypatch.setattr(engine, "MEMBERS_BATCH", members_batch)
    rnd = random.Random(4)
    for _ in range(80):
        world.deliver(rnd)
    inbox = world.store.get_mailbox(USER, "INBOX")
    whole, by_id = [], []
    real, real_find = world.store.list_messages, world.store.find_emails
    world.store.list_messages = lambda mb, *a, **kw: whole.append(mb.name) or real(mb, *a, **kw)
    world.store.find_emails = lambda user, ids: by_id.extend(ids) or real_find(user, ids)
    a = world.account()
    try:
        boxes, page, got, threads = world.jmap([
            ["Mailbox/get", {"accountId": a}, "m"],
            ["Email/query", {"accountId": a, "filter": {"inMailbox": inbox.mailbox_id}, "collapseThreads": True,
                             "sort": [{"property": "receivedAt", "isAscending": False}], "position": 0, "limit": 10,
                             "calculateTotal": True}, "p"],
            ["Email/get", {"accountId": a, "#ids": {"resultOf": "p", "name": "Email/query", "path": "/ids"},
                           "properties": ["threadId"]}, "g"],
            ["Thread/get", {"accountId": a, "#ids": {"resultOf": "g", "name": "Email/get", "path": "/list/*/threadId"}},
             "t"]])
    finally:
        del world.store.list_messages, world.store.find_emails
    assert whole == [] and by_id == []  # Email/get found the page's Emails through their threads, not per id
    total_threads = next(m["totalThreads"] for m in boxes[1]["list"] if m["id"] == inbox.mailbox_id)
    assert page[1]["total"] == total_threads == recount(world.store)[inbox.mailbox_id][2]
    assert len(page[1]["ids"]) == 10 and len(threads[1]["list"]) == 10
    truth = threads_truth(world.store)
    assert all(t["emailIds"] == truth[t["id"]] for t in threads[1]["list"])


def test_one_email_copied_twice_into_a_mailbox_is_one_email_there(world):
    """COPY of the same message into Archive twice gives Archive two UIDs of one Email (and moving one
    of them out again leaves one): counted as one Email, one Thread, as JMAP shows them."""
    raw = b"From: b@remote.test\r\nMessage-ID: <x@r>\r\nSubject: s\r\n\r\nhi\r\n"
    mailboxes.append(world.store, USER, "INBOX", raw)
    c = imaplib.IMAP4(HOST, world.imap_port, timeout=30)
    c.login(USER, PW)
    c.select("INBOX")
    assert c.uid("COPY", "1", "Archive")[0] == "OK" and c.uid("COPY", "1", "Archive")[0] == "OK"
    archive = world.store.get_mailbox(USER, "Archive")
    assert archive.exists == 2 and archive.self_copied
    assert world.mailbox_counts()[archive.mailbox_id] == (1, 1, 1, 1) == recount(world.store)[archive.mailbox_id]
    (_, q, _), = world.jmap([["Email/query", {"accountId": world.account(), "filter": {"inMailbox": archive.mailbox_id},
                                              "sort": [{"property": "receivedAt", "isAscending": False}],
                                              "limit": 50, "calculateTotal": True}, "q"]])
    assert q["total"] == 1 and len(q["ids"]) == 1  # the page path's total is not EXISTS here
    c.select("Archive")
    assert c.uid("STORE", "1", "+FLAGS.SILENT", "(\\Seen)")[0] == "OK"
    assert world.mailbox_counts()[archive.mailbox_id] == (1, 1, 1, 1)  # UID 2 of that Email is still unseen
    assert c.uid("MOVE", "2", "Trash")[0] == "OK"
    assert world.mailbox_counts() == recount(world.store)
    assert world.mailbox_counts()[archive.mailbox_id] == (1, 0, 1, 0)
    c.logout()
