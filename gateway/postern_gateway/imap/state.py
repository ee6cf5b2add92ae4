"""The IMAP connection states (RFC 3501 §3): a leaf module, imported by the gate, the session and the ops.

In:   nothing (no imports of this package: the ops import it, and ``gate.py`` imports the ops).
Out:  :class:`State` and :data:`TRANSITIONS`, the moves RFC 3501 §3's diagram allows;
      :class:`~.session.Session` is the only code that changes a session's state and checks
      every change against this table.
Fails: never.
"""

from __future__ import annotations

from enum import Enum


class State(Enum):
    NOT_AUTHENTICATED = "not-authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


NOT_AUTHENTICATED = State.NOT_AUTHENTICATED
AUTHENTICATED = State.AUTHENTICATED
SELECTED = State.SELECTED
LOGOUT = State.LOGOUT

# RFC 3501 §3 (figure): (1) connection without pre-authentication, (2) pre-authenticated (unused),
# (3) rejected connection, (4) LOGIN/AUTHENTICATE, (5) SELECT/EXAMINE, (6) CLOSE/UNSELECT or a
# failed SELECT, (7) LOGOUT, server shutdown or connection closed. A SELECT while selected stays
# in (or returns to) the selected state.
TRANSITIONS: dict[State, frozenset[State]] = {
    NOT_AUTHENTICATED: frozenset({AUTHENTICATED, LOGOUT}),
    AUTHENTICATED: frozenset({SELECTED, LOGOUT}),
    SELECTED: frozenset({SELECTED, AUTHENTICATED, LOGOUT}),
    LOGOUT: frozenset(),
}
