"""Before authentication, commands are small (issue 11 finding 3), through the hostile harness.

Every case runs against the gateway in its own process under RLIMIT_AS while a canary client
probes it (postern_local.liveness). The attack: many connections from one address, each
pushing megabytes before logging in (IMAP literals with LITERAL+, POP3 and submission command
lines). Each connection must be cut off with the protocol's error once it has sent
POSTERN_PREAUTH_MAX_BYTES (16 KiB), the canary must keep being served within the stall
ceiling and the gateway's peak RSS must stay under the RSS ceiling (the finding: 12 unfinished
IMAP LOGINs held 382 MB). ManageSieve shares the budget (postern_gateway.preauth).
"""

from __future__ import annotations

import socket
import time

import pytest

MIB = 1024 * 1024
BUDGET = 16 * 1024
CONNECTIONS = 40


def _imap_literals(total: int) -> bytes:
    """One never-ending LOGIN: LITERAL+ (RFC 7888) literals of 1 MiB, no synchronisation."""
    out = bytearray(b"a1 LOGIN")
    while len(out) < total:
        out += b" {%d+}\r\n" % MIB + b"x" * MIB
    return bytes(out)


def _lines(line: bytes, total: int) -> bytes:
    return line * (total // len(line))


PAYLOADS = {
    "imap": lambda: _imap_literals(24 * MIB),
    "pop3": lambda: _lines(b"CAPA\r\n", 4 * MIB),
    "submission": lambda: _lines(b"NOOP\r\n", 4 * MIB),
    # SASL responses as non-synchronising literals (RFC 5804 §4): never a complete AUTHENTICATE.
    "managesieve": lambda: b'AUTHENTICATE "PLAIN" ' + _lines(b" {4000+}\r\n" + b"x" * 4000, 4 * MIB),
}
REFUSAL = {"imap": b"* BYE", "pop3": b"-ERR", "submission": b"421 ", "managesieve": b"BYE "}


class Flood:
    """``conns`` connections sending ``payload`` round-robin until the server closes each one."""

    def __init__(self, port: int, payload: bytes, conns: int = CONNECTIONS, deadline: float = 60.0):
        self.port, self.payload, self.conns, self.deadline = port, payload, conns, deadline
        self.replies: list[bytes] = []
        self.sent: list[int] = []
        self.closed_by_server: list[bool] = []

    def __call__(self) -> None:
        socks = []
        for _ in range(self.conns):
            s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            s.recv(4096)  # greeting
            s.setblocking(False)
            socks.append(s)
        sent = [0] * len(socks)
        replies = [b""] * len(socks)
        open_ = [True] * len(socks)
        end = time.monotonic() + self.deadline
        chunk = 256 * 1024
        while any(open_) and time.monotonic() < end:
            for i, s in enumerate(socks):
                if not open_[i]:
                    continue
                try:
                    data = s.recv(65536)
                    if data == b"":
                        open_[i] = False
                        continue
                    replies[i] += data[:4096]
                except BlockingIOError:
                    pass
                except OSError:
                    open_[i] = False
                    continue
                if sent[i] < len(self.payload):
                    try:
                        sent[i] += s.send(self.payload[sent[i]: sent[i] + chunk])
                    except BlockingIOError:
                        pass
                    except OSError:
                        open_[i] = False
            if all(n >= len(self.payload) for n in sent):
                time.sleep(0.01)  # everything sent: just wait for replies or the close
        time.sleep(0.5)  # connections the server kept open hold their memory a little longer
        for s in socks:
            s.close()
        self.sent, self.replies, self.closed_by_server = sent, replies, [not o for o in open_]


@pytest.mark.parametrize("protocol", sorted(PAYLOADS))
def test_unauthenticated_flood_is_cut_at_the_budget(hostile, protocol):
    flood = Flood(hostile.ports[protocol], PAYLOADS[protocol]())
    result = hostile.measure(flood)
    print(protocol, result)
    result.check()
    assert all(flood.closed_by_server), "the server kept an unauthenticated flooder connected"
    # A flooder still sending when the server closes may get a reset that discards the reply
    # (test_preauth.py checks it exactly); the reason must reach those that read it.
    assert any(REFUSAL[protocol] in r and b"before login" in r.lower() for r in flood.replies), flood.replies[:3]
