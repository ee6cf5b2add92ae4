"""IMAP protocol tests: stdlib imaplib (and a raw socket where byte order matters) over 127.0.0.1.

Backend: MemoryMailStore + memory_directory() (one test over the DynamoDB store under moto).
"""

from __future__ import annotations

import base64
import imaplib
import re
import socket
import time

import pytest

from postern_gateway.imap.server import start_imap
from postern_gateway.imap.watcher import Runtime

from helpers import HOST, ServerThread, memory_backend, wait_for

USER, PW = "alice@example.test", "secret-pw"
MSG1 = (b"From: Bob <bob@remote.test>\r\nTo: alice@example.test\r\nSubject: hello there\r\n"
        b"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <1@remote.test>\r\n\r\nFirst body line\r\n")
MSG_MIME = (b"From: Carol <carol@remote.test>\r\nSubject: parts\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\npart one\r\n"
            b"--XX\r\nContent-Type: text/html\r\n\r\n<b>two</b>\r\n--XX--\r\n")

# Expected tagged replies (status, response code) for the table-driven checks.
EXPECT = {
    "login_bad": ("NO", "AUTHENTICATIONFAILED"),
    "privacy": ("NO", "PRIVACYREQUIRED"),
    "trycreate": ("NO", "TRYCREATE"),
    "readonly": ("NO", "READ-ONLY"),
    "exists": ("NO", "ALREADYEXISTS"),
}


def make_backend(**kw):
    b = memory_backend(**kw)
    b.directory.add_domain("example.test")
    b.directory.add_user(USER, PW, quota=10 * 1024 * 1024)
    b.store.ensure_mailboxes(USER)
    return b


@pytest.fixture
def backend():
    return make_backend(imap_poll_interval=0.05)


@pytest.fixture
def server(backend):
    with ServerThread(start_imap, backend) as srv:
        yield srv


def client(srv, login=True) -> imaplib.IMAP4:
    c = imaplib.IMAP4(HOST, srv.port, timeout=10)
    if login:
        c.login(USER, PW)
    return c


class Raw:
    """A byte-exact IMAP client: send a command, read until its tagged reply."""

    def __init__(self, port):
        self.sock = socket.create_connection((HOST, port), timeout=10)
        self.f = self.sock.makefile("rb")
        self.greeting = self.f.readline()
        self.n = 0

    def line(self) -> bytes:
        return self.f.readline()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def cmd(self, text: bytes | str, tag: str | None = None) -> list[bytes]:
        if isinstance(text, str):
            text = text.encode()
        self.n += 1
        tag = tag or f"r{self.n}"
        self.send(tag.encode() + b" " + text + b"\r\n")
        return self.until(tag)

    def until(self, tag: str) -> list[bytes]:
        out = []
        while True:
            ln = self.f.readline()
            if not ln:
                raise ConnectionError("closed")
            m = re.search(rb"\{(\d+)\}\r\n$", ln)
            if m:
                ln += self.f.read(int(m.group(1))) + self.f.readline()
            out.append(ln)
            if ln.startswith(tag.encode() + b" "):
                return out

    def close(self):
        self.sock.close()


def code_of(resp) -> tuple[str, str | None]:
    text = resp[1][0].decode() if resp[1] and resp[1][0] else ""
    m = re.match(r"\[([A-Z-]+)", text)
    return resp[0], m.group(1) if m else None


def err_code(exc: Exception) -> str | None:
    m = re.search(r"\[([A-Z-]+)", str(exc))
    return m.group(1) if m else None


def search_checks(c):
    """SEARCH via imap-content's evaluator (INBOX: 1 = MSG1 \\Draft, 2 = MSG_MIME \\Draft)."""
    assert c.search(None, "SUBJECT", '"hello"')[1] == [b"1"]
    assert c.uid("SEARCH", "OR", "FROM", "carol", "DRAFT")[1] == [b"1 2"]
    assert c.search(None, "NOT", "SMALLER", "1")[1] == [b"1 2"]
    assert c.search(None, "RECENT")[1] == [b"1 2"] and c.search(None, "OLD")[1] == [b""]
    assert c.search("UTF-8", "BODY", "body")[1] == [b"1"]
    assert c.search(None, "2:*", "TEXT", "two")[1] == [b"2"]
    assert c.search(None, "SINCE", "1-Jan-2000", "HEADER", "Message-ID", "1@remote")[1] == [b"1"]
    typ, data = c._simple_command("SEARCH", "RETURN", "(MIN MAX COUNT)", "ALL")
    assert typ == "OK" and c.untagged_responses.pop("ESEARCH", [b""])[0].endswith(b"MIN 1 MAX 2 COUNT 2")
    typ, data = c.search("KOI8-R", "ALL")
    assert typ == "NO"
    # SORT / THREAD (RFC 5256) through imap-content's sortthread module
    typ, data = c.sort("(REVERSE SUBJECT)", "UTF-8", "ALL")
    assert data == [b"2 1"]  # "parts" > "hello there" reversed
    typ, data = c.uid("SORT", "(SIZE)", "UTF-8", "ALL")
    assert data == [b"1 2"]
    typ, data = c.thread("REFERENCES", "UTF-8", "ALL")
    assert typ == "OK" and data[0] in (b"(1)(2)", b"(2)(1)")


