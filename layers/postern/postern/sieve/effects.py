"""Carry out what a Sieve run decided beyond storing: redirect, vacation reply, reject notice.

In:   the StoreJob, the decision (:mod:`.delivery`), the outlet (queues and
      spool: :class:`AwsOutlet` deployed, :class:`MemoryOutlet` in tests), the
      state table (:class:`DynamoState` / :class:`MemoryState`).
Out:  * ``redirect``: a new :class:`~postern.envelope.Envelope` on the inbound
        queue (queue id ``<queue id>-r<digest>``, the same spool object, MAIL
        FROM unchanged, ``redirected_by`` the user, ``Delivered-To: <user>``
        on top of the trace lines): the router sends it on like an alias
        forward, so the deliver function rewrites the envelope sender with SRS
        (postern.forwarding) and a local target gets it through its own store.
      * ``vacation``: the reply's bytes as a spool object
        ``<spool prefix><queue id>-v<digest>`` and an Envelope from ``<>``
        submitted for the user (``auth_user``) on the inbound queue; a state
        item ``V#<user>/<handle>#<sender>`` with a TTL of the period makes it
        once per sender per period (a conditional write: two deliveries racing
        send one reply).
      * ``reject``: a :class:`~postern.envelope.NoticeJob` (``failed``, 5.7.1,
        the reason in the Diagnostic-Code) on the NDR queue: the one report
        path (RFC 5429 §2.1.1, RFC 3464), which never answers ``<>``.
Fails: StoreUnavailable on any S3/SQS/DynamoDB fault: the store function lets
      SQS retry the record; the stored copies are deduplicated and each side
      effect has a marker ``Q#<queue id>/sieve#<user>#<what>`` written after it
      was sent, so a retry never redirects or replies twice (a crash between
      the send and the marker may repeat one send, as for notices).
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from dataclasses import dataclass, field

from botocore.exceptions import BotoCoreError, ClientError

from .. import keys
from ..envelope import Envelope, NoticeJob, RecipientFailure, StoreJob
from ..errors import StoreUnavailable
from ..items import is_conditional_failure, serialize
from ..pipeline.queues import send_bodies
from ..store.summary import inline_header

MARKER_TTL = 35 * 86400  # markers outlive any SQS redelivery by far


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).lower().encode("utf-8", "surrogatepass")).hexdigest()[:12]


def one_line(text: str, limit: int = 900) -> str:
    """Text fit for a Diagnostic-Code (RFC 3464 §2.3.6): one line, no controls, bounded."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())[:limit]


# --- state ------------------------------------------------------------------------------------------
class DynamoState:
    """Markers and vacation claims in the state table (TTL attribute ``expires``)."""

    def __init__(self, clients, table: str):
        self.clients = clients
        self.table = table

    def claim(self, key: dict, now: float, until: float, owner: str) -> bool:
        """Take ``key`` until ``until`` unless someone else holds it unexpired; True when ours."""
        try:
            self.clients.dynamodb.put_item(
                TableName=self.table, Item=serialize({**key, "owner": owner, "at": now, "expires": int(until)}),
                ConditionExpression="attribute_not_exists(pk) OR expires < :now OR #o = :owner",
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues=serialize({":now": int(now), ":owner": owner}))
            return True
        except ClientError as exc:
            if is_conditional_failure(exc):
                return False
            raise StoreUnavailable(f"state write failed: {exc.__class__.__name__}") from exc
        except BotoCoreError as exc:
            raise StoreUnavailable("state write failed") from exc

    def done(self, key: dict) -> bool:
        try:
            r = self.clients.dynamodb.get_item(TableName=self.table, Key=serialize(key), ConsistentRead=True)
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailable("state read failed") from exc
        return "Item" in r

    def mark(self, key: dict, now: float) -> None:
        try:
            self.clients.dynamodb.put_item(TableName=self.table,
                                           Item=serialize({**key, "at": now, "expires": int(now + MARKER_TTL)}))
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailable("state write failed") from exc


class MemoryState:
    def __init__(self):
        self.items: dict[tuple[str, str], dict] = {}
        self._lock = threading.Lock()

    def claim(self, key: dict, now: float, until: float, owner: str) -> bool:
        k = (key["pk"], key["sk"])
        with self._lock:
            held = self.items.get(k)
            if held and held["expires"] >= now and held.get("owner") != owner:
                return False
            self.items[k] = {"owner": owner, "expires": int(until)}
            return True

    def done(self, key: dict) -> bool:
        return (key["pk"], key["sk"]) in self.items

    def mark(self, key: dict, now: float) -> None:
        self.items[(key["pk"], key["sk"])] = {"expires": int(now + MARKER_TTL)}


