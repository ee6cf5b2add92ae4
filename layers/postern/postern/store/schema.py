"""The mail table's layout version, and the migrations between versions (``postern migrate``).

In:   an item layer over the mail table (``postern.items``).
Out:  :func:`version` (the version the table is at, None when it holds no
      layout yet), :func:`migrate` (brings it to :data:`CURRENT`, one step at a
      time, and records each step), :func:`check` (refuses to run code against a
      table written by a newer layout).
Fails: :class:`SchemaError` when the table is newer than this code or a step is
      missing; StoreUnavailable from the item layer.

Every layout change from the first release on is a new version with a step in
:data:`MIGRATIONS` (``from_version -> function(items, say)``). A step must be
idempotent and resumable (it may be interrupted and run again), because the
version is written only after the step completes. Version 1 is the layout
described in ``postern.keys`` and ``store.records``: an account change log,
per-mailbox state items and index entries, no secondary index. No deployed
stack predates it, so there is nothing to migrate into it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .. import keys

CURRENT = 1
MIGRATIONS: dict[int, Callable] = {}


class SchemaError(Exception):
    pass


def version(items) -> int | None:
    item = items.get(keys.schema_key())
    return int(item["version"]) if item else None


def check(items) -> int:
    """The table's version; SchemaError when it is newer than this code understands."""
    v = version(items)
    if v is not None and v > CURRENT:
        raise SchemaError(f"mail table is at layout version {v}; this code knows up to {CURRENT}: upgrade first")
    return v or CURRENT


def _record(items, v: int) -> None:
    items.put({**keys.schema_key(), "version": v, "at": time.time()})


def migrate(items, say: Callable[[str], None] = lambda _s: None, dry_run: bool = False) -> tuple[int | None, int]:
    """Apply every step from the table's version to CURRENT; returns (before, after)."""
    before = version(items)
    v = before if before is not None else CURRENT  # a new table starts at the current layout
    if v > CURRENT:
        raise SchemaError(f"mail table is at layout version {v}, newer than this code ({CURRENT})")
    while v < CURRENT:
        step = MIGRATIONS.get(v)
        if step is None:
            raise SchemaError(f"no migration from layout version {v}")
        say(f"migrating mail table from layout {v} to {v + 1}")
        if not dry_run:
            step(items, say)
            _record(items, v + 1)
        v += 1
    if before is None and not dry_run:
        _record(items, CURRENT)
    return before, v
