"""NDR logic (Postfix bounce/defer): one NoticeJob -> one RFC 3464 report to the sender.

In:   a :class:`~postern.envelope.NoticeJob` (kind ``failed`` | ``delayed``)
      from the deliver function (remote failures), the router (no such user,
      alias pointing nowhere) or the store (over quota); the original's
      header block from the spool object (one ranged GetObject: the body is
      never read); the directory (is the sender local?).
Out:  the report (:mod:`postern.dsn`) from ``MAILER-DAEMON@<domain>`` with
      the null reverse-path: straight into a local sender's INBOX through
      the one ingest path ``MailStore.append`` (dedup key
      ``<report id>#<user>#INBOX``, so a retried notice never gives a second
      copy), or for a remote sender stored in S3 as a spool object
      ``<spool prefix><report id>`` and queued as an ``OutboundJob`` with
      ``mail_from=""``. An ``ndr#...`` event in the delivery log (for
      ``postern trace``).
Fails: a notice about a message whose sender was ``<>`` is logged and
      dropped (no report about a report: no loops, no bounce storms); a
      sender that resolves nowhere, or a local sender over quota, is logged
      and dropped (a report is never itself reported). Backend faults raise
      StoreUnavailable: SQS retries the notice and the deterministic report
      id keeps the retry idempotent.

The report id is ``<queue id>-<f|d><digest of the recipients>``: the same
notice always yields the same id, Message-ID and dedup key.

SES events (:meth:`Reporter.handle_ses`, the SES events queue): what SES
learns after it accepted a message (a remote 5xx, a delay, a complaint)
becomes the same kind of notice, built by :mod:`.sesevents` from the event
and the delivery log's record of the send.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field

from botocore.exceptions import BotoCoreError, ClientError

from .. import clock, dsn, mailboxes
from ..address import parse_address
from ..deliverylog import DeliveryLog
from ..envelope import NoticeJob, OutboundJob
from ..errors import InvalidAddress, QuotaExceeded, StoreUnavailable
from ..routing import route
from . import sesevents
from .queues import send_bodies

log = logging.getLogger(__name__)

HEADER_READ = 64 * 1024
HEADER_MAX = 1024 * 1024


def report_id(queue_id: str, kind: str, recipients) -> str:
    """Deterministic id of the report about ``recipients`` (retries build the same one)."""
    digest = hashlib.sha256("\n".join(sorted(r.lower() for r in recipients)).encode()).hexdigest()[:10]
    return f"{queue_id}-{kind[0]}{digest}"


def host_domain(hostname: str) -> str:
    """``mail.example.test`` -> ``example.test`` (a bare two-label name stays)."""
    labels = hostname.lower().rstrip(".").split(".")
    return ".".join(labels[1:]) if len(labels) > 2 else ".".join(labels)


@dataclass
class NdrOutcome:
    job: NoticeJob
    report_id: str = ""
    dropped: str = ""  # why nothing was sent
    local: list[str] = field(default_factory=list)  # mailboxes the report went into
    remote: list[str] = field(default_factory=list)  # addresses it was queued for
    raw: bytes = b""


class Reporter:
    def __init__(self, settings, clients, directory=None, store=None, log_=None):
        self.settings = settings
        self.clients = clients
        if directory is None:
            from ..directory import dynamo_directory

            directory = dynamo_directory(settings, clients)
        if store is None:
            from ..store.dynamo import DynamoMailStore

            store = DynamoMailStore(settings=settings, clients=clients)
        self.directory = directory
        self.store = store
        self.log = log_ or DeliveryLog(settings, clients)

    def original_headers(self, key: str) -> bytes | None:
        """The original's header block by ranged reads; None if the spool object is gone."""
        s3 = self.clients.s3
        got = b""
        try:
            while len(got) < HEADER_MAX:
                r = s3.get_object(Bucket=self.settings.bucket, Key=key,
                                  Range=f"bytes={len(got)}-{len(got) + HEADER_READ - 1}")
                chunk = r["Body"].read()
                got += chunk
                block = dsn.header_block(got)
                if block is not None:
                    return block
                total = int(r.get("ContentRange", "/0").rsplit("/", 1)[-1] or 0)
                if not chunk or len(got) >= total:
                    return got  # headers only, no body
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "InvalidRange"):
                return None if code != "InvalidRange" else got
            raise StoreUnavailable(f"spool read failed: {code}") from exc
        except BotoCoreError as exc:
            raise StoreUnavailable("spool read failed") from exc
        return dsn.header_block(got) or got[:HEADER_MAX]

    def handle_ses(self, body: str) -> NdrOutcome:
        """One SES event (a body of the SES events queue) -> its notice, handled as any other."""
        ev = sesevents.parse(body)
        empty = NoticeJob(queue_id=ev.queue_id, s3_key="", mail_from="", received_at=0.0, kind="failed")
        sent = self.log.ses_send(ev.queue_id, ev.message_id) if ev.queue_id else None
        if sent is None:
            log.warning("SES %s event for message %s (queue id %r): no record of this send; dropped",
                        ev.event_type, ev.message_id, ev.queue_id)
            return NdrOutcome(empty, dropped="unknown SES message")
        now = clock.now()
        domain = sent.get("domain", "")
        notice = sesevents.notice_for(ev, sent, now)
        state = "failed" if ev.event_type == "Bounce" else "delivered"
        self.log.ses_outcome(ev.queue_id, [(r.address, state, sesevents.diagnostic(r, ev)) for r in ev.recipients],
                             now, domain, f"{ev.event_type} {ev.detail}".strip(), int(sent.get("expires", 0) or 0)
                             or int(now + 35 * 86400), set_state=ev.event_type == "Bounce")
        if notice is None:
            log.info("SES %s for %s (%s): recorded, no notice", ev.event_type, ev.queue_id, ev.detail)
            return NdrOutcome(empty, dropped=f"SES {ev.event_type.lower()}: no notice")
        if notice.kind == "delayed" and not self.log.mark_notice(ev.queue_id, "delayed", domain, now,
                                                                  notice.received_at):
            return NdrOutcome(notice, dropped="delay notice already sent")
        return self.handle(notice)

    def handle(self, job: NoticeJob) -> NdrOutcome:
        out = NdrOutcome(job)
        if not job.mail_from:
            out.dropped = "null sender"  # RFC 3464 §2; RFC 5321 §6.1
            log.info("dropping %s notice for %s: original sender was <>", job.kind, job.queue_id)
            return out
        failures = job.failures()
        if not failures:
            out.dropped = "no recipients"
            return out
        if job.kind not in ("failed", "delayed"):
            out.dropped = f"unknown kind {job.kind!r}"
            log.warning("dropping notice for %s: %s", job.queue_id, out.dropped)
            return out
        try:
            sender = parse_address(job.mail_from)
        except InvalidAddress:
            out.dropped = "sender address invalid"
            log.warning("dropping notice for %s: bad sender %r", job.queue_id, job.mail_from)
            return out
        now = clock.now()
        rid = report_id(job.queue_id, job.kind, [f.recipient for f in failures])
        out.report_id = rid
        local_sender = self.directory.is_local_domain(sender.domain)
        from_domain = sender.domain if local_sender else host_domain(self.settings.hostname)
        report = dsn.Report(
            kind=job.kind, reporting_mta=self.settings.hostname, from_addr=f"MAILER-DAEMON@{from_domain}",
            to_addr=job.mail_from, message_id=f"{rid}@{self.settings.hostname}", date=now,
            arrival_date=job.received_at or now, failures=tuple(failures),
            original_headers=self.original_headers(job.s3_key), original_queue_id=job.queue_id,
            will_retry_until=(job.received_at or now) + self.settings.max_queue_age)
        raw = dsn.build(report)
        out.raw = raw
        decision = route([job.mail_from], self.directory, allow_remote=True)
        for ld in decision.local:
            prefix = f"Return-Path: <>\r\nDelivered-To: {ld.user}\r\n".encode("utf-8")
            try:
                mailboxes.append(self.store, ld.user, ld.mailbox, raw, prefix=prefix, internaldate=now,
                                  dedup=f"{rid}#{ld.user}#{ld.mailbox}", quota=ld.quota or self.settings.default_quota)
                out.local.append(ld.user)
            except QuotaExceeded:
                log.warning("report %s for %s dropped: mailbox over quota", rid, ld.user)
        for failure in decision.failed:
            log.warning("report %s dropped for %s: %s", rid, failure.recipient, failure.reason)
        if decision.remote:
            key = f"{self.settings.spool_prefix}{rid}"
            try:
                summary = json.dumps({"queue_id": rid, "mail_from": "", "received_at": now, "size": len(raw),
                                      "rcpt_to": [r.recipient for rs in decision.remote.values() for r in rs][:20],
                                      "report_about": job.queue_id, "kind": job.kind})
                # the same envelope summary the gateway's spool writes, so `postern trace <report id>` reads it
                self.clients.s3.put_object(Bucket=self.settings.bucket, Key=key, Body=raw,
                                           Metadata={"postern-envelope": summary})
            except (ClientError, BotoCoreError) as exc:
                raise StoreUnavailable(f"report spool write failed: {exc.__class__.__name__}") from exc
            bodies, domains = [], []
            for domain, rcpts in decision.remote.items():
                out.remote += [r.recipient for r in rcpts]
                if self.log.notice_marked(rid, "queued", domain):  # a retried notice: queued already
                    continue
                domains.append(domain)
                bodies.append(OutboundJob(
                    queue_id=rid, s3_key=key, mail_from="", domain=domain,
                    recipients=tuple(r.recipient for r in rcpts),
                    original_recipients=tuple(r.original_recipient if r.original_recipient != r.recipient else ""
                                              for r in rcpts),
                    received_at=now, size=len(raw)).to_json())
            send_bodies(self.clients.sqs, self.settings.outbound_queue_url, bodies)
            for domain in domains:  # after the send: a failure before it retries the whole notice
                self.log.mark_notice(rid, "queued", domain, now)
        if not out.local and not out.remote:
            out.dropped = "sender unreachable"
        self.log.event(job.queue_id, "ndr", now, kind=job.kind, report_id=rid, to=job.mail_from,
                       local=out.local, remote=out.remote, dropped=out.dropped,
                       recipients=[{"recipient": f.recipient, "status": f.status, "diagnostic": f.diagnostic}
                                   for f in failures])
        return out
