"""The ManageSieve states and command gate (RFC 5804 §2): the whole protocol surface in three tables.

In:   the session's :class:`State` and a command name (upper case).
Out:  :func:`handler` -> the ops coroutine for that command.
Fails: :func:`~.wire.Bad` (``NO``) for an unknown command or one not valid in this state.
"""

from __future__ import annotations

from enum import Enum

from .ops import Op, scripts, session
from .wire import Bad


class State(Enum):
    NOT_AUTHENTICATED = "non-authenticated"
    AUTHENTICATED = "authenticated"
    LOGOUT = "logout"


NOT_AUTHENTICATED, AUTHENTICATED, LOGOUT = State.NOT_AUTHENTICATED, State.AUTHENTICATED, State.LOGOUT

ANY: dict[str, Op] = {  # valid in both states
    "CAPABILITY": session.capability, "NOOP": session.noop, "LOGOUT": session.logout,
}
NOT_AUTH: dict[str, Op] = {  # §2.1 AUTHENTICATE, §2.2 STARTTLS
    "AUTHENTICATE": session.authenticate, "STARTTLS": session.starttls,
}
AUTH: dict[str, Op] = {  # §2.3-§2.14
    "HAVESPACE": scripts.havespace, "PUTSCRIPT": scripts.putscript, "LISTSCRIPTS": scripts.listscripts,
    "SETACTIVE": scripts.setactive, "GETSCRIPT": scripts.getscript, "DELETESCRIPT": scripts.deletescript,
    "RENAMESCRIPT": scripts.renamescript, "CHECKSCRIPT": scripts.checkscript,
    "UNAUTHENTICATE": session.unauthenticate,
}
GATES: dict[State, tuple[dict[str, Op], ...]] = {
    NOT_AUTHENTICATED: (ANY, NOT_AUTH),
    AUTHENTICATED: (ANY, AUTH),
    LOGOUT: (),
}
KNOWN = set(ANY) | set(NOT_AUTH) | set(AUTH)


def handler(state: State, name: str) -> Op:
    for table in GATES[state]:
        if name in table:
            return table[name]
    if name in KNOWN:
        if state is NOT_AUTHENTICATED:
            raise Bad(f"{name} needs authentication")
        raise Bad(f"{name} is not valid now")
    raise Bad("Unknown command")
