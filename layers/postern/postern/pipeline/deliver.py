"""Deliver logic (Postfix smtp + the deferred queue): one OutboundJob, one attempt.

In:   an SQS record of the outbound queue (Lambda event shape) holding an
      :class:`~postern.envelope.OutboundJob` (one destination domain, all
      its recipients); ``attributes.ApproximateReceiveCount`` is the attempt
      number. The spool object in S3; the delivery log; DKIM keys.
Out:  the message sent through the configured transport as
      ``DKIM-Signature`` + ``Received`` + the gateway's trace lines + the
      original bytes (prepended as bytes, never re-serialised); per-recipient
      states in the delivery log; NoticeJobs on the NDR queue; for deferred
      recipients a ChangeMessageVisibility that schedules the next attempt
      (:mod:`postern.retry`) and ``Outcome.retry`` set, so the handler
      reports the record as a batch failure and SQS keeps it.
Fails: 5xx, null MX, NXDOMAIN, ``.invalid`` -> failed at once (a "failed"
      notice unless the sender was ``<>``). 4xx, timeouts, refused
      connections, SERVFAIL -> deferred on the schedule; a "delayed" notice
      once after ``delay_notice_after``; a "failed" notice once the message
      is ``max_queue_age`` old. Recipients already final in the delivery log
      are skipped, so an SQS redelivery never sends anyone a second copy.
      Backend faults (S3, DynamoDB, SQS, key store) raise StoreUnavailable:
      the record is retried after the queue's visibility timeout.

Cost per attempt: Query (delivery log), GetObject, the transport (SES:
SendEmail), BatchWriteItem; +SendMessage per notice, +ChangeMessageVisibility
when deferred, +GetSecretValue per domain per 5 minutes (DKIM key cache).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field

from botocore.exceptions import BotoCoreError, ClientError

from .. import clock, retry
from ..dsn import formatdate
from ..dkim import KeyStore, header_from_domain, sign
from ..deliverylog import DeliveryLog
from ..dns import is_invalid_name
from ..envelope import NoticeJob, OutboundJob, RecipientFailure
from ..errors import StoreUnavailable
from ..transports import make_transport
from ..transports.base import RecipientResult, SendRequest, permanent_all
from .queues import send_bodies

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    job: OutboundJob
    attempt: int
    results: list[RecipientResult] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # final in the delivery log already
    delivered: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)
    notices: list[NoticeJob] = field(default_factory=list)
    retry_delay: int | None = None  # set when deferred recipients remain

    @property
    def retry(self) -> bool:
        return self.retry_delay is not None


def received_header(hostname: str, queue_id: str, now: float) -> bytes:
    """Our trace line (RFC 5321 §4.4), prepended to what the gateway recorded."""
    return f"Received: by {hostname} (Postern) id {queue_id};\r\n\t{formatdate(now)}\r\n".encode("ascii")


def _status_of(res: RecipientResult) -> str:
    return res.status or ("5.0.0" if res.permanent else "4.0.0")


class Deliverer:
    """Everything one attempt needs, built once per Lambda execution environment."""

    def __init__(self, settings, clients, transport=None, log_=None, keystore=None, resolver=None, mtasts=None):
        self.settings = settings
        self.clients = clients
        self.transport = transport or make_transport(settings, clients, resolver=resolver, mtasts=mtasts)
        self.log = log_ or DeliveryLog(settings, clients)
        self.keys = keystore or KeyStore(settings, clients)

    # --- building the bytes ---------------------------------------------------
    def read_spool(self, key: str) -> bytes:
        try:
            return self.clients.s3.get_object(Bucket=self.settings.bucket, Key=key)["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailable(f"spool read failed: {exc.__class__.__name__}") from exc

    def prepare(self, job: OutboundJob, raw: bytes, now: float) -> bytes:
        th = job.trace_headers
        if th and not th.endswith("\r\n"):
            th += "\r\n"
        body = received_header(self.settings.hostname, job.queue_id, now) + th.encode("utf-8") + raw
        domain = header_from_domain(raw) or (job.mail_from.rsplit("@", 1)[1].lower() if "@" in job.mail_from else None)
        if domain:
            keys = self.keys.get(domain)
            if keys:
                return sign(body, domain, keys) + body
        return body

    # --- one attempt ----------------------------------------------------------
    def attempt(self, job: OutboundJob, attempt: int, receipt_handle: str | None = None,
                first_seen: float | None = None) -> Outcome:
        """``first_seen``: when the queue first had the job (SQS SentTimestamp), the age
        to go by if the job carries no ``received_at``."""
        now = clock.now()
        if not job.received_at:
            job = dataclasses.replace(job, received_at=first_seen or now)
        out = Outcome(job, attempt)
        prior = self.log.states(job.queue_id)
        todo = []
        for r in job.recipients:
            st = prior.get(r.lower())
            if st is not None and st.final:
                out.skipped.append(r)
            else:
                todo.append(r)
        if not todo:
            log.info("outbound %s/%s: nothing pending", job.queue_id, job.domain)
            return out
        if is_invalid_name(job.domain):  # RFC 6761 §6.4: never resolves, under any transport
            results = permanent_all(todo, "5.1.2", f"{job.domain}: reserved .invalid domain (RFC 6761)")
        else:
            raw = self.read_spool(job.s3_key)
            data = self.prepare(job, raw, now)
            smtputf8 = any(ord(c) > 127 for c in job.mail_from + "".join(todo))
            results = self.transport.send(SendRequest(job.mail_from, tuple(todo), data, job.domain, job.queue_id, smtputf8))
        out.results = results
        plan = retry.plan(attempt, job.received_at, now, self.settings.max_queue_age,
                          self.settings.delay_notice_after)
        final: dict[str, str] = {}
        expired: list[RecipientResult] = []
        for res in results:
            if res.ok:
                final[res.recipient] = "delivered"
                out.delivered.append(res.recipient)
            elif res.permanent:
                final[res.recipient] = "failed"
                out.failed.append(res.recipient)
            elif not plan.retry:
                final[res.recipient] = "failed"
                out.failed.append(res.recipient)
                expired.append(res)
            else:
                out.deferred.append(res.recipient)
        permanent = [r for r in results if r.permanent]
        if permanent:
            out.notices += self._notice(job, "failed", permanent, now)
        if expired:
            out.notices += self._notice(job, "failed", expired, now, expired=True)
        deferred = [r for r in results if r.transient and r.recipient in out.deferred]
        if deferred:
            out.retry_delay = plan.delay
            if plan.delay_notice_due and not job.delayed_notice_sent and job.mail_from:
                if self.log.mark_notice(job.queue_id, "delayed", job.domain, now, job.received_at):
                    out.notices += self._notice(job, "delayed", deferred, now)
        # Notices first, then the log: if the log write fails the record is retried and
        # the notices are rebuilt with the same report id (the NDR dedups them).
        if out.notices:
            send_bodies(self.clients.sqs, self.settings.ndr_queue_url, [n.to_json() for n in out.notices])
        next_at = now + out.retry_delay if out.retry else None
        self.log.record(job, attempt, results, final, prior, now, next_at, receipt_handle, self.transport.name)
        return out

    def _notice(self, job: OutboundJob, kind: str, results: list[RecipientResult], now: float,
                expired: bool = False) -> list[NoticeJob]:
        if not job.mail_from:  # never report on a report (RFC 3464 §2, RFC 5321 §6.1)
            log.info("not reporting %s on %s: null sender", kind, job.queue_id)
            return []
        originals = dict(zip(job.recipients, job.original_recipients or ()))
        failures = []
        for r in results:
            diagnostic = r.diagnostic
            if expired:
                diagnostic = f"{diagnostic} (gave up after {self.settings.max_queue_age // 3600} hours)"
            failures.append(dataclasses.asdict(RecipientFailure(
                recipient=r.recipient, status=_status_of(r), diagnostic=diagnostic,
                original_recipient=originals.get(r.recipient, "") or "", remote_mta=r.remote_mta,
                action="delayed" if kind == "delayed" else "failed", last_attempt=now)))
        return [NoticeJob(queue_id=job.queue_id, s3_key=job.s3_key, mail_from=job.mail_from,
                          received_at=job.received_at, kind=kind, recipients=tuple(failures))]


def receive_count(record: dict) -> int:
    try:
        return max(1, int(record.get("attributes", {}).get("ApproximateReceiveCount", "1")))
    except (TypeError, ValueError):
        return 1


def handle_record(record: dict, deliverer: Deliverer) -> Outcome:
    """One SQS record (Lambda event shape): attempt delivery; when recipients remain
    deferred, make the message invisible until the next attempt is due."""
    job = OutboundJob.from_json(record["body"])
    try:
        sent = float(record.get("attributes", {}).get("SentTimestamp", 0)) / 1000.0 or None
    except (TypeError, ValueError):
        sent = None
    outcome = deliverer.attempt(job, receive_count(record), record.get("receiptHandle"), first_seen=sent)
    if outcome.retry:
        try:
            deliverer.clients.sqs.change_message_visibility(
                QueueUrl=deliverer.settings.outbound_queue_url, ReceiptHandle=record["receiptHandle"],
                VisibilityTimeout=int(outcome.retry_delay))
        except (ClientError, BotoCoreError, KeyError) as exc:  # the queue's own visibility timeout applies
            log.warning("ChangeMessageVisibility for %s failed: %s", job.queue_id, exc)
    return outcome
