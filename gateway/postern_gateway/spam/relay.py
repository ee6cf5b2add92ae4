"""Lessons across tasks: IMAP moves into and out of Junk, made on a task without rspamd, taught by one with it.

In:   ``POSTERN_LEARN_QUEUE_URL`` (template.yaml ``LearnQueue``: GatewayProfile=ha with RspamdImage, where
      rspamd runs in the mail-in tasks only and IMAP sessions land on the mailbox-access tasks). On a
      task without rspamd's controller, :class:`LessonSender` stands where the Learner would:
      ``after_copy`` (the same call, the same rule: :func:`postern.junk.lesson`) puts one
      small message ``{"u": user, "m": mailbox id, "uids": [...], "spam": bool}`` (:func:`postern.junk.encode`,
      the form the JMAP function sends too) on the queue. On a
      task with the controller, :class:`LessonReader` long-polls the queue in a thread of its own and
      hands each lesson to the task's :class:`~postern_gateway.spam.learn.Learner`, which reads the
      copies from the store and teaches its rspamd, whose Bayes state is the shared Valkey/Redis.
Out:  the lesson taught by whichever mail-in task receives it; ``counts`` (sent, taught, dropped,
      failed) for logs and tests.
Fails: never into the IMAP session (advice, as the Learner's lessons are): the send runs in a task of
      its own after the MOVE answered, a failed send is logged and counted, past :data:`PENDING`
      sends waiting new ones are dropped. The reader deletes every message it handled (taught, or
      its mailbox gone); a message it could not hand over comes back after the queue's visibility
      timeout, and the queue keeps nothing longer than a day.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter

from postern.errors import MailboxNotFound
from postern.junk import Lesson, decode, encode, lesson

log = logging.getLogger("postern.spam")

PENDING = 500  # sends waiting at most, per gateway process (as the Learner's lessons)
WAIT = 20  # seconds of one long poll
TEACH_TIMEOUT = 100.0  # seconds a batch of lessons may take; under the queue's visibility timeout (120 s)
BACKOFF = 5.0  # seconds after a failed receive


class LessonSender:
    """``backend.learner`` on a task without rspamd's controller but with the learn queue."""

    def __init__(self, backend, queue_url: str):
        self.backend = backend
        self.queue_url = queue_url
        self.counts: Counter = Counter()
        self._tasks: set[asyncio.Task] = set()

    def after_copy(self, source, dest, mapping: list[tuple[int, int]]) -> None:
        """Called by COPY/MOVE once the store copied (synchronous: schedules the send and returns)."""
        spam = lesson(source, dest)
        if spam is None or not mapping:
            return
        if len(self._tasks) >= PENDING:
            self.counts["dropped"] += len(mapping)
            log.warning("learn relay full: %d lessons dropped user=%s", len(mapping), dest.user)
            return
        uids = [d for _, d in mapping]
        bodies = encode(Lesson(dest.user, dest.mailbox_id, tuple(uids), spam))  # postern.junk: the queue form
        task = asyncio.get_running_loop().create_task(self._send(bodies, len(uids), dest.user))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, bodies: list[str], n: int, user: str) -> None:
        try:
            for body in bodies:
                await self.backend.run(self.backend.clients.sqs.send_message, QueueUrl=self.queue_url, MessageBody=body)
        except Exception as exc:  # noqa: BLE001 - a lost lesson, never a failed MOVE
            self.counts["failed"] += n
            log.warning("learn relay: send failed user=%s: %s", user, exc)
            return
        self.counts["sent"] += n

    async def idle(self) -> None:
        """Wait until no send is in flight (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


class LessonReader:
    """On a task with rspamd: the learn queue's lessons, taught by this task's Learner."""

    def __init__(self, backend, learner, queue_url: str):
        self.backend = backend
        self.learner = learner
        self.queue_url = queue_url
        self.counts: Counter = Counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="learn-relay", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()  # the thread ends after its current long poll (daemon: never holds the exit)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.receive_once(WAIT)
            except Exception:  # noqa: BLE001 - the reader must survive any fault
                if self._stop.is_set():
                    return
                log.warning("learn relay: receive failed", exc_info=True)
                self._stop.wait(BACKOFF)

    def receive_once(self, wait: int = WAIT) -> int:
        """One long poll (in this thread): teach what arrived on the loop, delete what was handled."""
        r = self.backend.clients.sqs_long_poll.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10,
                                                               WaitTimeSeconds=wait)
        messages = r.get("Messages", [])
        if not messages:
            return 0
        lessons = [decode(m.get("Body", "")) for m in messages]
        done = asyncio.run_coroutine_threadsafe(self._teach_all(lessons), self._loop)
        handled = done.result(timeout=TEACH_TIMEOUT)
        entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                   for i, (m, ok) in enumerate(zip(messages, handled)) if ok]
        if entries:
            self.backend.clients.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
        return len(entries)

    async def _teach_all(self, lessons) -> list[bool]:
        return list(await asyncio.gather(*(self._teach(x) for x in lessons)))

    async def _teach(self, item) -> bool:
        """True when the message is done with (taught, or nothing left to teach)."""
        if item is None:
            self.counts["dropped"] += 1
            log.warning("learn relay: a message that is not a lesson, dropped")
            return True
        user, mailbox_id, uids, spam = item.user, item.mailbox_id, list(item.uids), item.spam
        try:
            mb = await self.backend.run(self.backend.store.get_mailbox_by_id, user, mailbox_id)
        except MailboxNotFound:
            self.counts["dropped"] += len(uids)
            return True
        except Exception as exc:  # noqa: BLE001 - back on the queue after its visibility timeout
            self.counts["failed"] += len(uids)
            log.warning("learn relay: mailbox unreadable user=%s: %s", user, exc)
            return False
        await self.learner.teach(spam, mb, uids)
        self.counts["taught"] += len(uids)
        return True


def relay_for(backend, learner):
    """(backend.learner, reader): the local Learner and a reader of the queue when this task has rspamd's
    controller; a LessonSender when it has only the queue; the learner as it was without a queue."""
    url = backend.settings.learn_queue_url
    if not url or backend.clients is None:
        return learner, None
    if learner is not None:
        return learner, LessonReader(backend, learner, url)
    return LessonSender(backend, url), None