# --- a full client session -------------------------------------------------------


def test_full_session(server, backend):
    c = client(server, login=False)
    assert "IDLE" in c.capabilities and "UIDPLUS" in c.capabilities and "AUTH=PLAIN" in c.capabilities
    assert c.login(USER, PW)[0] == "OK"
    typ, data = c.xatom("ID", '("name" "pytest")')
    assert typ == "OK" and b"Postern" in c.untagged_responses.pop("ID")[0]
    assert c.xatom("ENABLE", "CONDSTORE")[0] == "OK"
    assert c.namespace() == ("OK", [b'(("" "/")) NIL NIL'])

    typ, lines = c.list()
    names = {ln.rsplit(b'"/" ', 1)[1]: ln for ln in lines}
    assert set(names) >= {b"INBOX", b"Sent", b"Drafts", b"Trash", b"Junk", b"Archive"}
    assert b"\\Trash" in names[b"Trash"] and b"\\HasNoChildren" in names[b"INBOX"]
    assert c.list('""', '""')[1] == [b'(\\Noselect) "/" ""']

    # CREATE with superiors, modified UTF-7 names, CHILDREN attributes
    assert c.create("Projects/2024")[0] == "OK"
    assert c.create("Entw&APw-rfe")[0] == "OK"
    assert "Entwürfe" in {mb.name for mb in backend.store.list_mailboxes(USER)}
    typ, lines = c.list('""', "Projects*")
    assert lines == [b'(\\HasChildren) "/" Projects', b'(\\HasNoChildren) "/" Projects/2024']
    assert c.list('""', "%")[1][-1] or True
    assert c.list('""', "Entw*")[1] == [b'(\\HasNoChildren) "/" Entw&APw-rfe']
    assert code_of(c.create("inbox")) == EXPECT["exists"]
    assert code_of(c.create("Projects")) == EXPECT["exists"]

    # SUBSCRIBE / LSUB / UNSUBSCRIBE
    assert c.subscribe("Projects/2024")[0] == "OK"  # (the default mailboxes are subscribed from the start)
    assert c.lsub('""', "Proj*")[1] == [b'(\\HasNoChildren) "/" Projects/2024']
    assert b'(\\Noselect \\HasChildren) "/" Projects' in c.lsub('""', "%")[1]  # RFC 3501 §6.3.9
    assert c.unsubscribe("Projects/2024")[0] == "OK"
    assert c.lsub('""', "Proj*")[1] == [None]

    # RENAME (ordinary, with inferiors) and DELETE
    assert c.rename("Projects", "Work")[0] == "OK"
    assert [ln.rsplit(b" ", 1)[1] for ln in c.list('""', "Work*")[1]] == [b"Work", b"Work/2024"]
    assert c.delete("Work/2024")[0] == "OK"

    # APPEND with a synchronising literal (imaplib always uses {n}) -> APPENDUID
    typ, data = c.append("INBOX", "(\\Flagged $Work)", imaplib.Time2Internaldate(1704103200), MSG1)
    m = re.match(rb"\[APPENDUID (\d+) (\d+)\]", data[0])
    inbox = backend.store.get_mailbox(USER, "INBOX")
    assert m and int(m.group(1)) == inbox.uidvalidity and int(m.group(2)) == 1
    c.append("INBOX", None, None, MSG_MIME)

    # STATUS
    typ, data = c.status("INBOX", "(MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ SIZE)")
    assert f"MESSAGES 2".encode() in data[0] and b"UIDNEXT 3" in data[0] and b"UNSEEN 2" in data[0]

    # SELECT responses
    typ, data = c.select("INBOX")
    assert data == [b"2"]
    assert c.untagged_responses.get("UIDVALIDITY") == [str(inbox.uidvalidity).encode()]
    assert b"$Work" in c.untagged_responses["FLAGS"][0]
    assert "HIGHESTMODSEQ" in c.untagged_responses
    assert c.response("READ-WRITE")[1] == [None] or True

    # FETCH: index fields, header fields, envelope, sections, partials, BODYSTRUCTURE
    typ, data = c.fetch("1", "(UID FLAGS RFC822.SIZE INTERNALDATE)")
    assert b"UID 1" in data[0] and b"\\Flagged" in data[0] and f"RFC822.SIZE {len(MSG1)}".encode() in data[0]
    assert b'INTERNALDATE "01-Jan-2024 10:00:00 +0000"' in data[0]
    typ, data = c.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)])")
    assert data[0][1] == b"From: Bob <bob@remote.test>\r\nSubject: hello there\r\n\r\n"
    typ, data = c.fetch("1", "(BODY.PEEK[HEADER.FIELDS.NOT (SUBJECT FROM TO DATE MESSAGE-ID)])")
    assert data[0][1] == b"\r\n"
    typ, data = c.fetch("1", "(ENVELOPE)")
    assert b'"hello there"' in data[0] and b'"bob" "remote.test"' in data[0]
    typ, data = c.fetch("1", "(BODY.PEEK[]<0.4> BODY.PEEK[TEXT]<6.4>)")
    assert data[0][1] == b"From" and b"BODY[]<0>" in data[0][0]
    assert data[1][1] == b"body"
    typ, data = c.fetch("2", "(BODY.PEEK[2] BODY.PEEK[1.MIME] BODYSTRUCTURE)")
    assert data[0][1] == b"<b>two</b>"
    assert data[1][1].lower().startswith(b"content-type: text/plain")
    assert b'BODYSTRUCTURE (("TEXT" "PLAIN"' in data[2].upper() or b'("TEXT" "PLAIN"' in data[2].upper()
    typ, data = c.fetch("1", "(RFC822.HEADER)")
    assert data[0][1] == MSG1.split(b"\r\n\r\n")[0] + b"\r\n\r\n"
    typ, data = c.fetch("1:*", "FAST")
    assert len([d for d in data if d]) == 2

    # implicit \Seen on a non-PEEK body fetch, FLAGS in the same response
    typ, data = c.fetch("1", "(BODY[TEXT])")
    assert data[0][1] == b"First body line\r\n" and b"\\Seen" in data[1]
    assert "\\Seen" in backend.store.get_messages(inbox, [1])[0].flags

    # STORE variants
    typ, data = c.store("2", "+FLAGS", "(\\Answered)")
    assert b"\\Answered" in data[0]
    typ, data = c.uid("STORE", "2", "-FLAGS.SILENT", "(\\Answered)")
    assert typ == "OK"
    typ, data = c.store("1:2", "FLAGS", "(\\Draft)")
    assert all(b"(\\Draft" in d for d in data)

    search_checks(c)

    # COPY -> COPYUID; MOVE; EXPUNGE; UID EXPUNGE
    typ, data = c.copy("1:2", "Archive")
    archive = backend.store.get_mailbox(USER, "Archive")
    assert data[0].startswith(f"[COPYUID {archive.uidvalidity} 1:2 1:2]".encode())
    assert code_of(c.copy("1", "Nowhere")) == EXPECT["trycreate"]
    typ, data = c.uid("MOVE", "2", "Trash")
    trash = backend.store.get_mailbox(USER, "Trash")
    assert c.untagged_responses.pop("EXPUNGE", None) == [b"2"]
    assert typ == "OK" and trash.exists == 1
    c.store("1", "+FLAGS", "(\\Deleted)")
    c.append("INBOX", "(\\Deleted)", None, b"Subject: x\r\n\r\nx\r\n")
    c.noop()
    c.untagged_responses.pop("EXPUNGE", None)
    typ, data = c.uid("EXPUNGE", "3")
    assert typ == "OK" and c.untagged_responses.pop("EXPUNGE") == [b"2"]  # only UID 3 went, at sequence 2
    typ, data = c.expunge()
    assert data == [b"1"]
    assert backend.store.get_mailbox(USER, "INBOX").exists == 0

    # QUOTA
    typ, data = c.getquotaroot("INBOX")
    assert typ == "OK"
    assert c.untagged_responses  # QUOTAROOT/QUOTA parsed by imaplib into data
    assert re.search(rb'"" \(STORAGE \d+ 10240\)', b" ".join(x for x in sum(data, []) if isinstance(x, bytes)))
    typ, data = c.getquota('""')
    assert b"STORAGE" in data[0]

    # EXAMINE is read-only
    typ, _ = c.select("Archive", readonly=True)
    assert code_of(c.store("1", "+FLAGS", "(\\Seen)")) == EXPECT["readonly"]
    assert c.check()[0] == "OK"
    assert c.unselect()[0] == "OK"
    c.select("Archive")
    assert c.close()[0] == "OK"
    assert c.logout()[0] == "BYE"