# --- the outlet: queues and spool -------------------------------------------------------------------
class AwsOutlet:
    def __init__(self, settings, clients):
        self.settings = settings
        self.clients = clients

    def _send(self, url: str, body: str) -> None:
        send_bodies(self.clients.sqs, url, [body])

    def submit(self, env: Envelope) -> None:
        self._send(self.settings.inbound_queue_url, env.to_json())

    def notice(self, job: NoticeJob) -> None:
        self._send(self.settings.ndr_queue_url, job.to_json())

    def put_spool(self, key: str, raw: bytes) -> None:
        try:
            self.clients.s3.put_object(Bucket=self.settings.bucket, Key=key, Body=raw, ContentType="message/rfc822")
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailable(f"spool write failed: {exc.__class__.__name__}") from exc

    def read_spool(self, key: str, limit: int) -> bytes:
        """The first ``limit`` bytes of a spool object (one ranged GetObject)."""
        try:
            r = self.clients.s3.get_object(Bucket=self.settings.bucket, Key=key, Range=f"bytes=0-{max(0, limit - 1)}")
            return r["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailable(f"spool read failed: {exc.__class__.__name__}") from exc


@dataclass
class MemoryOutlet:
    submitted: list[Envelope] = field(default_factory=list)
    notices: list[NoticeJob] = field(default_factory=list)
    spool: dict[str, bytes] = field(default_factory=dict)

    def submit(self, env: Envelope) -> None:
        self.submitted.append(env)

    def notice(self, job: NoticeJob) -> None:
        self.notices.append(job)

    def put_spool(self, key: str, raw: bytes) -> None:
        self.spool[key] = raw

    def read_spool(self, key: str, limit: int) -> bytes:
        return self.spool.get(key, b"")[:limit]


# --- the effects ------------------------------------------------------------------------------------
class Effects:
    def __init__(self, outlet, state, spool_prefix: str = "spool/"):
        self.outlet = outlet
        self.state = state
        self.spool_prefix = spool_prefix

    def _once(self, job: StoreJob, what: str, now: float, fn) -> bool:
        key = keys.sieve_effect_key(job.queue_id, job.user, what)
        if self.state.done(key):
            return False
        fn()
        self.state.mark(key, now)
        return True

    def redirect(self, job: StoreJob, target: str, now: float, auth: dict, spam: dict) -> bool:
        """Send the message on to ``target`` (once per delivery); False when it was sent already."""
        digest = _digest(job.user, target)
        env = Envelope(
            queue_id=f"{job.queue_id}-r{digest}", mail_from=job.mail_from, rcpt_to=(target,), s3_key=job.s3_key,
            size=job.size, received_at=now, trace_headers=f"Delivered-To: {job.user}\r\n{job.trace_headers}",
            header=job.header, redirected_by=job.user, auth=auth, spam=spam)
        return self._once(job, f"redirect#{digest}", now, lambda: self.outlet.submit(env))

    def vacation(self, job: StoreJob, raw: bytes, sender: str, handle: str, period: int, now: float) -> str:
        """Send the reply ``raw`` to ``sender`` unless this user answered them within ``period``."""
        owner = f"{job.queue_id}#{job.user}"
        if not self.state.claim(keys.vacation_key(job.user, handle, sender), now, now + period, owner):
            return "already answered within the period"
        rid = f"{job.queue_id}-v{_digest(job.user, sender)}"
        key = f"{self.spool_prefix}{rid}"

        def send():
            self.outlet.put_spool(key, raw)
            self.outlet.submit(Envelope(queue_id=rid, mail_from="", rcpt_to=(sender,), s3_key=key, size=len(raw),
                                        received_at=now, auth_user=job.user, header=inline_header(raw)))

        return "sent" if self._once(job, "vacation", now, send) else "sent before"

    def reject(self, job: StoreJob, reason: str, now: float) -> None:
        """RFC 5429 §2.1.1: a failure report to the sender through the NDR queue."""
        text = one_line(reason) or "rejected by the recipient's filter"
        failure = RecipientFailure(recipient=job.user, status="5.7.1", diagnostic=f"smtp; 550 5.7.1 {text}",
                                   original_recipient=job.original_recipient)
        self.outlet.notice(NoticeJob(queue_id=job.queue_id, s3_key=job.s3_key, mail_from=job.mail_from,
                                     received_at=job.received_at or now, kind="failed",
                                     recipients=(dataclasses.asdict(failure),)))
