"""Store logic (Postfix virtual): one StoreJob -> one message in one mailbox.

In:   a :class:`~postern.envelope.StoreJob` from the store queue; the spool
      object in S3; the mail store (DynamoDB + S3).
Out:  one message appended through the one ingest path
      (:func:`postern.mailboxes.append`: the store's append, creating the default
      mailboxes on first delivery), with the per-recipient trace prefix
      (``Return-Path``, ``Delivered-To``, then the gateway's trace lines) and the
      MX's spam verdict in its store entry (``$Junk`` when marked spam). The
      spool object is the recipient's immutable mailbox blob, referenced in place
      (a ``B#`` reference, no copy: one S3 write per message, whatever the
      recipients); the raw S3 bytes never change. With Sieve
      (:mod:`postern.sieve.delivery`) the mailboxes and flags are the scripts'
      decision (none when discarded, one entry per mailbox), followed by the
      redirects, vacation reply and reject notice they asked for.
Fails: bounce when the mailbox is over quota (a ``NoticeJob`` with status
      5.2.2; the record counts as done: no retry changes it); defer on any
      backend fault (StoreUnavailable: SQS redelivers); a body that is not a
      StoreJob is poison (EnvelopeError: redelivered until the DLQ). A retried
      job never creates a second copy: the dedup key is
      ``queue_id#user#mailbox``.

Cost per delivery: the store's append (see ``postern.store.engine``: no
transaction; the dedup key is checked against the account's change log), plus a
GetObject only when the gateway could not send the header section inline (over
16 KiB). A bounced recipient leaves nothing behind: the blob is referenced only
by a committed change, and an unreferenced spool object is swept after the
spool window (``postern.store.spoolsweep``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .. import mailboxes
from ..envelope import NoticeJob, RecipientFailure, StoreJob
from ..errors import QuotaExceeded
from ..mail.header import header_length
from ..store.base import AppendResult, MailStore
from ..store.summary import decode_inline_header
from ..verdicts import SpamVerdict


@dataclass
class Outcome:
    job: StoreJob
    result: AppendResult | None = None  # the first stored copy
    notice: NoticeJob | None = None  # set when the recipient bounced
    filed: object = None  # postern.sieve.delivery.Filed when Sieve ran (where it went, why)


def trace_prefix(job: StoreJob) -> bytes:
    """``Return-Path``, ``Delivered-To`` (RFC 5321 §4.4, RFC 9228), then the gateway's lines, CRLF-terminated."""
    lines = f"Return-Path: <{job.mail_from}>\r\nDelivered-To: {job.user}\r\n"
    th = job.trace_headers
    if th and not th.endswith("\r\n"):
        th += "\r\n"
    return (lines + th).encode("utf-8")


def dedup_key(job: StoreJob, mailbox: str | None = None) -> str:
    return f"{job.queue_id}#{job.user}#{mailbox or job.mailbox}"


def deliver(job: StoreJob, store: MailStore, default_quota: int, sieve=None) -> Outcome:
    """``sieve``: a :class:`postern.sieve.delivery.SieveDelivery` deciding the mailboxes (None: the router's)."""
    header = decode_inline_header(job.header) if job.size else None
    # With the header section inline (the usual case) the store reads nothing from S3.
    raw = None if header is not None else store.read_spool(job.s3_key)
    prefix = trace_prefix(job)
    verdict = SpamVerdict.from_dict(job.spam)

    def append(mailbox: str, flags=()) -> AppendResult:
        return mailboxes.append(
            store,
            job.user,
            mailbox,
            raw,
            header=header,
            raw_size=job.size if header is not None else None,
            spool_key=job.s3_key,
            prefix=prefix,
            flags=(*flags, *verdict.keywords()),
            spam=verdict,
            internaldate=job.received_at or None,
            dedup=dedup_key(job, mailbox),
            quota=job.quota or default_quota,
        )

    try:
        if sieve is None:
            return Outcome(job, result=append(job.mailbox))
        filed = sieve.deliver(job, header if header is not None else raw[: header_length(raw)], raw, prefix, store,
                              append)
        return Outcome(job, result=filed.results[0] if filed.results else None, filed=filed)
    except QuotaExceeded as exc:
        if job.mail_from == "":  # never bounce the null sender
            return Outcome(job)
        failure = RecipientFailure(
            recipient=job.user,
            status="5.2.2",
            diagnostic=f"smtp; 552 5.2.2 {exc.text}",
            original_recipient=job.original_recipient,
        )
        notice = NoticeJob(
            queue_id=job.queue_id,
            s3_key=job.s3_key,
            mail_from=job.mail_from,
            received_at=job.received_at,
            kind="failed",
            recipients=(dataclasses.asdict(failure),),
        )
        return Outcome(job, notice=notice)
