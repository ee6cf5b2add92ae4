"""Deliver logic (Postfix smtp + the deferred queue): one OutboundJob, one attempt.

In:   an SQS record of the outbound queue (Lambda event shape) holding an
      :class:`~postern.envelope.OutboundJob` (one destination domain, all
      its recipients, the attempt number, ``not_before`` and retry
      ``token``). The spool object in S3; the delivery log; DKIM keys.
Out:  the message sent through the configured transport as
      ``DKIM-Signature`` + ``Received`` + the gateway's trace lines + the
      original bytes in canonical form (:mod:`postern.canonical`: CRLF line
      ends; prepended as bytes, never re-serialised); per-recipient states in
      the delivery log; NoticeJobs on the NDR queue; for deferred recipients
      a new body on the outbound queue carrying attempt + 1 and the time it
      is due (:mod:`postern.retry`: hops of at most 900 s DelaySeconds), so
      no message waits in flight and the record is always done.
Fails: 5xx, null MX, NXDOMAIN, ``.invalid`` -> failed at once (a "failed"
      notice unless the sender was ``<>``). 4xx, timeouts, refused
      connections, SERVFAIL -> deferred on the schedule; a "delayed" notice
      once after ``delay_notice_after``; a "failed" notice once the message
      is ``max_queue_age`` old. Recipients already final in the delivery log
      are skipped, so an SQS redelivery never sends anyone a second copy;
      a retry body whose token the log no longer holds is dropped.
      Backend faults (S3, DynamoDB, SQS, key store) raise StoreUnavailable:
      the record is retried after the queue's visibility timeout, and only
      such crashes count towards the queue's maxReceiveCount (DLQ).

Cost per attempt: Query (delivery log), GetObject, the transport (SES:
SendEmail), BatchWriteItem; +SendMessage per notice; when deferred,
+SendMessage for the next body and one GetItem + SendMessage per 900 s hop
while it waits; +GetSecretValue per domain per 5 minutes (DKIM key cache).
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import time
from dataclasses import dataclass, field

from botocore.exceptions import BotoCoreError, ClientError

from .. import clock, forwarding, retry
from ..canonical import canonical
from ..dsn import formatdate
from ..dkim import KeyStore, header_from_domain, sign
from ..deliverylog import DeliveryLog
from ..dns import is_invalid_name
from ..envelope import NoticeJob, OutboundJob, RecipientFailure
from ..errors import StoreUnavailable
from ..srs import optional as srs_optional
from ..transports import make_transport
from ..transports.base import RecipientResult, SendRequest, permanent_all
from ..transports.ses import ses_message_id
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
    next_job: OutboundJob | None = None  # the body sent to carry the next attempt
    hop: int | None = None  # not due yet: sent on with this DelaySeconds, nothing attempted
    stale: bool = False  # a body of a generation the delivery log no longer holds: dropped

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

    def __init__(self, settings, clients, transport=None, log_=None, keystore=None, resolver=None, mtasts=None,
                 directory=None):
        self.settings = settings
        self.clients = clients
        self.transport = transport or make_transport(settings, clients, resolver=resolver, mtasts=mtasts)
        self.log = log_ or DeliveryLog(settings, clients)
        self.keys = keystore or KeyStore(settings, clients)
        self._directory = directory
        self._local: dict[str, tuple[bool, float]] = {}  # domain -> (ours?, until): forwarding decisions

    def is_local(self, domain: str) -> bool:
        """Is ``domain`` one of ours (cached 5 minutes; a forward asks about two or three domains)."""
        d = domain.lower()
        hit = self._local.get(d)
        if hit is not None and hit[1] > time.monotonic():
            return hit[0]
        if self._directory is None:
            from ..directory import dynamo_directory

            self._directory = dynamo_directory(self.settings, self.clients)
        ours = bool(d) and self._directory.is_local_domain(d)
        self._local[d] = (ours, time.monotonic() + 300)
        return ours

    # --- building the bytes ---------------------------------------------------
    def read_spool(self, key: str) -> bytes:
        try:
            return self.clients.s3.get_object(Bucket=self.settings.bucket, Key=key)["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailable(f"spool read failed: {exc.__class__.__name__}") from exc

    def prepare(self, job: OutboundJob, raw: bytes, now: float) -> bytes:
        """The bytes that go out for ``job`` (see :meth:`build`)."""
        return self.build(job, raw, now)[0]

    def build(self, job: OutboundJob, raw: bytes, now: float) -> tuple[bytes, str]:
        """(bytes to send, envelope sender). The original in canonical form; for a forward
        (:mod:`postern.forwarding`) the SRS sender and, where SES demands it, the From: rewrite;
        then our trace lines; DKIM-Signature by the From: domain's key (for a forward whose
        author domain has none, the forwarding domain's); for a forward, the ARC set on top."""
        th = job.trace_headers
        if th and not th.endswith("\r\n"):
            th += "\r\n"
        raw = canonical(raw)  # what is signed is what goes out (postern.canonical)
        fwd = forwarding.plan(job, raw, self.transport.name, self.is_local,
                              lambda: srs_optional(self.settings, self.clients)) if any(job.original_recipients) else None
        if fwd is not None and fwd.rewrite_from:
            raw = forwarding.rewrite_originator(raw, fwd.address, fwd.domain)  # the one permitted edit
        ours = received_header(self.settings.hostname, job.queue_id, now) + th.encode("utf-8")
        body = ours + raw
        domain = header_from_domain(raw) or (job.mail_from.rsplit("@", 1)[1].lower() if "@" in job.mail_from else None)
        keys = self.keys.get(domain) if domain else []
        if not keys and fwd is not None:
            domain, keys = fwd.domain, self.keys.get(fwd.domain)
        if keys:
            signature = sign(body, domain, keys)
            body, ours = signature + body, signature + ours
        if fwd is not None:
            body = forwarding.arc_seal(body, fwd.domain, self.keys.get(fwd.domain), self.settings.hostname,
                                       now, trusted_end=len(ours)) + body
        return body, (fwd.envelope_from if fwd is not None else job.mail_from)

    # --- one attempt ----------------------------------------------------------
    def attempt(self, job: OutboundJob, attempt: int | None = None, first_seen: float | None = None) -> Outcome:
        """Attempt ``job`` now (attempt number: the job's own unless given). ``first_seen``:
        when the queue first had the job (SQS SentTimestamp), the age to go by if the job
        carries no ``received_at``. Deferred recipients leave with the next body sent."""
        now = clock.now()
        attempt = attempt or job.attempt or 1
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
            data, sender = self.build(job, raw, now)
            smtputf8 = any(ord(c) > 127 for c in sender + "".join(todo))
            results = self.transport.send(SendRequest(sender, tuple(todo), data, job.domain, job.queue_id, smtputf8))
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
        notice_sent = job.delayed_notice_sent
        if deferred:
            out.retry_delay = plan.delay
            if plan.delay_notice_due and not job.delayed_notice_sent and job.mail_from:
                if self.log.mark_notice(job.queue_id, "delayed", job.domain, now, job.received_at):
                    out.notices += self._notice(job, "delayed", deferred, now)
                notice_sent = True  # sent now, or by an earlier run of this attempt
            out.next_job = self._next_job(job, out.deferred, attempt + 1, now + plan.delay, notice_sent)
        # Notices first, then the log, then the next body: a fault at any step retries the
        # whole record (SQS), which rebuilds the notices with the same report ids (the NDR
        # dedups them) and writes a new token, so a body sent before the fault is stale.
        if out.notices:
            send_bodies(self.clients.sqs, self.settings.ndr_queue_url, [n.to_json() for n in out.notices])
        self.log.record(job, attempt, results, final, prior, now, out.next_job, self.transport.name,
                        ses_ids=_ses_ids(results))
        if out.next_job is not None:
            self.send_on(out.next_job, now)
        return out

    @staticmethod
    def _next_job(job: OutboundJob, deferred: list[str], attempt: int, not_before: float,
                  notice_sent: bool) -> OutboundJob:
        """The body of the next attempt: only the deferred recipients, a fresh token."""
        originals = dict(zip(job.recipients, job.original_recipients or ()))
        return dataclasses.replace(
            job, recipients=tuple(deferred), attempt=attempt, not_before=not_before, token=secrets.token_hex(8),
            original_recipients=tuple(originals.get(r, "") for r in deferred) if job.original_recipients else (),
            delayed_notice_sent=notice_sent)

    def send_on(self, job: OutboundJob, now: float) -> int:
        """Send ``job`` to the outbound queue as a new message, delayed by at most one hop."""
        delay = retry.hop_delay(job.not_before, now, self.settings.retry_hop)
        try:
            self.clients.sqs.send_message(QueueUrl=self.settings.outbound_queue_url, MessageBody=job.to_json(),
                                          DelaySeconds=delay)
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailable(f"outbound re-enqueue failed: {exc.__class__.__name__}") from exc
        return delay

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


