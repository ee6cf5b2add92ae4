"""Queue ids: the name of one accepted message, and the time it carries.

In:   nothing (:func:`new_queue_id`), or a spool object key / queue id
      (:func:`spooled_at`), or a prefix and a time (:func:`key_at`).
Out:  a queue id of 24 lowercase hex digits: 14 of microseconds since the epoch
      (sortable by arrival) then 10 random (unique across gateway tasks); the
      epoch seconds a key's queue id was made; the smallest spool key made at
      a time (the spool sweeper lists one range of arrival times with it).
Fails: never; a key whose last segment does not start with a queue id has no
      time (``None``).
"""

from __future__ import annotations

import secrets
import time

TIME_DIGITS = 14


def new_queue_id() -> str:
    return f"{time.time_ns() // 1000:0{TIME_DIGITS}x}{secrets.token_hex(5)}"


def spooled_at(key: str) -> float | None:
    """When the queue id that starts the key's last segment was made (``spool/<id>``, ``spool/<id>-v...``)."""
    head = key.rsplit("/", 1)[-1][:TIME_DIGITS]
    if len(head) < TIME_DIGITS or head != head.lower():
        return None
    try:
        return int(head, 16) / 1e6
    except ValueError:
        return None


def key_at(prefix: str, at: float) -> str:
    """The first key under ``prefix`` a queue id made at ``at`` (epoch seconds) can have."""
    return f"{prefix}{max(0, int(at * 1e6)):0{TIME_DIGITS}x}"
