"""A login storm over real clients (issue 12, `make load`): password checks have a lane of their own.

`make load` opened 170 sessions at once over 70 accounts: every first login needed an argon2id
check, four ran at a time on the executor's interactive threads, and the rest queued until the
clients (POP3: 60 s) timed out without a reply. Now the checks run on the hashing pool (the
threads other sessions' backend calls need stay free) and a login that finds no check slot within
POSTERN_AUTH_QUEUE_WAIT gets a temporary refusal it can act on (IMAP ``NO [UNAVAILABLE]``, POP3
``-ERR [SYS/TEMP]``), never silence. Gated checks, conditions waited on: no timing assertions.
"""

from __future__ import annotations

import imaplib
import poplib
import threading

import pytest
from helpers import ServerThread, memory_backend, wait_for

from postern_gateway.blocking import HASH_THREADS
from postern_gateway.imap.server import start_imap
from postern_gateway.pop3.server import start_pop3

DOMAIN = "example.test"
STORM = [f"storm{i}@{DOMAIN}" for i in range(HASH_THREADS)]
LATE = f"late@{DOMAIN}"
EARLY = f"early@{DOMAIN}"


def storm_backend():
    """A backend whose password checks for STORM users block until ``gate`` is set."""
    backend = memory_backend(auth_queue_wait=0.5)
    d = backend.directory
    d.add_domain(DOMAIN)
    for u in STORM + [LATE, EARLY]:
        d.add_user(u, "pw-" + u)
        backend.store.ensure_mailboxes(u)
    real = d.authenticate
    gate = threading.Event()
    held: list[str] = []

    def gated(user, password):
        if user in STORM:
            held.append(user)
            gate.wait(300)  # past the early session's client timeout: a call queued behind it would fail
        return real(user, password)

    d.authenticate = gated
    return backend, gate, held


def imap_login(port, user, results):
    try:
        c = imaplib.IMAP4("127.0.0.1", port, timeout=60)
        results[user] = c.login(user, "pw-" + user)[0]
        c.logout()
    except Exception as exc:  # noqa: BLE001 - the assertion reads it
        results[user] = exc


def pop3_login(port, user, results):
    try:
        c = poplib.POP3("127.0.0.1", port, timeout=60)
        c.user(user)
        results[user] = c.pass_("pw-" + user)
        c.quit()
    except Exception as exc:  # noqa: BLE001 - the assertion reads it
        results[user] = exc


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_a_login_storm_leaves_other_sessions_served_and_a_late_login_refused_for_now(protocol):
    backend, gate, held = storm_backend()
    start, login = (start_imap, imap_login) if protocol == "imap" else (start_pop3, pop3_login)
    with ServerThread(start, backend) as srv:
        results: dict = {}
        try:
            if protocol == "imap":  # a session logged in before the storm
                early = imaplib.IMAP4("127.0.0.1", srv.port, timeout=30)
                early.login(EARLY, "pw-" + EARLY)
            storm = [threading.Thread(target=login, args=(srv.port, u, results), daemon=True) for u in STORM]
            for t in storm:
                t.start()
            wait_for(lambda: len(held) == len(STORM), 30, "every hashing slot held by the storm")
            if protocol == "imap":
                # its backend calls (SELECT's reads) do not queue behind the password checks
                assert early.select("INBOX")[0] == "OK"
                assert early.noop()[0] == "OK"
            login(srv.port, LATE, results)  # no check slot came free within the wait: refused, not left hanging
            late = results[LATE]
            if protocol == "imap":
                assert isinstance(late, imaplib.IMAP4.error) and "[UNAVAILABLE]" in str(late), late
            else:
                assert isinstance(late, poplib.error_proto) and b"-ERR [SYS/TEMP]" in late.args[0], late
            assert "try again" in str(late)
        finally:
            gate.set()
        for t in storm:
            t.join(60)
        # the storm's own logins were checked and let in once their checks ran
        if protocol == "imap":
            assert all(results[u] == "OK" for u in STORM), results
            early.logout()
        else:
            assert all(isinstance(results[u], bytes) and results[u].startswith(b"+OK") for u in STORM), results
        login(srv.port, LATE, results)  # and the refused client, trying again, gets in
        assert results[LATE] == "OK" if protocol == "imap" else results[LATE].startswith(b"+OK")