def test_append_literal_plus_and_multiappend(server, backend):
    r = Raw(server.port)
    assert r.cmd(f"LOGIN {USER} {PW}")[-1].startswith(b"r1 OK")
    body = b"Subject: lit+\r\n\r\nhi\r\n"
    out = r.cmd(b"APPEND INBOX (\\Seen) {%d+}\r\n" % len(body) + body)
    assert not any(ln.startswith(b"+") for ln in out)
    mb = backend.store.get_mailbox(USER, "INBOX")
    assert out[-1].startswith(f"r2 OK [APPENDUID {mb.uidvalidity} 1]".encode())
    # MULTIAPPEND, two messages, LITERAL+
    out = r.cmd(b"APPEND INBOX {3+}\r\nA\r\n {3+}\r\nB\r\n")
    assert out[-1].startswith(f"r3 OK [APPENDUID {mb.uidvalidity} 2:3]".encode())
    # synchronising literal over the raw socket: wait for "+", then send
    r.send(b"r4 APPEND Sent {5}\r\n")
    assert r.line().startswith(b"+ ")
    r.send(b"x\r\ny\r\n\r\n")
    assert r.until("r4")[-1].startswith(b"r4 OK [APPENDUID")
    # over APPENDLIMIT: refused before the bytes are sent
    r.send(b"r5 APPEND INBOX {999999999}\r\n")
    assert r.line().startswith(b"r5 NO [TOOBIG]")
    assert r.cmd("NOOP", tag="r6")[-1].startswith(b"r6 OK")
    assert backend.store.get_mailbox(USER, "INBOX").exists == 3
    r.close()


