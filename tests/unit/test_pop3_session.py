"""The POP3 state machine without sockets: lines in, bytes and Actions out."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postern.config import Settings
from postern.directory import memory_directory
from postern.errors import StoreUnavailable
from postern.store.memory import MemoryMailStore
from postern_gateway.backend import Backend
from postern_gateway.blocking import Blocking
from postern_gateway.pop3 import session as S

USER, PASSWORD = "alice@example.test", "pw"
BODY = b"Subject: s\r\n\r\n" + b"".join(b"line %d\r\n" % i for i in range(50))


def make_backend() -> Backend:
    b = Backend(Settings().replace(login_fail_delay=0.0, allow_plaintext_auth=True), MemoryMailStore(),
                memory_directory(), Blocking(2))
    b.directory.add_domain("example.test")
    b.directory.add_user(USER, PASSWORD)
    b.store.ensure_mailboxes(USER)
    b.store.append(USER, "INBOX", BODY)
    b.store.append(USER, "INBOX", b"Subject: two\r\n\r\n.x\r\n")
    return b


@pytest.fixture
def backend():
    b = make_backend()
    yield b
    b.blocking.shutdown()


class Harness:
    def __init__(self, backend, **kw):
        self.out: list[bytes] = []

        async def write(data: bytes) -> None:
            self.out.append(data)

        self.session = S.Pop3Session(backend, write, locks=S.MaildropLocks(), **kw)
        self.loop = asyncio.new_event_loop()

    def __call__(self, line: bytes) -> S.Action:
        self.out.clear()
        return self.loop.run_until_complete(self.session.handle_line(line))

    @property
    def reply(self) -> bytes:
        return b"".join(self.out)

    def login(self) -> None:
        self(b"USER " + USER.encode() + b"\r\n")
        assert self(b"PASS " + PASSWORD.encode() + b"\r\n") is S.Action.CONTINUE
        assert self.session.state == S.TRANSACTION, self.reply

    def close(self) -> None:
        self.session.close()
        self.loop.close()


def test_gate_table_is_the_rfc_surface():
    assert S.COMMANDS[S.AUTHORIZATION] == {"USER", "PASS", "AUTH", "STLS", "CAPA", "QUIT"}
    assert S.COMMANDS[S.TRANSACTION] == {"STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "TOP", "UIDL", "CAPA", "QUIT"}
    assert S.COMMANDS[S.UPDATE] == frozenset()


@pytest.mark.parametrize("state", [S.AUTHORIZATION, S.TRANSACTION, S.UPDATE])
def test_every_known_command_outside_its_state_is_refused(backend, state):
    h = Harness(backend, max_bad_commands=100)
    if state != S.AUTHORIZATION:
        h.login()
    if state == S.UPDATE:
        assert h(b"QUIT\r\n") is S.Action.CLOSE
        assert h.session.state == S.UPDATE
    for kw in sorted(S.KNOWN - S.COMMANDS[state] - {"APOP"}):
        assert h(kw.encode() + b" 1\r\n") is S.Action.CONTINUE
        assert h.reply == b"-ERR Command not valid in this state: " + kw.encode() + b"\r\n"
    h.close()


def test_lock_released_on_close(backend):
    locks = S.MaildropLocks()
    h = Harness(backend)
    h.session.locks = locks
    h.login()
    mb = backend.store.get_mailbox(USER, "INBOX")
    assert f"{USER}/{mb.mailbox_id}" in locks
    h.close()
    assert f"{USER}/{mb.mailbox_id}" not in locks


def test_retr_failing_after_ok_closes_connection(backend, monkeypatch):
    monkeypatch.setattr(S, "READ_CHUNK", 16)
    real = backend.store.read
    calls = []

    def read(meta, start=0, end=None):
        calls.append(start)
        if len(calls) > 1:
            raise StoreUnavailable()
        return real(meta, start, end)

    monkeypatch.setattr(backend.store, "read", read)
    h = Harness(backend)
    h.login()
    assert h(b"RETR 1\r\n") is S.Action.CLOSE  # +OK already sent: dropping is the only honest signal
    assert h.reply.startswith(b"+OK ") and not h.reply.endswith(b".\r\n")
    h.close()


def test_sasl_line_limit(backend):
    h = Harness(backend)
    assert h.session.line_limit == 1000
    h(b"AUTH PLAIN\r\n")
    assert h.reply == b"+ \r\n" and h.session.line_limit == 8192
    h(b"*\r\n")
    assert h.session.line_limit == 1000
    h.close()


KEYWORDS = sorted(S.KNOWN) + ["XTND", "", "retr", "Top"]
ARGS = st.lists(st.one_of(st.sampled_from(["1", "2", "0", "-1", "99", "=", "*", "x" * 50, "\u00e4"]),
                          st.text(max_size=8)), max_size=3)
LINES = st.one_of(
    st.builds(lambda k, a: (" ".join([k, *a])).encode("utf-8", "surrogatepass") + b"\r\n",
              st.sampled_from(KEYWORDS), ARGS),
    st.binary(max_size=60),
)


@settings(max_examples=150, deadline=None)
@given(lines=st.lists(LINES, max_size=12), logged_in=st.booleans())
def test_fuzz_no_exception_escapes(lines, logged_in):
    """Any sequence of lines gets +OK/-ERR answers and Actions; nothing raises (issue 5 fuzzing)."""
    backend = make_backend()
    h = Harness(backend)
    committed = False
    try:
        if logged_in:
            h.login()
        for line in lines:
            quit_in_transaction = h.session.state == S.TRANSACTION and line.strip().upper() == b"QUIT"
            action = h(line)
            assert isinstance(action, S.Action)
            assert h.reply[:3] in (b"+OK", b"-ER", b"+ \r"), h.reply
            committed |= quit_in_transaction
            if action is not S.Action.CONTINUE:
                break
    finally:
        h.close()
        backend.blocking.shutdown()
    if not committed:  # only QUIT in TRANSACTION removes anything
        assert backend.store.get_mailbox(USER, "INBOX").exists == 2
