"""POP3 over 127.0.0.1 with the stdlib poplib client, against the in-memory store.

RFC 1939 commands, RFC 2449 CAPA and response codes, RFC 5034 AUTH PLAIN,
the maildrop semantics (snapshot at login, DELE marks, QUIT commits, a drop
deletes nothing) and every refusal with its -ERR text.
"""

from __future__ import annotations

import asyncio
import base64
import poplib
import types

import pytest
from helpers import ServerThread, memory_backend
from pop3_fixtures import (
    MESSAGES,
    MSG1,
    MSG2,
    MSG3,
    PASSWORD,
    USER,
    Raw,
    lines_of,
    logical,
    populate,
    wait_for,
)

from postern.errors import StoreUnavailable
from postern_gateway.pop3 import session as pop3_session
from postern_gateway.pop3.server import start_pop3

# Expected replies, in one place (aiosmtpd testing/statuscodes.py style).
R = {
    "not_in_state": b"-ERR Command not valid in this state: %s",
    "unknown": b"-ERR Unknown command: %s",
    "auth_failed": b"-ERR [AUTH] Authentication failed",
    "auth_failed_close": b"-ERR [AUTH] Authentication failed; too many failures, closing connection",
    "plaintext": b"-ERR [AUTH] Plaintext authentication disallowed on non-TLS connection",
    "user_first": b"-ERR USER first",
    "deleted": b"-ERR Message %d already deleted",
    "no_such": b"-ERR No such message: %d",
    "bad_number": b"-ERR Invalid message number: %s",
    "in_use": b"-ERR [IN-USE] Maildrop already in use by another session",
    "too_long": b"-ERR Line too long, closing connection",
    "internal": b"-ERR [SYS/TEMP] Internal server error, closing connection",
    "cap": b"-ERR [SYS/TEMP] Too many connections, try again later",
    "idle": b"-ERR Idle timeout, closing connection",
}
SIZES = [len(logical(m)) for m in MESSAGES]


def refusal(client: poplib.POP3, line: str) -> bytes:
    with pytest.raises(poplib.error_proto) as exc:
        client._shortcmd(line)
    return exc.value.args[0]


@pytest.fixture
def backend():
    b = memory_backend()
    populate(b)
    return b


@pytest.fixture
def srv(backend):
    with ServerThread(start_pop3, backend) as s:
        yield s


def connect(srv) -> poplib.POP3:
    return poplib.POP3("127.0.0.1", srv.port, timeout=10)


def login(srv) -> poplib.POP3:
    p = connect(srv)
    p.user(USER)
    p.pass_(PASSWORD)
    return p


def drop(p: poplib.POP3) -> None:
    """Hang up without QUIT (the socket closes only once the makefile() is closed too)."""
    p.file.close()
    p.sock.close()


def sessions_gone(srv):
    return lambda: not srv.server.pop3_listener.connections