def _ses_ids(results: list[RecipientResult]) -> dict[str, list[str]]:
    """SES message id -> the recipients it went to (empty for the SMTP transports)."""
    out: dict[str, list[str]] = {}
    for r in results:
        mid = ses_message_id(r)
        if mid:
            out.setdefault(mid, []).append(r.recipient)
    return out


def receive_count(record: dict) -> int:
    """SQS's receive count: above 1 means an earlier run of this same attempt crashed."""
    try:
        return max(1, int(record.get("attributes", {}).get("ApproximateReceiveCount", "1")))
    except (TypeError, ValueError):
        return 1


def handle_record(record: dict, deliverer: Deliverer) -> Outcome:
    """One SQS record (Lambda event shape). A body that is not due yet is sent on (a hop);
    a body of a retry generation the log no longer holds (the job was dropped, finished or
    retried by hand) is dropped; otherwise one attempt, after which deferred recipients
    leave as a new body (:meth:`Deliverer.attempt`). The record itself is always done."""
    job = OutboundJob.from_json(record["body"])
    now = clock.now()
    if job.token:
        live = deliverer.log.current_token(job.queue_id, job.domain)
        if live != job.token:
            log.info("outbound %s/%s attempt %d: stale retry body (%s), dropped", job.queue_id, job.domain,
                     job.attempt, "nothing pending" if live is None else "superseded")
            return Outcome(job, job.attempt, stale=True)
    if job.not_before > now:
        out = Outcome(job, job.attempt)
        out.hop = deliverer.send_on(job, now)
        return out
    try:
        sent = float(record.get("attributes", {}).get("SentTimestamp", 0)) / 1000.0 or None
    except (TypeError, ValueError):
        sent = None
    if receive_count(record) > 1:
        log.warning("outbound %s/%s attempt %d: received %d times (an earlier run failed)", job.queue_id,
                    job.domain, job.attempt, receive_count(record))
    return deliverer.attempt(job, first_seen=sent)