def test_two_sessions_expunge_visibility(server, backend):
    for i in range(3):
        backend.store.append(USER, "INBOX", b"Subject: m%d\r\n\r\nx\r\n" % i)
    a, b = Raw(server.port), Raw(server.port)
    for r in (a, b):
        r.cmd(f"LOGIN {USER} {PW}")
        r.cmd("SELECT INBOX")
    a.cmd("STORE 2 +FLAGS.SILENT (\\Deleted)")
    out = a.cmd("EXPUNGE")
    assert out[0] == b"* 2 EXPUNGE\r\n"
    # b: FETCH must not announce the expunge (RFC 3501 §7.4.1) and keeps its numbering
    out = b.cmd("FETCH 1:3 (UID)")
    assert not any(b"EXPUNGE" in ln for ln in out)
    # seq 2 is expunged elsewhere but not yet announced: it keeps its number (data may be omitted)
    assert [re.search(rb"UID (\d+)", ln).group(1) for ln in out if ln.startswith(b"* ")] in ([b"1", b"2", b"3"], [b"1", b"3"])
    assert not any(b"* 2 EXPUNGE" in ln for ln in b.cmd("STORE 3 +FLAGS (\\Flagged)"))
    out = b.cmd("NOOP")
    assert b"* 2 EXPUNGE\r\n" in out
    out = b.cmd("FETCH 2 (UID FLAGS)")
    assert b"UID 3" in out[0] and b"\\Flagged" in out[0]
    # a sees b's flag change on its next command; a UID FETCH may carry the EXPUNGE of others
    out = a.cmd("NOOP")
    assert any(ln.startswith(b"* 2 FETCH") and b"\\Flagged" in ln for ln in out)
    a.close()
    b.close()


def test_idle_woken_by_delivery(server, backend):
    r = Raw(server.port)
    r.cmd(f"LOGIN {USER} {PW}")
    r.cmd("SELECT INBOX")
    r.send(b"i1 IDLE\r\n")
    assert r.line().startswith(b"+ ")
    t0 = time.monotonic()
    backend.store.append(USER, "INBOX", b"Subject: new\r\n\r\nnew mail\r\n")  # what the store Lambda does
    assert r.line() == b"* 1 EXISTS\r\n"
    assert r.line() == b"* 1 RECENT\r\n"
    assert time.monotonic() - t0 < 5
    r.send(b"DONE\r\n")
    assert r.until("i1")[-1].startswith(b"i1 OK")
    r.close()


