"""Learning from the user: mail moved into Junk over IMAP teaches rspamd spam, mail moved out of it ham.

In:   IMAP COPY and MOVE (RFC 6851: MOVE is a copy then an expunge; the copy is what counts, as in
      Dovecot's IMAPSieve + rspamd set-ups): the source mailbox, the destination and the
      (source uid, destination uid) pairs the store copied; the mail store (each copy read as the
      user sees it: our prefix, X-Spam block included, then the received bytes); rspamd's
      controller (``POSTERN_RSPAMD_CONTROLLER_URL``; deployed, the task's sidecar, whose Bayes
      state lives in the shared Redis/Valkey, so any task's rspamd learns for all).
Out:  the lesson (:func:`postern.junk.lesson`: True into Junk, spam; False out of Junk, except into
      Trash, ham; None nothing) taught: :meth:`Learner.after_copy` schedules the lesson in a task of its own and
      returns at once: the MOVE's reply never waits for rspamd or S3. At most
      :data:`CONCURRENCY` messages are read and posted at a time, at most :data:`PENDING` wait;
      ``counts`` (learned / failed / dropped / too large) for logs and tests.
Fails: never into the IMAP session: rspamd down, a message gone, a store fault -> logged,
      counted, the lesson lost (learning is advice; the mail itself is untouched). Past
      :data:`PENDING` waiting lessons new ones are dropped (a user moving 10,000 messages does
      not queue 10,000 S3 reads in memory).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

from postern.junk import lesson  # the one rule, the store's too (it sets $Junk / $NotJunk)

from .rspamd import FilterUnavailable, Rspamd

log = logging.getLogger("postern.spam")

CONCURRENCY = 2  # messages read and posted at once, per gateway process
PENDING = 500  # lessons waiting at most, per gateway process
MAX_LEARN_BYTES = 10 * 1024 * 1024  # larger messages teach Bayes nothing useful (rspamd's own cap: 50 MiB)


class Learner:
    """One per gateway process (``backend.learner``), when rspamd's controller is configured."""

    def __init__(self, backend, client: Rspamd):
        self.backend = backend
        self.client = client
        self.counts: Counter = Counter()
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self._tasks: set[asyncio.Task] = set()

    def after_copy(self, source, dest, mapping: list[tuple[int, int]]) -> None:
        """Called by COPY/MOVE once the store copied (synchronous: schedules and returns)."""
        spam = lesson(source, dest)
        if spam is None or not mapping:
            return
        room = PENDING - len(self._tasks)
        uids = [d for _, d in mapping]
        if room <= 0:
            self.counts["dropped"] += len(uids)
            log.warning("learn queue full: %d lessons dropped user=%s", len(uids), dest.user)
            return
        if len(uids) > room:
            self.counts["dropped"] += len(uids) - room
            uids = uids[:room]
        task = asyncio.get_running_loop().create_task(self.teach(spam, dest, uids))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def teach(self, spam: bool, dest, uids: list[int]) -> None:
        """Read these copies in ``dest`` and teach rspamd (also the relay's entry: spam/relay.py)."""
        try:
            metas = await self.backend.mail.get_messages(dest, uids)
        except Exception as exc:  # noqa: BLE001 - a lost lesson, never a failed MOVE
            self.counts["failed"] += len(uids)
            log.warning("learn: copies unreadable user=%s: %s", dest.user, exc)
            return
        await asyncio.gather(*(self._learn(spam, dest, m) for m in metas))

    async def _learn(self, spam: bool, dest, meta) -> None:
        if meta.size > MAX_LEARN_BYTES:
            self.counts["too large"] += 1
            return
        async with self._slots:
            try:
                raw = await self.backend.mail.read(meta)
                outcome = await self.client.learn(spam, raw)
            except FilterUnavailable as exc:
                self.counts["failed"] += 1
                log.warning("learn %s failed user=%s uid=%d: %s", "spam" if spam else "ham", dest.user, meta.uid, exc)
                return
            except Exception as exc:  # noqa: BLE001 - store faults: the lesson is lost, the mail is not
                self.counts["failed"] += 1
                log.warning("learn %s failed user=%s uid=%d: %r", "spam" if spam else "ham", dest.user, meta.uid, exc)
                return
        self.counts["learned"] += 1
        log.info("learn %s user=%s uid=%d: %s", "spam" if spam else "ham", dest.user, meta.uid, outcome)

    async def idle(self) -> None:
        """Wait until no lesson is in flight (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def learner_for(backend) -> Learner | None:
    """A Learner when the backend's rspamd client has a controller, else None (no learning)."""
    client = backend.spam
    if client is None or client.controller is None:
        return None
    return Learner(backend, client)
