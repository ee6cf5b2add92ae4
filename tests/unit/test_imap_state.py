"""The IMAP state gate and the session's state transitions (RFC 3501 §3), without sockets."""

from __future__ import annotations

import pytest
from fuzz_harness import fuzz_backend
from postern_gateway.imap.errors import BadCommand
from postern_gateway.imap.gate import handler
from postern_gateway.imap.ops import auth, select
from postern_gateway.imap.session import Session
from postern_gateway.imap.state import AUTHENTICATED, LOGOUT, NOT_AUTHENTICATED, SELECTED


def test_gate_tables():
    assert handler(NOT_AUTHENTICATED, "LOGIN") is auth.login
    assert handler(SELECTED, "EXAMINE") is select.select
    with pytest.raises(BadCommand, match="not valid in the not-authenticated state"):
        handler(NOT_AUTHENTICATED, "SELECT")
    with pytest.raises(BadCommand, match="not valid in the authenticated state"):
        handler(AUTHENTICATED, "FETCH")
    with pytest.raises(BadCommand, match="UID NOOP is not a command"):
        handler(SELECTED, "NOOP", uid=True)
    with pytest.raises(BadCommand):
        handler(LOGOUT, "NOOP")


class _Writer:
    def get_extra_info(self, name):
        return ("127.0.0.1", 1)


def test_session_owns_its_transitions():
    backend = fuzz_backend()
    s = Session(backend, None, _Writer())  # no I/O in this test
    assert s.state is NOT_AUTHENTICATED
    with pytest.raises(AttributeError):
        s.state = SELECTED  # read-only: transitions go through the methods
    with pytest.raises(AssertionError):
        s.enter_selected(object())  # (5) needs authentication first
    s.logged_in("user")
    assert s.state is AUTHENTICATED and s.user == "user"
    with pytest.raises(AssertionError):
        s.logged_in("again")
    s.deselect()  # nothing selected: stays authenticated
    assert s.state is AUTHENTICATED
    s.logout()
    assert s.state is LOGOUT
    backend.blocking.shutdown()