def test_condstore_round_trip(server, backend):
    for i in range(3):
        backend.store.append(USER, "INBOX", b"Subject: c%d\r\n\r\nx\r\n" % i)
    r = Raw(server.port)
    r.cmd(f"LOGIN {USER} {PW}")
    out = r.cmd("SELECT INBOX (CONDSTORE)")
    hms = int(re.search(rb"HIGHESTMODSEQ (\d+)", b"".join(out)).group(1))
    out = r.cmd("FETCH 1:* (FLAGS MODSEQ)")
    modseqs = [int(re.search(rb"MODSEQ \((\d+)\)", ln).group(1)) for ln in out if ln.startswith(b"* ")]
    assert len(modseqs) == 3 and max(modseqs) <= hms
    out = r.cmd("STORE 2 +FLAGS (\\Seen)")
    m2 = int(re.search(rb"MODSEQ \((\d+)\)", out[0]).group(1))
    assert m2 > hms and b"UID 2" in out[0]
    out = r.cmd(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {hms})")
    fetched = [ln for ln in out if ln.startswith(b"* ")]
    assert len(fetched) == 1 and b"UID 2" in fetched[0] and b"MODSEQ" in fetched[0]
    out = r.cmd(f"STORE 1:3 (UNCHANGEDSINCE {hms}) +FLAGS (\\Flagged)")
    assert b" OK [MODIFIED 2]" in out[-1]
    m3 = max(int(x) for x in re.findall(rb"MODSEQ \((\d+)\)", b"".join(out)))
    out = r.cmd(f"UID STORE 1:3 (UNCHANGEDSINCE {m3}) -FLAGS.SILENT (\\Flagged)")
    assert b" OK " in out[-1] and b"MODIFIED" not in out[-1]
    assert sum(1 for ln in out if ln.startswith(b"* ")) == 2  # changed messages report MODSEQ even when silent
    out = r.cmd(f"SEARCH MODSEQ {m2}")
    assert re.match(rb"\* SEARCH [\d ]+ \(MODSEQ \d+\)", out[0])
    out = r.cmd("STATUS Sent (HIGHESTMODSEQ)")
    assert b"HIGHESTMODSEQ" in out[0]
    r.close()


def test_rename_inbox(server, backend):
    backend.store.append(USER, "INBOX", b"Subject: keep\r\n\r\nx\r\n")
    c = client(server)
    assert c.rename("INBOX", "Old-Inbox")[0] == "OK"
    assert c.select("Old-Inbox")[1] == [b"1"]
    assert c.select("INBOX")[1] == [b"0"]  # RFC 3501 §6.3.5: INBOX stays, empty
    c.logout()


def test_authenticate_plain(server):
    r = Raw(server.port)
    ir = base64.b64encode(f"\0{USER}\0{PW}".encode()).decode()
    assert r.cmd(f"AUTHENTICATE PLAIN {ir}")[-1].startswith(b"r1 OK")
    r.close()
    r = Raw(server.port)
    r.send(b"a AUTHENTICATE PLAIN\r\n")
    assert r.line() == b"+ \r\n"
    r.send(base64.b64encode(f"\0{USER}\0wrong".encode()) + b"\r\n")
    assert r.until("a")[-1].startswith(b"a NO [AUTHENTICATIONFAILED]")
    r.send(b"b AUTHENTICATE PLAIN\r\n")
    r.line()
    r.send(b"*\r\n")
    assert r.until("b")[-1].startswith(b"b BAD")
    r.close()


def test_login_failures_and_state_gate(server):
    c = client(server, login=False)
    with pytest.raises(imaplib.IMAP4.error) as exc:
        c.login(USER, "nope")
    assert err_code(exc.value) == EXPECT["login_bad"][1]
    r = Raw(server.port)
    assert r.cmd("SELECT INBOX")[-1].startswith(b"r1 BAD")
    assert r.cmd("FETCH 1 FLAGS")[-1].startswith(b"r2 BAD")
    r.cmd(f"LOGIN {USER} {PW}")
    assert r.cmd("FETCH 1 FLAGS")[-1].startswith(b"r4 BAD")
    assert r.cmd(f"LOGIN {USER} {PW}")[-1].startswith(b"r5 BAD")
    r.close()


def test_plaintext_refused_without_tls():
    be = make_backend(allow_plaintext_auth=False)
    with ServerThread(start_imap, be) as srv:
        c = client(srv, login=False)
        assert "LOGINDISABLED" in c.capabilities and "AUTH=PLAIN" not in c.capabilities
        assert code_of(c._simple_command("LOGIN", USER, PW)) == EXPECT["privacy"]


