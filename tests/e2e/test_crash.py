"""Kill -9 the gateway in the middle of DATA and of an IMAP APPEND: no partial message, ever.

The gateway runs as its own process against the test stack (moto, queues,
tables) so SIGKILL is a real crash: no handler, finally block or flush runs.
After a restart on the same ports the mailbox must hold only complete
messages: the half-sent one is absent, one sent after the restart is there
byte for byte, and one whose final dot raced the kill is absent or complete.
"""

from __future__ import annotations

import imaplib
import smtplib
import socket
import time

import pytest

from postern_local.faultrun import mailbox_ids, make_message
from postern_local.gatewayproc import GatewayProcess


def _smtp_until_data(port: int, rcpt: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    f = s.makefile("rb")

    def cmd(line: bytes, expect: bytes):
        if line:
            s.sendall(line + b"\r\n")
        while True:
            reply = f.readline()
            if reply[3:4] != b"-":
                break
        assert reply.startswith(expect), reply

    cmd(b"", b"220")
    cmd(b"EHLO crash.example.test", b"250")
    cmd(b"MAIL FROM:<far@remote.test>", b"250")
    cmd(f"RCPT TO:<{rcpt}>".encode(), b"250")
    cmd(b"DATA", b"354")
    return s


def _gateway_has_read(s: socket.socket, timeout: float = 10.0) -> None:
    """Until every byte sent on ``s`` has been read by the gateway: our send queue and the receive
    queue of its end of the connection are empty (/proc/net/tcp), so the half message is inside
    the process the test then kills, not in a socket buffer. A condition, not a fixed sleep."""
    ours = "0100007F:%04X" % s.getsockname()[1]
    theirs = "0100007F:%04X" % s.getpeername()[1]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        queues = {}
        with open("/proc/net/tcp") as fh:
            for line in fh.read().splitlines()[1:]:
                f = line.split()
                tx, rx = (int(x, 16) for x in f[4].split(":"))
                queues[(f[1], f[2])] = (tx, rx)
        if queues.get((ours, theirs), (1, 1))[0] == 0 and queues.get((theirs, ours), (1, 1))[1] == 0:
            return
        time.sleep(0.01)
    raise AssertionError("the gateway did not read what was sent")


@pytest.fixture
def gateway(stack):
    g = GatewayProcess(stack).start()
    try:
        yield g
    finally:
        g.stop()


def _bodies(stack, user):
    mb = stack.store.get_mailbox(user, "INBOX")
    return [stack.store.read(m) for m in stack.store.list_messages(mb)]


def test_kill_mid_data_leaves_nothing_partial(stack, new_user, gateway):
    user, _pw = new_user("crash")
    partial_id, partial = make_message("far@remote.test", [user], 64 * 1024)
    s = _smtp_until_data(gateway.ports["smtp"], user)
    s.sendall(partial[: len(partial) // 2])
    _gateway_has_read(s)
    gateway.kill()
    s.close()

    raced_id, raced = make_message("far@remote.test", [user], 4096)
    gateway.start()  # same ports
    s = _smtp_until_data(gateway.ports["smtp"], user)
    s.sendall(raced + b".\r\n")  # the final dot, then the kill races the reply
    gateway.kill()
    s.close()

    gateway.start()
    after_id, after = make_message("far@remote.test", [user], 4096)
    with smtplib.SMTP("127.0.0.1", gateway.ports["smtp"], timeout=30) as c:
        c.sendmail("far@remote.test", [user], after)
    stack.drain()

    ids = mailbox_ids(stack.store, [user])[user]
    assert ids[partial_id] == 0 and ids[after_id] == 1 and ids[raced_id] in (0, 1), ids
    for body in _bodies(stack, user):
        assert body.endswith(after) or body.endswith(raced), "a stored message is not one we sent whole"


def test_kill_mid_append_leaves_nothing_partial(stack, new_user, gateway):
    user, pw = new_user("append")
    stack.store.ensure_mailboxes(user)
    partial_id, partial = make_message(user, [user], 64 * 1024)
    s = socket.create_connection(("127.0.0.1", gateway.ports["imap"]), timeout=10)
    f = s.makefile("rb")
    assert f.readline().startswith(b"* OK")
    s.sendall(f'a1 LOGIN "{user}" "{pw}"\r\n'.encode())
    while not (line := f.readline()).startswith(b"a1 "):
        pass
    assert line.startswith(b"a1 OK"), line
    s.sendall(f"a2 APPEND INBOX {{{len(partial)}}}\r\n".encode())
    assert f.readline().startswith(b"+")
    s.sendall(partial[: len(partial) // 2])
    _gateway_has_read(s)
    gateway.kill()
    s.close()

    gateway.start()
    whole_id, whole = make_message(user, [user], 4096)
    c = imaplib.IMAP4("127.0.0.1", gateway.ports["imap"], timeout=30)
    c.login(user, pw)
    typ, data = c.append("INBOX", None, None, whole)
    assert typ == "OK", data
    typ, data = c.select("INBOX")
    assert typ == "OK" and int(data[0]) == 1, data  # only the complete APPEND
    typ, data = c.fetch("1", "(BODY.PEEK[])")
    assert data[0][1] == whole
    c.logout()
    ids = mailbox_ids(stack.store, [user])[user]
    assert ids[partial_id] == 0 and ids[whole_id] == 1, ids
