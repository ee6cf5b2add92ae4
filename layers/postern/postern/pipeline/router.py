"""Router logic (Postfix qmgr + trivial-rewrite): one accepted envelope -> queue messages.

In:   an :class:`~postern.envelope.Envelope` from the inbound queue and the
      directory (DynamoDB). Routing uses the envelope recipients only.
Out:  a :class:`Plan` of bodies: one ``StoreJob`` per final local mailbox
      (``mailbox="Junk"`` when the gateway marked the message junk; the spam verdict
      with that recipient's thresholds, :func:`postern.spam.for_recipient`), one
      ``OutboundJob`` per remote destination domain (forwarding aliases always;
      direct remote recipients only for authenticated submission) and at most
      one ``NoticeJob(kind="failed")`` for recipients that resolve nowhere
      (never when the sender is the null reverse-path ``<>``), and one ``ReportJob`` per
      domain whose ``reports@`` is a recipient (the reports function reads the body; the
      router never does).
      :func:`send_plan` writes them: one SendMessage, or SendMessageBatch per
      ten, per destination queue.
Fails: a directory or SQS fault raises StoreUnavailable: the whole envelope is
      retried by SQS. A retry may re-send jobs sent before the fault; store
      jobs are deduplicated by the store (``queue_id#user#mailbox``).

Cost for a single-recipient message: one BatchGetItem (domain, alias, user
and plus-base look-ups together) and one SendMessage; with a warm router's
``cache`` (:class:`postern.directory.ItemCache`) the look-ups are read about
once per TTL per recipient, and a message that would bounce a recipient is
routed again from fresh reads first (a refusal is never made from the cache).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .. import spam as spamfilter
from ..envelope import Envelope, NoticeJob, OutboundJob, RecipientFailure, ReportJob, StoreJob
from ..routing import RouteDecision, route
from .queues import send_bodies

# RFC 3463 status -> the SMTP reply code written into the DSN's Diagnostic-Code.
_REPLY_CODE = {"5.1.1": 550, "5.1.3": 553, "5.4.6": 554, "5.7.1": 550}


@dataclass
class Plan:
    decision: RouteDecision
    store: list[StoreJob] = field(default_factory=list)
    outbound: list[OutboundJob] = field(default_factory=list)
    notice: NoticeJob | None = None
    reports: list[ReportJob] = field(default_factory=list)


def _recipient_spam(env: Envelope, view, user: str) -> dict:
    """The MX's verdict judged with this recipient's thresholds (their Junk and reject scores: the
    domain items are prefetched, so no extra read); an unchecked verdict travels as it is."""
    if not env.spam or env.spam.get("action") == spamfilter.UNCHECKED:
        return env.spam
    return spamfilter.for_recipient(env.spam, view.spam_thresholds(user))


def plan(env: Envelope, directory, srs=None, cache=None) -> Plan:
    """Route ``env`` (pure apart from directory reads). ``srs``: bounces to our SRS
    addresses go back to the sender they stand for (:mod:`postern.srs`). ``cache``: a
    :class:`postern.directory.ItemCache` kept between envelopes (see the module's cost note)."""
    # Only authenticated submission may relay; aliases forwarding out are always allowed (routing.py),
    # and so is a Sieve redirect: the user's own script chose the target (postern.sieve.effects).
    allow_remote = bool(env.auth_user or env.redirected_by)
    if not hasattr(directory, "prefetched"):
        view = directory
        decision = route(env.rcpt_to, view, allow_remote=allow_remote, srs=srs)
    else:
        view = directory.prefetched(env.rcpt_to, shared=cache)
        decision = route(env.rcpt_to, view, allow_remote=allow_remote, srs=srs)
        if cache is not None and decision.failed:  # never refuse from the cache: a user may be new
            view = directory.prefetched(env.rcpt_to, shared=cache, fresh=True)
            decision = route(env.rcpt_to, view, allow_remote=allow_remote, srs=srs)
    p = Plan(decision)
    for d in decision.local:
        p.store.append(
            StoreJob(
                queue_id=env.queue_id,
                s3_key=env.s3_key,
                user=d.user,
                mail_from=env.mail_from,
                original_recipient=d.original_recipient,
                received_at=env.received_at,
                mailbox="Junk" if env.junk else d.mailbox,
                quota=d.quota,
                trace_headers=env.trace_headers,
                size=env.size,
                header=env.header,
                auth=env.auth,
                spam=_recipient_spam(env, view, d.user),
            )
        )
    for domain, recipients in sorted(decision.remote.items()):
        p.outbound.append(
            OutboundJob(
                queue_id=env.queue_id,
                s3_key=env.s3_key,
                mail_from=env.mail_from,
                domain=domain,
                recipients=tuple(r.recipient for r in recipients),
                # a redirect forwards as the user did (postern.forwarding: SRS sender, ARC)
                original_recipients=tuple(env.redirected_by or ("" if r.original_recipient == r.recipient
                                                                else r.original_recipient) for r in recipients),
                received_at=env.received_at,
                auth_user=env.auth_user,
                trace_headers=env.trace_headers,
                size=env.size,
            )
        )
    for r in decision.reports:
        p.reports.append(ReportJob(queue_id=env.queue_id, s3_key=env.s3_key, domain=r.domain,
                                   mail_from=env.mail_from, received_at=env.received_at, size=env.size))
    if decision.failed and env.mail_from != "":  # never bounce the null sender (RFC 5321 §4.5.5)
        failures = [
            dataclasses.asdict(
                RecipientFailure(
                    recipient=f.recipient,
                    status=f.status,
                    diagnostic=f"smtp; {_REPLY_CODE.get(f.status, 550)} {f.status} {f.reason}",
                    original_recipient=f.recipient,
                )
            )
            for f in decision.failed
        ]
        p.notice = NoticeJob(
            queue_id=env.queue_id,
            s3_key=env.s3_key,
            mail_from=env.mail_from,
            received_at=env.received_at,
            kind="failed",
            recipients=tuple(failures),
        )
    return p


def send_plan(p: Plan, settings, sqs) -> None:
    send_bodies(sqs, settings.store_queue_url, [j.to_json() for j in p.store])
    send_bodies(sqs, settings.outbound_queue_url, [j.to_json() for j in p.outbound])
    if p.notice is not None:
        send_bodies(sqs, settings.ndr_queue_url, [p.notice.to_json()])
    send_bodies(sqs, settings.reports_queue_url, [j.to_json() for j in p.reports])