def test_bad_input_does_not_crash(server, backend):
    r = Raw(server.port)
    for junk in [b"\x00\x01\x02", b"a1 FETCH", b"a2 (((", b"a3 LOGIN {x}", b'a4 "', b"a5 UID FOO 1"]:
        r.send(junk + b"\r\n")
    out = r.cmd("NOOP", tag="ok1")
    assert out[-1].startswith(b"ok1 OK")
    assert sum(1 for ln in out if b" BAD " in ln) >= 5
    r.cmd(f"LOGIN {USER} {PW}")
    r.send(b"x" * 70000 + b"\r\n")  # over the line limit (after login: before it, the 16 KiB budget ends the session)
    assert any(b" BAD Command line too long" in ln for ln in r.cmd("NOOP", tag="ok2"))
    r.cmd("SELECT INBOX")
    for bad in ["FETCH 5 FLAGS", "FETCH 1:* (BODY[0])", "STORE 1 FLAGS (\\Bogus)", "SEARCH FOO", "COPY", "EXPUNGE 1"]:
        assert b" BAD " in r.cmd(bad)[-1]
    assert r.cmd("NOOP")[-1].endswith(b"NOOP completed\r\n")
    # too many consecutive bad commands -> BYE and close. One command at a time, reading
    # each reply: a client that keeps writing after the close gets a reset, which may
    # discard the BYE before it is read.
    lines: list[bytes] = []
    for i in range(30):
        try:
            r.send(f"z{i} BOGUS\r\n".encode())
            while (ln := r.line()) and not ln.startswith(f"z{i} ".encode()):
                lines.append(ln)
        except ConnectionError:  # a reset after the close (ConnectionError covers it)
            break
        if not ln:  # closed
            break
        lines.append(ln)
    else:
        raise AssertionError("the server never closed the connection")
    assert any(ln.startswith(b"* BYE") for ln in lines), lines[-3:]
    assert 10 <= sum(1 for ln in lines if b" BAD " in ln) <= 25
    r.close()


def test_other_users_mail_is_invisible(server, backend):
    backend.directory.add_user("mallory@example.test", "m-pw")
    backend.store.append(USER, "INBOX", b"Subject: private\r\n\r\nsecret\r\n")
    c = imaplib.IMAP4(HOST, server.port)
    c.login("mallory@example.test", "m-pw")
    assert c.select("INBOX")[1] == [b"0"]
    assert c.search(None, "ALL")[1] == [b""]
    c.logout()


def test_starttls(backend):
    trustme = pytest.importorskip("trustme")
    import ssl

    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    sctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(sctx)
    cctx = ssl.create_default_context()
    ca.configure_trust(cctx)
    be = make_backend(allow_plaintext_auth=False)
    with ServerThread(start_imap, be, ssl_context=sctx) as srv:
        c = imaplib.IMAP4(HOST, srv.port)
        assert "STARTTLS" in c.capabilities and "LOGINDISABLED" in c.capabilities
        c.starttls(ssl_context=cctx)
        assert "STARTTLS" not in c.capabilities and "AUTH=PLAIN" in c.capabilities
        assert c.login(USER, PW)[0] == "OK"
        c.logout()
        # commands pipelined behind STARTTLS are discarded, never run inside the TLS session (RFC 3501 §6.2.1)
        raw = socket.create_connection((HOST, srv.port), timeout=10)
        raw.recv(4096)
        raw.sendall(b"a STARTTLS\r\nb LOGIN alice@example.test secret-pw\r\n")
        assert raw.recv(4096).startswith(b"a OK")
        tls = cctx.wrap_socket(raw, server_hostname="localhost")
        tls.sendall(b"c NOOP\r\n")
        assert tls.recv(4096).startswith(b"c OK")
        tls.close()
    with ServerThread(start_imap, make_backend(allow_plaintext_auth=False), ssl_context=sctx, implicit_tls=True) as srv:
        c = imaplib.IMAP4_SSL(HOST, srv.port, ssl_context=cctx)
        assert c.login(USER, PW)[0] == "OK"
        c.logout()


