"""A user moving mail into or out of Junk, written once for IMAP and JMAP: the keywords and the lesson.

In:   the source and destination mailboxes of a user's copy: IMAP COPY/MOVE (RFC 6851: a MOVE is
      a copy then an expunge; the copy is what counts, as in Dovecot's IMAPSieve + rspamd set-ups)
      and a JMAP Email/set that adds a mailbox to ``mailboxIds`` (the webmail's Spam / Not spam).
      Both reach the store's ``copy(..., by_user=True)``, which calls :func:`lesson` and
      :func:`retag` on every copy it writes, in the same change; delivery (Sieve's ``fileinto``,
      the managed Junk rule: the filter's own verdict) appends and never copies, so it teaches
      nothing and keeps the ``$Junk`` delivery set.
Out:  :func:`lesson` - True (into Junk: spam), False (out of Junk, except into Trash: ham), None
      (nothing to learn); :func:`retag` - the copy's flags with ``$Junk`` set and ``$NotJunk``
      cleared (spam) or the reverse (ham); :class:`Lesson` and its queue form (:func:`encode`,
      :func:`decode`: user, mailbox id, UIDs, spam: never the message) for the learn queue
      (template ``LearnQueue``, ``POSTERN_LEARN_QUEUE_URL``), read by a gateway task that has
      rspamd (``postern_gateway/spam/relay.py``); :class:`LessonQueue`, the sender the JMAP
      function uses.
Fails: :meth:`LessonQueue.send` never raises: a lesson is advice (the move itself is done and
      answered), a failed send is logged and lost.

Keywords (IANA IMAP keywords registry; RFC 9051 §2.3.2, RFC 8621 §4.1.1): IMAP spells them
``$Junk`` and ``$NotJunk`` (as Thunderbird does, and as delivery sets ``$Junk``), JMAP shows them in
lower case (``$junk``/``$notjunk``); a keyword compares without case, so any spelling already on the
message is replaced by the canonical one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from .mailboxes import JUNK, TRASH, has_role
from .verdicts import JUNK_KEYWORD

log = logging.getLogger("postern.spam")

NOT_JUNK_KEYWORD = "$NotJunk"  # IANA IMAP keywords registry: the user said this is not spam (JMAP: $notjunk)
_BOTH = {JUNK_KEYWORD.lower(), NOT_JUNK_KEYWORD.lower()}
MAX_UIDS = 1000  # per queue message: a body stays far under SQS's 256 KiB (a larger move sends several)


def lesson(source, dest) -> bool | None:
    """True: learn spam (into Junk); False: learn ham (out of Junk, not into Trash); None: nothing."""
    src_junk, dst_junk = has_role(source, JUNK), has_role(dest, JUNK)  # the roles: postern.mailboxes
    if dst_junk and not src_junk:
        return True
    if src_junk and not dst_junk and not has_role(dest, TRASH):
        return False
    return None


def retag(flags: Iterable[str], spam: bool) -> list[str]:
    """``flags`` of a copy the user moved into Junk (``spam``) or out of it: $Junk xor $NotJunk."""
    kept = [f for f in flags if f.lower() not in _BOTH]
    return sorted([*kept, JUNK_KEYWORD if spam else NOT_JUNK_KEYWORD])


@dataclass(frozen=True)
class Lesson:
    """Teach the filter ``spam`` (or ham) from these copies in the user's mailbox ``mailbox_id``."""

    user: str
    mailbox_id: str
    uids: tuple[int, ...]
    spam: bool


def encode(les: Lesson) -> list[str]:
    """The queue bodies of one lesson (one per :data:`MAX_UIDS` copies)."""
    u = list(les.uids)
    return [json.dumps({"u": les.user, "m": les.mailbox_id, "uids": u[i:i + MAX_UIDS], "spam": les.spam},
                       separators=(",", ":")) for i in range(0, len(u), MAX_UIDS)]


def decode(body: str) -> Lesson | None:
    """The lesson a queue body carries, or None for a body that is not one."""
    try:
        d = json.loads(body)
        uids = tuple(int(u) for u in d["uids"])
        if not isinstance(d["u"], str) or not isinstance(d["m"], str) or not isinstance(d["spam"], bool):
            return None
        return Lesson(d["u"], d["m"], uids, d["spam"])
    except (ValueError, KeyError, TypeError):
        return None


def collect(lessons: Iterable[Lesson]) -> list[Lesson]:
    """Lessons of one request merged per (user, mailbox, spam): a move of 50 messages is one send."""
    merged: dict[tuple[str, str, bool], list[int]] = {}
    for x in lessons:
        merged.setdefault((x.user, x.mailbox_id, x.spam), []).extend(x.uids)
    return [Lesson(u, m, tuple(uids), s) for (u, m, s), uids in merged.items()]


class LessonQueue:
    """Lessons onto the learn queue (``POSTERN_LEARN_QUEUE_URL``): the JMAP function's way to rspamd."""

    def __init__(self, sqs, queue_url: str):
        self.sqs = sqs
        self.queue_url = queue_url

    def send(self, lessons: Iterable[Lesson]) -> int:
        """Send every lesson; returns the copies sent (a failure is logged: the move stands)."""
        sent = 0
        for les in collect(lessons):
            try:
                for body in encode(les):
                    self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=body)
            except Exception as exc:  # noqa: BLE001 - a lost lesson, never a failed move
                log.warning("learn queue: send failed user=%s: %r", les.user, exc)
                continue
            sent += len(les.uids)
        return sent
