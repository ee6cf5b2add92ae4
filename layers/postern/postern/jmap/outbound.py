"""JMAP's way out: EmailSubmission into the incoming queue, as authenticated SMTP submission does.

In:   a :class:`postern.spool.Spooler` (S3 then the inbound SQS queue) and the
      server's host name.
Out:  :func:`submitter` -> the ``submit(user, mail_from, rcpts, raw) -> queue id``
      callable an :class:`~.account.Account` carries. The envelope is the one
      port 587 writes (``auth_user`` set, the login vouching for the sender:
      ``AuthFacts(submitted=True)``), with a Received: trace line naming JMAP,
      so the router relays it, signs it and retries it exactly as SMTP mail;
      one log line per message ("submitted", as the gateway's "accepted").
Fails: StoreUnavailable from the spool (nothing was queued): the method call
      answers ``serverUnavailable`` and the client may try again.
"""

from __future__ import annotations

import logging
import time
from email.utils import format_datetime

from ..spool import Spooler, new_queue_id
from ..verdicts import AuthFacts

log = logging.getLogger("postern.jmap")


def received(hostname: str, queue_id: str, when: float) -> str:
    """The trace line of a message submitted over JMAP (RFC 5321 §4.4; no ``with``: JMAP is no SMTP
    protocol type, and the client's address is not disclosed, as for port 587)."""
    import datetime as dt

    date = format_datetime(dt.datetime.fromtimestamp(when, dt.timezone.utc))
    return f"Received: by {hostname} (Postern JMAP) id {queue_id};\r\n\t{date}\r\n"


def submitter(spooler: Spooler, hostname: str):
    def submit(user: str, mail_from: str, rcpts: list[str], raw: bytes) -> str:
        queue_id = new_queue_id()
        now = time.time()
        env = spooler.spool(raw, queue_id=queue_id, mail_from=mail_from, rcpt_to=list(rcpts), received_at=now,
                            tls=True, auth_user=user, trace_headers=received(hostname, queue_id, now),
                            auth=AuthFacts(submitted=True).to_dict(),
                            smtputf8=not all(a.isascii() for a in [mail_from, *rcpts]),
                            body_8bit=not raw.isascii())
        log.info("submitted queue_id=%s user=%s from=<%s> rcpts=%d size=%d", env.queue_id, user, mail_from,
                 len(rcpts), env.size)
        return env.queue_id

    return submit
