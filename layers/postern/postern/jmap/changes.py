"""/changes over the account's change log (RFC 8620 §5.2): one reading for every data type.

In:   the account, ``sinceState`` (an account change number), ``maxChanges``
      and a function that reads one :class:`~postern.store.base.Change` into
      created / updated / destroyed ids of the type asked for.
Out:  the /changes response arguments.
Fails: ``cannotCalculateChanges`` for a state this server never gave (above
      the current one) or a change the type cannot be read from (``Skip``).

The state of every type is the account's change number: a change of another
type moves it too, and /changes then reports nothing for this type (RFC 8620
§5.2 allows a state to change with no visible change). The log is read in
pages of at most ``PAGE`` changes; a longer window answers
``hasMoreChanges`` with the change number reached as ``newState``, and so
does ``maxChanges`` (at a change boundary: a change is never split, so a
client never sees half of one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..store.base import Change
from . import args as A
from .errors import MethodError

PAGE = 2000  # changes read per /changes call


class Skip(Exception):
    """This change cannot be read into ids of this type: the client must resynchronise."""


@dataclass
class Delta:
    created: set[str] = field(default_factory=set)
    updated: set[str] = field(default_factory=set)
    destroyed: set[str] = field(default_factory=set)
    counts_only: bool = True  # every update was a change of counters only (Mailbox updatedProperties)

    def size(self) -> int:
        return len(self.created | self.updated | self.destroyed)


Reader = Callable[[Change, Delta], None]


def compute(call, args: dict, read: Reader, exists: Callable[[str], bool]) -> tuple[dict, Delta]:
    A.known(args, {"accountId", "sinceState", "maxChanges"})
    since = A.state(args)
    max_changes = A.integer(args, "maxChanges", None, minimum=1)
    view = call.view()
    if since > view.state:
        raise MethodError("cannotCalculateChanges", "sinceState is newer than this server's state")
    store = call.account.store
    changes = store.follow(call.account.user, since, limit=PAGE) if since < view.state else []
    delta = Delta()
    reached = since
    more = False
    for ch in changes:
        if ch.modseq > view.state:
            break  # after the view was read: the next call reports it
        step = Delta()
        try:
            read(ch, step)
        except Skip:
            raise MethodError("cannotCalculateChanges", "a change since that state cannot be replayed") from None
        merged = _merge(delta, step)
        if max_changes is not None and merged.size() > max_changes and reached > since:
            more = True
            break
        delta = merged
        reached = ch.modseq
    else:
        reached = view.state if len(changes) < PAGE else reached
        more = len(changes) >= PAGE and reached < view.state
    if max_changes is not None and delta.size() > max_changes:
        raise MethodError("cannotCalculateChanges", "one change touches more than maxChanges objects")
    # RFC 8620 §5.2: created+destroyed vanish; destroyed wins over updated; created over updated
    gone = {i for i in delta.created | delta.updated if not exists(i)}
    born_dead = delta.created & (delta.destroyed | gone)
    destroyed = (delta.destroyed | gone) - born_dead
    created = delta.created - born_dead - destroyed
    updated = delta.updated - created - destroyed - born_dead
    out = {
        "accountId": call.account.id,
        "oldState": str(since),
        "newState": str(reached),
        "hasMoreChanges": more,
        "created": sorted(created),
        "updated": sorted(updated),
        "destroyed": sorted(destroyed),
    }
    return out, delta


def _merge(a: Delta, b: Delta) -> Delta:
    return Delta(a.created | b.created, a.updated | b.updated, a.destroyed | b.destroyed,
                 a.counts_only and b.counts_only)
