"""Junk expiry: messages in a user's Junk mailbox older than N days are removed.

In:   the mail store, a user, the age in days (``POSTERN_JUNK_EXPIRE_DAYS``,
      30; 0 = never), the clock.
Out:  :func:`expire_junk` -> how many messages went: one Query of the Junk
      mailbox's index entries (the light projection: no header bytes), then
      the store's own EXPUNGE of the old ones (its change log, counters, quota
      and blob release: exactly what an IMAP client's EXPUNGE does, so IMAP
      IDLE sessions and JMAP see them go). Age is the message's INTERNALDATE
      (when it was delivered), not its Date: header (which a sender writes).
Fails: StoreUnavailable on a backend fault (the daily run tries again the
      next day; nothing is half-done: each expunge is one store change).

Why not a DynamoDB TTL on the index entries: TTL deletes items behind the
store's back (no change-log entry, no quota or counter update, no blob
release), which would corrupt the mailbox state IMAP and JMAP read. The
sweep is run daily by JunkExpiryFunction (EventBridge schedule) and on demand
by ``postern junk expire``. Cost per user per day: one BatchGetItem + Query
of the Junk index (about one read unit per 4 KiB of entries; 0.5 RCU for an
empty Junk) plus the expunge writes for what expired, and the Lambda's
seconds: for 1,000 users roughly 30,000 light Queries a month, a few cents.
"""

from __future__ import annotations

import time

from ..errors import MailboxNotFound

JUNK = "Junk"
DAY = 86400


def expire_junk(store, user: str, days: int, now: float | None = None) -> int:
    if days <= 0:
        return 0
    cutoff = (time.time() if now is None else now) - days * DAY
    try:
        mb = store.get_mailbox(user, JUNK)
    except MailboxNotFound:
        return 0
    old = [m for m in store.list_messages(mb, light=True) if m.internaldate and m.internaldate < cutoff]
    if not old:
        return 0
    return len(store.expunge(mb, old))
