"""Authenticated IMAP commands that cost CPU cannot stall the gateway (issue 11, findings 1, 2, 7).

Each attack runs against the gateway in its own process under RLIMIT_AS while a canary client
probes it (postern_local.liveness: a second client's NOOP and greetings within 2 s, gateway
peak RSS under 512 MiB). The gateway runs with a 3 s work budget (POSTERN_WORK_SECONDS) so a
command past it answers NO [LIMIT] quickly; the CPU work itself runs in the worker processes
of postern_gateway.workers.

Before the fix: LIST "" with 40 wildcards stalled every protocol for 3.4 s (30 stars against a
25-character name never finished); 1000 x BODY az over 2 MiB, 21 s; a BODY search over 10,000
MIME parts, 36 s; a stored 1 MB Subject searched or sorted grew the process past 24 GB.
"""

from __future__ import annotations

import re
import secrets
import socket

import pytest
from postern_local.liveness import HostileGateway

BUDGET = "3"


@pytest.fixture(scope="module")
def imap_hostile(stack):
    domain = f"imapcanary-{secrets.token_hex(3)}.test"
    stack.directory.add_domain(domain)
    canary, password = f"canary@{domain}", secrets.token_urlsafe(9)
    stack.directory.add_user(canary, password)
    stack.store.ensure_mailboxes(canary)
    g = HostileGateway(stack, canary, password, extra_env={"POSTERN_WORK_SECONDS": BUDGET}).start()
    try:
        yield g
    finally:
        g.stop()


@pytest.fixture
def attacker(stack, new_user):
    address, password = new_user("mallory")
    stack.store.ensure_mailboxes(address)
    return address, password


class Client:
    """A byte-level IMAP client (imaplib would quote the 40-star pattern its own way)."""

    def __init__(self, port: int, user: str, password: str):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.f = self.sock.makefile("rb")
        self.f.readline()
        self.n = 0
        assert self.cmd(f'LOGIN "{user}" "{password}"')[-1].split()[1] == b"OK"

    def cmd(self, text: str) -> list[bytes]:
        self.n += 1
        tag = f"h{self.n}".encode()
        self.sock.sendall(tag + b" " + text.encode() + b"\r\n")
        out = []
        while True:
            line = self.f.readline()
            if not line:
                raise ConnectionError("closed")
            m = re.search(rb"\{(\d+)\}\r\n$", line)
            if m:
                line += self.f.read(int(m.group(1))) + self.f.readline()
            out.append(line)
            if line.startswith(tag + b" "):
                return out

    def status(self, text: str) -> str:
        """OK, or the response code of the tagged NO."""
        last = self.cmd(text)[-1].split(b" ", 2)
        if last[1] == b"OK":
            return "OK"
        m = re.match(rb"\[([A-Z-]+)\]", last[2])
        return m.group(1).decode() if m else last[1].decode()

    def close(self) -> None:
        self.sock.close()


def test_list_with_forty_wildcards(imap_hostile, stack, attacker):
    stack.store.create_mailboxes(attacker[0], [("a" * 25, None)])
    c = Client(imap_hostile.ports["imap"], *attacker)
    replies = []
    result = imap_hostile.measure(lambda: replies.extend(
        [c.status('LIST "" "' + "*" * 40 + 'x"'), c.status('LIST "" "' + "*" * 30 + 'b"'),
         c.status('LIST "" "' + "%*" * 20 + 'a"')]))
    print("LIST 40 wildcards:", result)
    result.check()
    assert replies == ["OK", "OK", "OK"]
    assert c.status('LIST "" "' + "*" * 2000 + '"') == "BAD"  # the pattern length cap
    c.close()


def test_search_of_a_thousand_body_keys(imap_hostile, stack, attacker):
    body = (b"a" * 77 + b"\r\n") * 26_000 + b"az\r\n"  # 2 MiB; "az" at the very end
    stack.store.append(attacker[0], "INBOX", b"Subject: bomb\r\nContent-Type: text/plain\r\n\r\n" + body)
    c = Client(imap_hostile.ports["imap"], *attacker)
    c.cmd("SELECT INBOX")
    replies = []
    result = imap_hostile.measure(lambda: replies.append(c.status("SEARCH" + " BODY az" * 1000)))
    print("SEARCH 1000 x BODY:", result)
    result.check()
    assert replies == ["LIMIT"]
    assert c.status("SEARCH BODY az") == "OK"  # one key: well inside the budget; the session goes on
    c.close()


def test_ten_thousand_mime_parts(imap_hostile, stack, attacker):
    parts = b"".join(b"--b\r\nContent-Type: text/plain; name=p%d\r\n\r\nx\r\n" % i for i in range(10_000))
    stack.store.append(attacker[0], "INBOX", b"Subject: parts\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
                       + parts + b"--b--\r\n")
    c = Client(imap_hostile.ports["imap"], *attacker)
    c.cmd("SELECT INBOX")
    replies = []
    result = imap_hostile.measure(lambda: replies.extend(
        [c.status("FETCH 1 BODYSTRUCTURE"), c.status("FETCH 1 BODY.PEEK[9999]"), c.status("SEARCH BODY nowhere")]))
    print("10,000 MIME parts:", result, replies)
    result.check()
    assert set(replies[:2]) <= {"OK", "LIMIT"} and replies[2] == "LIMIT", replies
    c.close()


def test_header_bomb_searched_sorted_threaded(imap_hostile, stack, attacker):
    """A stored 1 MB Subject of encoded-words (the stdlib decoder's memory grows with their square)."""
    subject = b"\r\n ".join(b"=?utf-8?q?ab?=" for _ in range(70_000))
    stack.store.append(attacker[0], "INBOX", b"From: a@b.test\r\nSubject: " + subject + b"\r\n\r\nbody\r\n")
    stack.store.append(attacker[0], "INBOX", b"From: a@b.test\r\nSubject: fine\r\n\r\nbody\r\n")
    c = Client(imap_hostile.ports["imap"], *attacker)
    c.cmd("SELECT INBOX")
    replies = []
    result = imap_hostile.measure(lambda: replies.extend(
        [c.status("SEARCH SUBJECT zz"), c.status("SORT (SUBJECT) UTF-8 ALL"),
         c.status("THREAD ORDEREDSUBJECT UTF-8 ALL")]))
    print("1 MB Subject:", result, replies)
    result.check()
    assert set(replies) <= {"OK", "LIMIT"}, replies
    assert c.status("NOOP") == "OK"
    c.close()
