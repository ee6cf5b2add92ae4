"""A user's sending identities as JMAP shows them: display names, reply-to, bcc, signatures.

In:   an item layer on the directory table (:mod:`postern.items`), one item per user
      (``keys.identities_key``) holding every stored identity, the identities' state
      number and a short log of which identity changed at which state.
Out:  :class:`IdentityStore`: ``load(user)`` -> :class:`Stored` (identities by id, state,
      log); ``save(user, stored, changed)`` writes the next state with a condition on the
      one read (two writers never lose each other's change silently: the loser gets
      :class:`~postern.items.ConditionFailed`, which JMAP answers ``stateMismatch``-free
      as ``serverUnavailable``: try again).
Fails: StoreUnavailable from the table.

Which addresses a user may have an identity for is NOT decided here: it is the
submission sender rule (:meth:`postern.directory.Directory.owns` over
``Directory.addresses_of``), applied by :mod:`postern.jmap.identity` - the one rule
SMTP submission and EmailSubmission use.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from . import keys
from .items import eq

MAX_LOG = 200  # changes remembered for Identity/changes; older states answer cannotCalculateChanges
MAX_IDENTITIES = 100


@dataclass
class Stored:
    identities: dict[str, dict] = field(default_factory=dict)  # id -> properties (without mayDelete)
    state: int = 0
    log: list[list] = field(default_factory=list)  # [state, id, created|updated|destroyed]


class IdentityStore:
    def __init__(self, items, clock=time.time):
        self.items = items
        self.clock = clock

    def load(self, user: str) -> Stored:
        item = self.items.get(keys.identities_key(user))
        if not item:
            return Stored()
        return Stored(dict(item.get("identities") or {}), int(item.get("state", 0)), list(item.get("log") or []))

    def save(self, user: str, stored: Stored, changes: list[tuple[str, str]]) -> Stored:
        """Write ``stored`` one state on per change ((id, kind) pairs), if nobody wrote in between."""
        if not changes:
            return stored
        state = stored.state
        log = list(stored.log)
        for ident, kind in changes:
            state += 1
            log.append([state, ident, kind])
        new = Stored(stored.identities, state, log[-MAX_LOG:])
        item = {**keys.identities_key(user), "kind": "identities", "identities": new.identities,
                "state": new.state, "log": new.log, "updated": self.clock()}
        if stored.state == 0:
            self.items.put(item, if_absent=True)
        else:
            self.items.put(item, cond=eq("state", stored.state))
        return new
