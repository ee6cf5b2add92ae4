"""The spool sweep: what the spool lifecycle rule did, minus the messages mailboxes reference.

In:   the item layer (``B#<key>`` reference sets), the blob layer (listing and
      delete), the spool prefix, the spool window in days and the time now.
Out:  :func:`sweep_spool` deletes every spool object made (by its queue id's
      time) between ``window + 1`` and ``window + 1 + SWEEP_DAYS`` days ago that
      no mailbox references, and returns how many it deleted. A daily run sees
      each object on SWEEP_DAYS runs, so a few missed days lose nothing.
Fails: StoreUnavailable from either layer; the run stops there and the next one
      resumes (deleting is idempotent).

Why it is safe: a delivered message's blob is its spool object (no copy,
``materialise``). Inside the window the pipeline (other recipients' store jobs,
deliver's retries, NDR, Sieve redirects) may still read it, so nothing deletes a
spool object younger than the window (``Materialiser.in_spool_window``); past
it, only an empty or missing reference set lets this sweep delete it, and a
mailbox entry is written only after its reference. Listing is by key range:
queue ids start with their time in hex (``postern.queueid``), so one run lists
only SWEEP_DAYS days of arrivals (1 LIST request per 1,000 objects).
"""

from __future__ import annotations

from .. import keys
from ..items import ConditionFailed, absent
from ..queueid import key_at

SWEEP_DAYS = 7
BATCH = 100  # keys per BatchGetItem


def sweep_spool(items, blobs, prefix: str, window_days: float, now: float, days: float = SWEEP_DAYS) -> int:
    hi = now - (window_days + 1) * 86400
    start, stop = key_at(prefix, hi - days * 86400), key_at(prefix, hi)
    deleted = 0
    batch: list[str] = []
    for key in blobs.list_keys(prefix, start_after=start, stop_before=stop):
        batch.append(key)
        if len(batch) == BATCH:
            deleted += _sweep(items, blobs, batch)
            batch = []
    if batch:
        deleted += _sweep(items, blobs, batch)
    return deleted


def _sweep(items, blobs, batch: list[str]) -> int:
    found = items.batch_get([keys.blob_key(k) for k in batch])
    n = 0
    for k in batch:
        b = found.get(tuple(keys.blob_key(k).values()))
        if b is not None and b.get("refs"):
            continue  # a mailbox holds it
        blobs.delete(k)
        if b is not None:  # what is left of it: its delivery markers (store.records.dedup_marker), past any retry
            try:
                items.delete(keys.blob_key(k), cond=absent("refs"))
            except ConditionFailed:
                pass  # referenced meanwhile: cannot happen past the window, and the object is gone anyway
        n += 1
    return n
