"""The IMAP command gate (RFC 3501 §3, mox ``commandsState*``, pymap ``imap/state.py``).

In:   the session's :class:`~.state.State` and a command name (``UID`` commands carry ``uid``).
Out:  :func:`handler` -> the ops coroutine for that command (an :data:`~.ops.Op`), or a BAD.
      The whole protocol surface is the four tables below.
Fails: :class:`~.errors.BadCommand` for an unknown command or one not valid
      in the current state.
"""

from __future__ import annotations

from .errors import BadCommand
from .ops import Op, append, auth, copy, expunge, fetch, mailboxes, quota, search, select, store
from .state import AUTHENTICATED, LOGOUT, NOT_AUTHENTICATED, SELECTED, State

ANY: dict[str, Op] = {  # RFC 3501 §6.1: valid in every state
    "CAPABILITY": auth.capability, "NOOP": select.noop, "LOGOUT": auth.logout, "ID": auth.id_,
}
NOT_AUTH: dict[str, Op] = {  # §6.2
    "STARTTLS": auth.starttls, "AUTHENTICATE": auth.authenticate, "LOGIN": auth.login,
}
AUTH: dict[str, Op] = {  # §6.3 (also valid when a mailbox is selected)
    "ENABLE": auth.enable, "SELECT": select.select, "EXAMINE": select.select,
    "CREATE": mailboxes.create, "DELETE": mailboxes.delete, "RENAME": mailboxes.rename,
    "SUBSCRIBE": mailboxes.subscribe, "UNSUBSCRIBE": mailboxes.unsubscribe,
    "LIST": mailboxes.list_, "LSUB": mailboxes.lsub, "STATUS": mailboxes.status,
    "NAMESPACE": mailboxes.namespace, "APPEND": append.append, "IDLE": select.idle,
    "GETQUOTAROOT": quota.getquotaroot, "GETQUOTA": quota.getquota, "SETQUOTA": quota.setquota,
}
SELECTED_ONLY: dict[str, Op] = {  # §6.4
    "CHECK": select.check, "CLOSE": select.close, "UNSELECT": select.unselect,
    "EXPUNGE": expunge.expunge, "SEARCH": search.search, "FETCH": fetch.fetch,
    "SORT": search.sort, "THREAD": search.thread,
    "STORE": store.store, "COPY": copy.copy, "MOVE": copy.move,
}
UID_COMMANDS = frozenset({"FETCH", "STORE", "SEARCH", "COPY", "MOVE", "EXPUNGE", "SORT", "THREAD"})

GATES: dict[State, tuple[dict[str, Op], ...]] = {
    NOT_AUTHENTICATED: (ANY, NOT_AUTH),
    AUTHENTICATED: (ANY, AUTH),
    SELECTED: (ANY, AUTH, SELECTED_ONLY),
    LOGOUT: (),
}
KNOWN = set(ANY) | set(NOT_AUTH) | set(AUTH) | set(SELECTED_ONLY)


def handler(state: State, name: str, uid: bool = False) -> Op:
    if uid and name not in UID_COMMANDS:
        raise BadCommand(f"UID {name} is not a command")
    for table in GATES.get(state, ()):
        if name in table:
            return table[name]
    if name in KNOWN:
        raise BadCommand(f"{name} is not valid in the {state.value} state")
    raise BadCommand("Unknown command")