def test_over_dynamodb_store(dynamo_store):
    from postern.directory import memory_directory

    d = memory_directory()
    be = memory_backend(store=dynamo_store, directory=d, imap_poll_interval=0.05)
    d.add_domain("example.test")
    d.add_user(USER, PW)
    with ServerThread(start_imap, be) as srv:
        c = client(srv)
        typ, data = c.append("INBOX", "(\\Seen)", None, MSG1)
        assert data[0].startswith(b"[APPENDUID")
        c.append("INBOX", None, None, MSG_MIME)
        assert c.select("INBOX")[1] == [b"2"]
        typ, data = c.fetch("1:2", "(UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert data[0][1] == b"Subject: hello there\r\n\r\n" and data[2][1] == b"Subject: parts\r\n\r\n"
        typ, data = c.fetch("2", "(BODY[1])")
        assert data[0][1] == b"part one"
        typ, data = c.copy("1", "Archive")
        assert data[0].startswith(b"[COPYUID")
        c.store("1", "+FLAGS", "(\\Deleted)")
        assert c.expunge()[1] == [b"1"]
        assert c.uid("SEARCH", "ALL")[1] == [b"2"]
        c.logout()


def test_reselect_costs_changes_not_a_listing():
    from postern.store.memory import MemoryMailStore

    class Counting(MemoryMailStore):
        listings = 0
        changes = 0

        def list_messages(self, mb, since_uid=0, light=False):
            Counting.listings += 1
            return super().list_messages(mb, since_uid, light)

        def follow(self, user, after, limit=None):
            Counting.changes += 1
            return super().follow(user, after, limit)

    be = make_backend(store=Counting(), imap_poll_interval=60)
    for i in range(20):
        be.store.append(USER, "INBOX", b"Subject: %d\r\n\r\nx\r\n" % i)
    with ServerThread(start_imap, be) as srv:
        c = client(srv)
        assert c.select("INBOX")[1] == [b"20"]
        c.logout()
        assert Counting.listings == 1
        be.store.append(USER, "INBOX", b"Subject: late\r\n\r\nx\r\n")
        be.store.store_flags(be.store.get_mailbox(USER, "INBOX"), be.store.get_messages(
            be.store.get_mailbox(USER, "INBOX"), [3]), ["\\Seen"], "add")
        c = client(srv)
        assert c.select("INBOX")[1] == [b"21"]  # the process index caught up from the change log
        typ, data = c.fetch("3", "(FLAGS)")
        assert b"\\Seen" in data[0]
        c.logout()
        assert Counting.listings == 1 and Counting.changes >= 1


def test_examine_shows_recent_but_claims_none_and_sets_no_seen(server, backend):
    backend.store.append(USER, "INBOX", MSG1)
    c = client(server)
    c.select("INBOX", readonly=True)
    assert c.response("RECENT")[1] == [b"1"]  # RFC 3501 §6.3.2: EXAMINE reports \Recent...
    typ, data = c.fetch("1", "(BODY[TEXT] FLAGS)")
    assert b"\\Recent" in data[-1] and b"\\Seen" not in data[-1]
    mb = backend.store.get_mailbox(USER, "INBOX")
    assert "\\Seen" not in backend.store.get_messages(mb, [1])[0].flags
    c.select("INBOX")  # ...and leaves it to the first SELECT
    assert c.response("RECENT")[1] == [b"1"]
    c.logout()
    c = client(server)
    c.select("INBOX")
    assert c.response("RECENT")[1] == [b"0"]  # claimed once, by one session
    c.logout()


def test_qresync(server, backend):
    for i in range(5):
        backend.store.append(USER, "INBOX", b"Subject: q%d\r\n\r\nx\r\n" % i)
    uv = backend.store.get_mailbox(USER, "INBOX").uidvalidity
    r = Raw(server.port)
    r.cmd(f"LOGIN {USER} {PW}")
    out = r.cmd("SELECT INBOX")
    hms = int(re.search(rb"HIGHESTMODSEQ (\d+)", b"".join(out)).group(1))
    r.cmd("STORE 2 +FLAGS.SILENT (\\Deleted)")
    r.cmd("EXPUNGE")
    r.cmd("STORE 3 +FLAGS.SILENT (\\Seen)")  # now UID 4
    assert r.cmd(f"SELECT INBOX (QRESYNC ({uv} {hms}))")[-1].split(b" ")[1] == b"BAD"  # not enabled yet
    assert b"* ENABLED QRESYNC\r\n" in r.cmd("ENABLE QRESYNC")
    out = r.cmd(f"SELECT INBOX (QRESYNC ({uv} {hms} 1:5))")
    assert out[0].startswith(b"* OK [CLOSED]")  # the BAD SELECT left INBOX selected (RFC 7162 §3.2.11)
    assert b"* VANISHED (EARLIER) 2\r\n" in out
    fetches = [ln for ln in out if b" FETCH " in ln]
    assert len(fetches) == 1 and b"UID 4" in fetches[0] and b"\\Seen" in fetches[0] and b"MODSEQ" in fetches[0]
    r.cmd("STORE 1 +FLAGS.SILENT (\\Deleted)")
    out = r.cmd("EXPUNGE")
    assert out[0] == b"* VANISHED 1\r\n"  # RFC 7162 §3.2.10: no EXPUNGE once QRESYNC is on
    out = r.cmd(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {hms} VANISHED)")
    assert out[0] == b"* VANISHED (EARLIER) 1:2\r\n"
    assert r.cmd("SELECT Sent")[0].startswith(b"* OK [CLOSED]")
    r.close()


def test_concurrent_selects_share_one_watcher(server, backend):
    import threading

    for i in range(30):
        backend.store.append(USER, "INBOX", b"Subject: %d\r\n\r\nx\r\n" % i)
    clients = [client(server) for _ in range(4)]
    ths = [threading.Thread(target=c.select, args=("INBOX",)) for c in clients]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    from postern_gateway.imap.watcher import Runtime

    rt = Runtime.of(backend)
    assert len(rt.watchers) == 1
    (w,) = rt.watchers.values()
    assert len(w.sessions) == 4
    clients[0].store("1", "+FLAGS", "(\\Flagged)")
    for c in clients[1:]:
        typ, data = c.noop()
        assert any(b"\\Flagged" in d for d in c.untagged_responses.get("FETCH", [])), c.untagged_responses
    for c in clients:
        c.logout()
    assert rt.watchers == {}


def test_idle_keepalive(server, monkeypatch):
    from postern_gateway.imap.ops import select as select_ops

    monkeypatch.setattr(select_ops, "IDLE_KEEPALIVE", 0.2)
    r = Raw(server.port)
    r.cmd(f"LOGIN {USER} {PW}")
    r.send(b"i IDLE\r\n")
    assert r.line().startswith(b"+ ")
    assert r.line() == b"* OK Still here\r\n"
    r.send(b"DONE\r\n")
    assert r.until("i")[-1].startswith(b"i OK")
    r.close()


def test_rename_of_selected_mailbox_keeps_session(server, backend):
    backend.store.create_mailboxes(USER, [("Work", None)])
    backend.store.append(USER, "Work", b"Subject: w\r\n\r\nx\r\n")
    backend.store.append(USER, "INBOX", b"Subject: i\r\n\r\nx\r\n")
    c = client(server)
    c.select("Work")
    assert c.rename("Work", "Job")[0] == "OK"
    assert c.noop()[0] == "OK" and c.fetch("1", "(FLAGS)")[0] == "OK"
    backend.store.append(USER, "Job", b"Subject: w2\r\n\r\nx\r\n")
    c.noop()
    assert c.untagged_responses.get("EXISTS", [b""])[-1] == b"2"
    c.select("INBOX")
    assert c.rename("INBOX", "Old")[0] == "OK"  # the selected messages moved to "Old"
    assert c.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")[1][0][1] == b"Subject: i\r\n\r\n"
    c.logout()


def test_dynamodb_watcher_sees_outside_changes(dynamo_store):
    """Changes made outside this gateway process (the store Lambda) reach sessions through the change log."""
    from postern.directory import memory_directory

    d = memory_directory()
    be = memory_backend(store=dynamo_store, directory=d, imap_poll_interval=0.05)
    d.add_domain("example.test")
    d.add_user(USER, PW)
    dynamo_store.ensure_mailboxes(USER)
    dynamo_store.append(USER, "INBOX", MSG1)
    with ServerThread(start_imap, be) as srv:
        r = Raw(srv.port)
        r.cmd(f"LOGIN {USER} {PW}")
        r.cmd("SELECT INBOX")
        r.send(b"i IDLE\r\n")
        assert r.line().startswith(b"+ ")
        dynamo_store.append(USER, "INBOX", MSG_MIME)  # as the store Lambda would
        assert r.line() == b"* 2 EXISTS\r\n"
        r.send(b"DONE\r\n")
        r.until("i")
        mb = dynamo_store.get_mailbox(USER, "INBOX")
        dynamo_store.store_flags(mb, dynamo_store.get_messages(mb, [1]), ["\\Flagged"], "add")
        gone = dynamo_store.expunge(mb, dynamo_store.get_messages(mb, [2]))
        assert gone == [2]
        head = dynamo_store.get_mailbox(USER, "INBOX").pos
        watcher = Runtime.of(be).watchers[(USER.lower(), mb.mailbox_id)]
        wait_for(lambda: watcher.index.pos >= head, what="the watcher reading the expunge")
        out = r.cmd("FETCH 1:2 (FLAGS)")  # no EXPUNGE during FETCH; the flag change may show
        assert not any(b"EXPUNGE" in ln for ln in out)
        out = r.cmd("NOOP")
        assert b"* 2 EXPUNGE\r\n" in out
        assert any(b"\\Flagged" in ln for ln in r.cmd("FETCH 1 (FLAGS)"))
        r.close()


def test_search_header_prefilter_keeps_encoded_and_8bit_matches(server, backend):
    backend.store.append(USER, "INBOX", b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe_hello?=\r\n\r\nx\r\n")
    backend.store.append(USER, "INBOX", "Subject: Straße\r\n\r\nx\r\n".encode())
    backend.store.append(USER, "INBOX", b"Subject: plain\r\n words\r\n\r\nx\r\n")
    c = client(server)
    c.select("INBOX")
    assert c.search(None, "SUBJECT", "hello")[1] == [b"1"]  # only inside an encoded-word
    assert c.search(None, "SUBJECT", "strasse")[1] == [b"2"]  # casefold of a raw UTF-8 header
    assert c.search(None, "SUBJECT", '"plain words"')[1] == [b"3"]  # across a fold
    assert c.search(None, "SUBJECT", "words")[1] == [b"3"]
    assert c.search(None, "SUBJECT", "absent")[1] == [b""]
    c.logout()
