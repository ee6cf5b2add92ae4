"""SES events (bounce, complaint, delivery delay) -> the sender's RFC 3464 notice.

In:   one SQS body from the SES events queue: the SES event JSON that the
      configuration set's SNS destination published (raw message delivery),
      or the same wrapped in an SNS notification envelope. The message tag
      ``postern-queue-id`` (set by the ses transport) and SES's message id
      find the send in the delivery log (``DeliveryLog.ses_send``: sender,
      spool key, arrival time, recipients and their original recipients).
Out:  :class:`SesEvent` (pure parse, :func:`parse`) and :func:`notice_for`
      -> the :class:`~postern.envelope.NoticeJob` the NDR writes the report
      from: ``failed`` for a Bounce (permanent, or transient after SES gave
      up retrying), ``delayed`` for a DeliveryDelay (once per message and
      domain, shared with the deliver function's own delay notice), none for
      a Complaint (the recipient's feedback is not the sender's business;
      it is logged and counted). The recipients' states in the delivery log
      become ``failed`` on a bounce, so ``postern trace`` shows it.
Fails: a body that is not JSON or not an SES event raises
      :class:`~postern.envelope.EnvelopeError` (poison: DLQ). An event for a
      message Postern has no record of (no tag, not ours, or expired) is
      logged and dropped. Backend faults raise StoreUnavailable (SQS retries;
      the report id is deterministic, so a retried event gives one report).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime

from ..envelope import EnvelopeError, NoticeJob, RecipientFailure
from ..transports.ses import QUEUE_ID_TAG

log = logging.getLogger(__name__)

KINDS = {"Bounce": "failed", "DeliveryDelay": "delayed", "Complaint": ""}


@dataclass(frozen=True)
class EventRecipient:
    address: str
    status: str = ""  # RFC 3463, as SES reports it
    diagnostic: str = ""  # e.g. "smtp; 550 5.1.1 user unknown"


@dataclass(frozen=True)
class SesEvent:
    event_type: str  # Bounce | DeliveryDelay | Complaint (others are not subscribed)
    message_id: str  # SES's
    queue_id: str  # the postern-queue-id tag, "" when absent
    recipients: tuple[EventRecipient, ...] = ()
    detail: str = ""  # bounce type/subtype, delay type, complaint feedback type
    reporting_mta: str = ""
    at: float = 0.0
    raw: dict = field(default_factory=dict, compare=False, repr=False)


def _when(text: str) -> float:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except (AttributeError, ValueError):
        return 0.0


def _mta(text: str) -> str:
    """``dsn; a1-2.smtp-out.amazonses.com`` -> the host (RFC 3464 MTA-name-type prefix dropped)."""
    return text.split(";", 1)[-1].strip() if text else ""


def parse(body: str) -> SesEvent:
    """One SQS body of the SES events queue -> :class:`SesEvent`."""
    try:
        d = json.loads(body)
    except (TypeError, ValueError) as exc:
        raise EnvelopeError(f"SES event is not JSON: {exc}") from None
    if isinstance(d, dict) and d.get("Type") == "Notification" and isinstance(d.get("Message"), str):
        return parse(d["Message"])  # SNS envelope (raw message delivery off)
    if not isinstance(d, dict):
        raise EnvelopeError("SES event is not a JSON object")
    kind = d.get("eventType") or d.get("notificationType")  # event publishing | identity notifications
    mail = d.get("mail")
    if kind not in KINDS or not isinstance(mail, dict) or not mail.get("messageId"):
        raise EnvelopeError(f"not an SES bounce/complaint/delay event: {str(kind)[:40]!r}")
    tags = mail.get("tags") or {}
    qid = (tags.get(QUEUE_ID_TAG) or [""])[0]
    if kind == "Bounce":
        b = d.get("bounce") or {}
        rcpts = [EventRecipient(r.get("emailAddress", ""), r.get("status", ""), r.get("diagnosticCode", ""))
                 for r in b.get("bouncedRecipients", [])]
        detail = f"{b.get('bounceType', '')}/{b.get('bounceSubType', '')}"
        mta, at = b.get("reportingMTA", ""), b.get("timestamp", "")
    elif kind == "DeliveryDelay":
        b = d.get("deliveryDelay") or {}
        rcpts = [EventRecipient(r.get("emailAddress", ""), r.get("status", ""), r.get("diagnosticCode", ""))
                 for r in b.get("delayedRecipients", [])]
        detail, mta, at = b.get("delayType", ""), b.get("reportingMTA", ""), b.get("timestamp", "")
    else:
        b = d.get("complaint") or {}
        rcpts = [EventRecipient(r.get("emailAddress", "")) for r in b.get("complainedRecipients", [])]
        detail, mta, at = b.get("complaintFeedbackType", ""), "", b.get("timestamp", "")
    return SesEvent(kind, mail["messageId"], qid, tuple(r for r in rcpts if r.address), detail, _mta(mta),
                    _when(at), d)


def diagnostic(r: EventRecipient, ev: SesEvent) -> str:
    if r.diagnostic:
        return r.diagnostic if ";" in r.diagnostic.split(" ", 1)[0] else f"smtp; {r.diagnostic}"
    return f"x-postern; SES {ev.event_type} {ev.detail}".rstrip()


def notice_for(ev: SesEvent, sent: dict, now: float) -> NoticeJob | None:
    """The notice ``ev`` means for the send ``sent`` (``DeliveryLog.ses_send``); None for a complaint."""
    kind = KINDS[ev.event_type]
    if not kind:
        return None
    ours = {r.lower(): (r, o) for r, o in zip(sent.get("recipients", []), sent.get("original_recipients", []))}
    failures = []
    for r in ev.recipients:
        hit = ours.get(r.address.lower())
        if hit is None:
            continue  # SES named someone this send did not go to: not ours to report
        status = r.status or ("4.0.0" if kind == "delayed" else "5.0.0")
        failures.append(dataclasses.asdict(RecipientFailure(
            recipient=hit[0], status=status, diagnostic=diagnostic(r, ev), original_recipient=hit[1] or "",
            remote_mta=ev.reporting_mta, action=kind, last_attempt=ev.at or now)))
    if not failures:
        return None
    return NoticeJob(queue_id=ev.queue_id, s3_key=sent.get("s3_key", ""), mail_from=sent.get("mail_from", ""),
                     received_at=float(sent.get("received_at", 0) or 0), kind=kind, recipients=tuple(failures))