def test_greeting_and_capa(srv):
    p = connect(srv)
    assert p.getwelcome().startswith(b"+OK mx.example.test Postern POP3 server ready")
    caps = p.capa()
    for cap in ("TOP", "UIDL", "USER", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"):
        assert cap in caps
    assert caps["SASL"] == ["PLAIN"]
    assert caps["IMPLEMENTATION"] == ["Postern"]
    assert "STLS" not in caps  # no certificate on this listener
    assert p.quit().startswith(b"+OK")


def test_user_pass_stat_list_uidl(srv, backend):
    p = connect(srv)
    assert p.user(USER) == b"+OK Send your password"
    assert p.pass_(PASSWORD) == b"+OK Logged in, maildrop has 3 messages (%d octets)" % sum(SIZES)
    assert p.stat() == (3, sum(SIZES))
    resp, lines, _ = p.list()
    assert resp == b"+OK 3 messages (%d octets)" % sum(SIZES)
    assert lines == [b"%d %d" % (i + 1, s) for i, s in enumerate(SIZES)]
    assert p.list(2) == b"+OK 2 %d" % SIZES[1]
    uv = backend.store.get_mailbox(USER, "INBOX").uidvalidity
    resp, lines, _ = p.uidl()
    assert lines == [b"%d %d.%d" % (i, uv, i) for i in (1, 2, 3)]
    assert p.uidl(3) == b"+OK 3 %d.3" % uv
    assert p.noop() == b"+OK"
    caps = p.capa()  # CAPA in TRANSACTION: no login mechanisms any more
    assert "USER" not in caps and "TOP" in caps
    p.quit()


@pytest.mark.parametrize("n,raw", [(1, MSG1), (2, MSG2), (3, MSG3)])
def test_retr_returns_logical_message(srv, n, raw):
    p = login(srv)
    resp, lines, octets = p.retr(n)
    assert resp == b"+OK %d octets" % len(logical(raw))
    assert lines == lines_of(logical(raw))
    p.quit()


def test_retr_dot_stuffing_on_the_wire(srv):
    c = Raw(srv.port)
    c.line()
    c.send(b"USER %s\r\nPASS %s\r\n" % (USER.encode(), PASSWORD.encode()))
    c.line(), c.line()
    c.send(b"RETR 1\r\n")
    wire = c.until_terminator()
    body = logical(MSG1).replace(b"\r\n.", b"\r\n..")  # RFC 1939 §3
    assert wire == b"+OK %d octets\r\n" % len(logical(MSG1)) + body + b".\r\n"
    c.send(b"RETR 3\r\n")  # no final CRLF in the message: the server closes the last line
    assert c.until_terminator().endswith(b"\r\n\r\nbody without CRLF\r\n.\r\n")
    c.close()


def test_top(srv):
    p = login(srv)
    header = logical(MSG2).split(b"\r\n\r\n")[0]
    resp, lines, _ = p.top(2, 0)
    assert resp == b"+OK Top of message follows"
    assert lines == lines_of(header + b"\r\n\r\n")
    assert p.top(2, 2)[1] == lines_of(header + b"\r\n\r\nline 1\r\nline 2\r\n")
    assert p.top(2, 100)[1] == lines_of(logical(MSG2))  # more lines than the body has
    assert p.top(1, 2)[1][-2:] == [b"Hello", b".starts with a dot"]  # stuffed on the wire, unstuffed by poplib
    assert p.top(3, 5)[1][-1] == b"body without CRLF"
    p.quit()


def test_top_and_retr_of_large_message_use_ranges(monkeypatch):
    """Chunk boundaries anywhere (here every 7 bytes) change nothing on the wire."""
    monkeypatch.setattr(pop3_session, "READ_CHUNK", 7)
    monkeypatch.setattr(pop3_session, "TOP_FIRST_READ", 5)
    body = b"".join(b".line %d\r\n" % i if i % 3 == 0 else b"line %d\r\n" % i for i in range(200))
    raw = b"Subject: big\r\n\r\n" + body
    b = memory_backend()
    populate(b, [raw])
    reads = []
    real_read = b.store.read

    def counting_read(meta, start=0, end=None):
        reads.append((start, end))
        return real_read(meta, start, end)

    b.store.read = counting_read
    with ServerThread(start_pop3, b) as srv:
        p = login(srv)
        resp, lines, _ = p.retr(1)
        assert lines == lines_of(logical(raw))
        reads.clear()
        assert p.top(1, 3)[1][-3:] == [b".line 0", b"line 1", b"line 2"]
        assert all(end is not None and end - start <= 5 * 4 ** 3 for start, end in reads)  # never the whole message
        p.quit()


def test_dele_marks_rset_unmarks(srv):
    p = login(srv)
    assert p.dele(1) == b"+OK Message 1 deleted"
    assert p.stat() == (2, SIZES[1] + SIZES[2])
    assert p.list()[1] == [b"2 %d" % SIZES[1], b"3 %d" % SIZES[2]]
    assert p.uidl()[1][0].startswith(b"2 ")
    assert refusal(p, "RETR 1") == R["deleted"] % 1
    assert refusal(p, "DELE 1") == R["deleted"] % 1
    assert refusal(p, "LIST 1") == R["deleted"] % 1
    assert refusal(p, "TOP 1 0") == R["deleted"] % 1
    assert refusal(p, "UIDL 1") == R["deleted"] % 1
    assert p.rset() == b"+OK Maildrop has 3 messages (%d octets)" % sum(SIZES)
    assert p.stat() == (3, sum(SIZES))
    assert p.retr(1)[1] == lines_of(logical(MSG1))
    p.quit()


def test_dele_then_quit_deletes(srv, backend):
    p = login(srv)
    p.dele(1)
    p.dele(3)
    assert p.quit() == b"+OK mx.example.test Postern POP3 server signing off (1 messages left)"
    assert backend.store.get_mailbox(USER, "INBOX").exists == 1
    p = login(srv)
    assert p.stat() == (1, SIZES[1])
    assert p.retr(1)[1] == lines_of(logical(MSG2))  # renumbered 1..n in the new session
    p.quit()


def test_dele_then_drop_deletes_nothing(srv, backend):
    p = login(srv)
    p.dele(1)
    p.dele(2)
    drop(p)  # no QUIT: the session never enters UPDATE
    wait_for(sessions_gone(srv))
    assert backend.store.get_mailbox(USER, "INBOX").exists == 3
    p = login(srv)
    assert p.stat() == (3, sum(SIZES))
    p.quit()


def test_uidl_stable_across_sessions(srv, backend):
    p = login(srv)
    first = dict(line.split() for line in p.uidl()[1])
    p.dele(1)
    p.quit()
    backend.store.append(USER, "INBOX", b"Subject: new\r\n\r\nnew\r\n")
    p = login(srv)
    second = dict(line.split() for line in p.uidl()[1])
    p.quit()
    assert list(second.values())[:2] == [first[b"2"], first[b"3"]]  # same ids, new numbers
    assert len(set(second.values())) == 3 and first[b"1"] not in second.values()


def test_snapshot_at_login(srv, backend):
    p = login(srv)
    backend.store.append(USER, "INBOX", b"Subject: later\r\n\r\nlater\r\n")
    assert p.stat() == (3, sum(SIZES))  # mail arriving during the session waits for the next one
    assert refusal(p, "RETR 4") == R["no_such"] % 4
    p.quit()
    p = login(srv)
    assert p.stat()[0] == 4
    p.quit()


def test_message_expunged_by_another_client(srv, backend):
    p = login(srv)
    mb = backend.store.get_mailbox(USER, "INBOX")
    backend.store.expunge(mb, backend.store.get_messages(mb, [2]))  # e.g. IMAP EXPUNGE meanwhile
    assert refusal(p, "RETR 2") == b"-ERR Message 2 is no longer available (removed by another client)"
    p.dele(2)
    assert p.quit().startswith(b"+OK")  # committing an already-gone message is harmless


AUTHORIZATION_REFUSALS = [
    ("STAT", R["not_in_state"] % b"STAT"),
    ("RETR 1", R["not_in_state"] % b"RETR"),
    ("NOOP", R["not_in_state"] % b"NOOP"),
    ("FOO", R["unknown"] % b"FOO"),
    ("PASS secret", R["user_first"]),
    ("APOP alice abc", b"-ERR APOP is not supported: APOP"),
    ("STLS", b"-ERR TLS not available"),
    ("USER", b"-ERR USER requires exactly one argument: a mailbox name"),
    ("AUTH CRAM-MD5", b"-ERR Unsupported authentication mechanism: CRAM-MD5"),
    ("AUTH PLAIN !!!", b"-ERR [AUTH] Invalid SASL response: invalid base64"),
    ("AUTH PLAIN " + base64.b64encode(b"no-nuls").decode(),
     b"-ERR [AUTH] Invalid SASL response: invalid PLAIN response"),
    ("", b"-ERR Empty command"),
]


@pytest.mark.parametrize("line,expected", AUTHORIZATION_REFUSALS)
def test_refusals_before_login(srv, line, expected):
    p = connect(srv)
    assert refusal(p, line) == expected
    p.user(USER)  # still in AUTHORIZATION and usable
    p.pass_(PASSWORD)
    p.quit()


TRANSACTION_REFUSALS = [
    ("USER bob", R["not_in_state"] % b"USER"),
    ("PASS x", R["not_in_state"] % b"PASS"),
    ("AUTH PLAIN", R["not_in_state"] % b"AUTH"),
    ("STLS", R["not_in_state"] % b"STLS"),
    ("XYZZY", R["unknown"] % b"XYZZY"),
    ("RETR", b"-ERR RETR requires exactly one argument: a message number"),
    ("RETR 1 2", b"-ERR RETR requires exactly one argument: a message number"),
    ("RETR x", R["bad_number"] % b"x"),
    ("RETR 0", R["bad_number"] % b"0"),
    ("RETR -1", R["bad_number"] % b"-1"),
    ("RETR 99", R["no_such"] % 99),
    ("DELE 4", R["no_such"] % 4),
    ("DELE", b"-ERR DELE requires exactly one argument: a message number"),
    ("LIST 9", R["no_such"] % 9),
    ("LIST 1 2", b"-ERR LIST takes at most one argument: a message number"),
    ("UIDL a", R["bad_number"] % b"a"),
    ("TOP 1", b"-ERR TOP requires two arguments: a message number and a number of lines"),
    ("TOP 1 x", b"-ERR Invalid number of lines: x"),
    ("TOP 1 -1", b"-ERR Invalid number of lines: -1"),
    ("TOP 7 1", R["no_such"] % 7),
    ("STAT 1", b"-ERR STAT takes no arguments"),
    ("NOOP now", b"-ERR NOOP takes no arguments"),
    ("RSET all", b"-ERR RSET takes no arguments"),
]


@pytest.mark.parametrize("line,expected", TRANSACTION_REFUSALS)
def test_refusals_after_login(srv, line, expected):
    p = login(srv)
    assert refusal(p, line) == expected
    assert p.stat() == (3, sum(SIZES))  # nothing changed
    p.quit()


def test_login_failure_then_success_then_lockout(srv):
    p = connect(srv)
    p.user(USER)
    assert refusal(p, "PASS wrong") == R["auth_failed"]
    p.user("nobody@example.test")
    assert refusal(p, "PASS " + PASSWORD) == R["auth_failed"]
    p.user(USER)
    p.pass_(PASSWORD)  # two failures, then the right password still works
    p.quit()
    p = connect(srv)
    for _ in range(2):
        p.user(USER)
        assert refusal(p, "PASS wrong") == R["auth_failed"]
    p.user(USER)
    assert refusal(p, "PASS wrong") == R["auth_failed_close"]
    assert p.file.readline() == b""  # closed by the server


def test_login_failure_is_delayed(backend, monkeypatch):
    """authenticate() sleeps after a failure: observe that the session waited on it, not how long."""
    import postern_gateway.auth as auth_mod

    slept = []

    async def recording_sleep(delay):
        slept.append(delay)
        await asyncio.sleep(0)

    monkeypatch.setattr(auth_mod, "asyncio", types.SimpleNamespace(sleep=recording_sleep))
    b = memory_backend(login_fail_delay=0.05, store=backend.store, directory=backend.directory)
    with ServerThread(start_pop3, b) as srv:
        p = connect(srv)
        for _ in range(2):
            p.user(USER)
            assert refusal(p, "PASS wrong") == R["auth_failed"]
        p.quit()
    assert slept == [0.05, 0.1]  # growing with consecutive failures


def test_auth_plain_initial_response_and_continuation(srv):
    token = base64.b64encode(b"\x00" + USER.encode() + b"\x00" + PASSWORD.encode()).decode()
    p = connect(srv)
    assert p._shortcmd("AUTH PLAIN " + token).startswith(b"+OK Logged in, maildrop has 3 messages")
    p.quit()
    p = connect(srv)
    assert p._shortcmd("AUTH PLAIN") == b"+ "  # RFC 5034 §4 empty challenge
    assert p._shortcmd(token).startswith(b"+OK Logged in")
    assert p.stat()[0] == 3
    p.quit()
    p = connect(srv)
    assert p._shortcmd("AUTH PLAIN") == b"+ "
    assert refusal(p, "*") == b"-ERR Authentication cancelled"
    bad = base64.b64encode(b"\x00" + USER.encode() + b"\x00nope").decode()
    assert refusal(p, "AUTH PLAIN " + bad) == R["auth_failed"]
    resp, mechs, _ = p._longcmd("AUTH")
    assert mechs == [b"PLAIN"]
    p.quit()


def test_auth_plain_empty_initial_response(srv):
    p = connect(srv)
    # "=" is a zero-length initial response (RFC 5034 §4): PLAIN cannot be empty, so it fails cleanly.
    assert refusal(p, "AUTH PLAIN =") == b"-ERR [AUTH] Invalid SASL response: invalid PLAIN response"
    p.quit()


def test_plaintext_refused_without_tls():
    b = memory_backend(allow_plaintext_auth=False)
    populate(b)
    with ServerThread(start_pop3, b) as srv:
        p = connect(srv)
        caps = p.capa()
        assert "USER" not in caps and "SASL" not in caps
        assert refusal(p, "USER " + USER) == R["plaintext"]
        assert refusal(p, "PASS " + PASSWORD) == R["plaintext"]
        token = base64.b64encode(b"\x00" + USER.encode() + b"\x00" + PASSWORD.encode()).decode()
        assert refusal(p, "AUTH PLAIN " + token) == R["plaintext"]
        assert refusal(p, "AUTH PLAIN") == R["plaintext"]
        p.quit()


def test_empty_maildrop_for_user_without_mail():
    b = memory_backend()
    b.directory.add_domain("example.test")
    b.directory.add_user(USER, PASSWORD)  # no delivery yet: no INBOX in the store
    with ServerThread(start_pop3, b) as srv:
        p = login(srv)
        assert p.stat() == (0, 0)
        assert p.list()[1] == [] and p.uidl()[1] == []
        assert refusal(p, "RETR 1") == R["no_such"] % 1
        assert p.quit().endswith(b"(0 messages left)")


def test_maildrop_in_use(srv, backend):
    p = login(srv)
    q = connect(srv)
    q.user(USER)
    assert refusal(q, "PASS " + PASSWORD) == R["in_use"]
    p.quit()
    wait_for(lambda: len(srv.server.pop3_listener.connections) == 1)
    q.user(USER)
    q.pass_(PASSWORD)  # free again once the first session ended
    q.quit()


def test_pipelining(srv):
    c = Raw(srv.port)
    c.line()
    c.send(b"USER %s\r\nPASS %s\r\nSTAT\r\nLIST 2\r\nDELE 1\r\nNOOP\r\nRSET\r\nQUIT\r\n"
           % (USER.encode(), PASSWORD.encode()))
    replies = [c.line() for _ in range(8)]
    assert replies[2] == b"+OK 3 %d\r\n" % sum(SIZES)
    assert replies[3] == b"+OK 2 %d\r\n" % SIZES[1]
    assert all(r.startswith(b"+OK") for r in replies)
    assert c.closed()


def test_line_too_long_drops_connection(srv):
    c = Raw(srv.port)
    c.line()
    c.send(b"NOOP " + b"x" * 2000 + b"\r\n")
    assert c.line() == R["too_long"] + b"\r\n"
    assert c.closed()


def test_too_many_bad_commands_closes(srv):
    c = Raw(srv.port)
    c.line()
    c.send(b"JUNK\r\n" * 12)
    replies = [c.line() for _ in range(10)]
    assert replies[:9] == [R["unknown"] % b"JUNK" + b"\r\n"] * 9
    assert replies[9] == b"-ERR Unknown command: JUNK; too many bad commands, closing connection\r\n"
    assert c.closed()


def test_good_command_resets_bad_count(srv):
    c = Raw(srv.port)
    c.line()
    c.send((b"JUNK\r\n" * 9 + b"CAPA\r\n") * 2 + b"QUIT\r\n")
    for _ in range(2):
        assert [c.line() for _ in range(9)] == [R["unknown"] % b"JUNK" + b"\r\n"] * 9
        c.until_terminator()
    assert c.line().startswith(b"+OK")


def test_idle_timeout():
    b = memory_backend(pop3_timeout=0.3)
    with ServerThread(start_pop3, b) as srv:
        c = Raw(srv.port)
        c.line()
        assert c.line() == R["idle"] + b"\r\n"  # nothing sent: the autologout timer fires
        assert c.closed()


def test_session_cap():
    b = memory_backend(max_sessions=1)
    with ServerThread(start_pop3, b) as srv:
        first = connect(srv)
        c = Raw(srv.port)
        assert c.line() == R["cap"] + b"\r\n"
        assert c.closed()
        first.quit()
        wait_for(sessions_gone(srv))
        connect(srv).quit()


def test_server_close_ends_sessions(backend):
    with ServerThread(start_pop3, backend) as srv:
        p = login(srv)
        p.dele(1)

        async def close():
            srv.server.close()

        srv.call(close)
        assert p.file.readline() == b""  # the session was ended
        wait_for(sessions_gone(srv))
    assert backend.store.get_mailbox(USER, "INBOX").exists == 3


class FlakyStore:
    """The in-memory store with chosen methods failing like an unreachable backend."""

    def __init__(self, inner, fail=(), crash=()):
        self._inner, self.fail, self.crash = inner, set(fail), set(crash)

    def __getattr__(self, name):
        attr = getattr(self._inner, name)
        if name in self.fail:
            def failing(*a, **k):
                raise StoreUnavailable("Temporary failure of the mail store, try again later")
            return failing
        if name in self.crash:
            def crashing(*a, **k):
                raise RuntimeError("bug")
            return crashing
        return attr


def flaky_backend(**kw):
    b = memory_backend()
    populate(b)
    return memory_backend(store=FlakyStore(b.store, **kw), directory=b.directory), b


def test_store_unavailable_at_login():
    b, _ = flaky_backend(fail={"list_messages"})
    with ServerThread(start_pop3, b) as srv:
        p = connect(srv)
        p.user(USER)
        assert refusal(p, "PASS " + PASSWORD) == b"-ERR [SYS/TEMP] Temporary failure of the mail store, try again later"
        assert refusal(p, "STAT") == R["not_in_state"] % b"STAT"  # still in AUTHORIZATION
        b.store.fail.clear()
        p.user(USER)
        p.pass_(PASSWORD)  # and the lock was not left behind
        p.quit()


def test_store_unavailable_on_read_and_commit():
    b, inner = flaky_backend(fail={"read", "expunge"})
    with ServerThread(start_pop3, b) as srv:
        p = login(srv)
        assert refusal(p, "RETR 1") == b"-ERR [SYS/TEMP] Temporary failure of the mail store, try again later"
        assert refusal(p, "TOP 1 1") == b"-ERR [SYS/TEMP] Temporary failure of the mail store, try again later"
        assert p.top(1, 0)[0].startswith(b"+OK")  # the header block comes from the index entry, no read
        p.dele(1)
        with pytest.raises(poplib.error_proto) as exc:
            p.quit()
        assert exc.value.args[0] == b"-ERR [SYS/TEMP] Some deleted messages not removed, try again later"
    assert inner.store.get_mailbox(USER, "INBOX").exists == 3


def test_unexpected_error_closes_only_that_connection():
    b, _ = flaky_backend(crash={"read"})
    with ServerThread(start_pop3, b) as srv:
        p = login(srv)
        p._putcmd("RETR 1")
        assert p.file.readline() == R["internal"] + b"\r\n"
        assert p.file.readline() == b""
        wait_for(sessions_gone(srv))
        b.store.crash.clear()
        p = login(srv)  # the server is still serving, the lock was released
        assert p.retr(1)[1] == lines_of(logical(MSG1))
        p.quit()


def test_per_ip_connection_limit_and_auth_lockout(backend):
    """The shared abuse limits (postern.limits) as the gateway attaches them."""
    from postern.limits import Limits, MemoryCounters

    b = memory_backend(store=backend.store, directory=backend.directory, max_conn_per_ip=2, auth_fail_user_limit=2)
    b.limits = Limits(b.settings, MemoryCounters())
    with ServerThread(start_pop3, b) as srv:
        first, second = connect(srv), connect(srv)
        c = Raw(srv.port)
        assert c.line() == b"-ERR [SYS/TEMP] Too many connections from your address, try again later\r\n"
        assert c.closed()
        second.quit()
        wait_for(lambda: b.limits.open_connections("127.0.0.1") == 1)
        p = connect(srv)  # the slot came back
        for _ in range(2):
            p.user(USER)
            assert refusal(p, "PASS wrong") == R["auth_failed"]
        p.user(USER)
        assert refusal(p, "PASS " + PASSWORD) == (
            b"-ERR [SYS/TEMP] Account temporarily locked after failed logins, try again later")
        p.quit()
        first.quit()


def test_fuzz_byte_streams_never_hang_or_crash(backend):
    """Random input then EOF: the server answers, closes, and keeps serving (issue 5 fuzzing)."""
    import socket

    from hypothesis import given, settings
    from hypothesis import strategies as st

    words = st.sampled_from([b"USER ", b"PASS ", b"AUTH PLAIN", b"STLS", b"CAPA", b"TOP 1 ", b"\r\n", b"\n",
                             b".", b"*", b"=", b"\x00", b"\xff", b" ", b"RETR 1", b"LIST", b"QUIT"])
    streams = st.lists(st.one_of(words, st.binary(max_size=40)), max_size=30).map(b"".join)

    with ServerThread(start_pop3, backend) as srv:
        @settings(max_examples=40, deadline=None)
        @given(data=streams)
        def run(data):
            c = Raw(srv.port)
            try:
                c.send(data)
                c.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the server may already have closed (line too long, too many errors)
            received = c.buf
            try:
                while chunk := c.sock.recv(65536):
                    received += chunk
            except ConnectionResetError:
                pass
            c.close()
            assert received.startswith(b"+OK ")
            assert b"Internal server error" not in received

        run()
        wait_for(sessions_gone(srv))
        p = login(srv)
        assert p.stat() == (3, sum(SIZES))
        p.quit()
