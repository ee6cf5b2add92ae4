"""The versioned JSON messages that travel on Postern's queues.

In:   produced by the gateway (``Envelope`` on the inbound queue) and by the
      router (``StoreJob`` on the store queue, ``OutboundJob`` on the
      outbound queue, ``ReportJob`` on the reports queue) and by anyone reporting a
      failure (``NoticeJob`` on the NDR queue).
Out:  ``to_json()`` / ``from_json()``; every body carries ``"v"`` (schema
      version) and ``"type"``.
Fails: :class:`EnvelopeError` for a body that is not JSON, has an unknown
      version/type or misses a field. Consumers treat that as poison: it can
      never succeed, so it is reported as a batch failure and ends in the DLQ.

The raw message never travels on a queue: only its S3 key.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

VERSION = 1


class EnvelopeError(ValueError):
    """A queue body we cannot understand (poison)."""


@dataclass(frozen=True)
class _Body:
    TYPE: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["v"] = VERSION
        d["type"] = self.TYPE
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        if not isinstance(d, dict):
            raise EnvelopeError("body is not a JSON object")
        if d.get("v") != VERSION:
            raise EnvelopeError(f"unsupported envelope version {d.get('v')!r}")
        if d.get("type") != cls.TYPE:
            raise EnvelopeError(f"expected type {cls.TYPE!r}, got {d.get('type')!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        required = {
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        missing = required - d.keys()
        if missing:
            raise EnvelopeError(f"missing fields: {sorted(missing)}")
        kwargs = {k: v for k, v in d.items() if k in names}
        for f in dataclasses.fields(cls):
            if f.name in kwargs and isinstance(kwargs[f.name], list) and f.type.startswith("tuple"):
                kwargs[f.name] = tuple(kwargs[f.name])
        return cls(**kwargs)

    @classmethod
    def from_json(cls, body: str):
        try:
            d = json.loads(body)
        except (TypeError, ValueError) as exc:
            raise EnvelopeError(f"body is not JSON: {exc}") from None
        return cls.from_dict(d)


@dataclass(frozen=True)
class Envelope(_Body):
    """What the gateway accepted: one SMTP transaction (gateway -> router)."""

    TYPE: ClassVar[str] = "envelope"

    queue_id: str
    mail_from: str  # "" for the null reverse-path <>
    rcpt_to: tuple[str, ...]
    s3_key: str
    size: int
    received_at: float  # epoch seconds
    client_ip: str = ""
    helo: str = ""
    tls: bool = False
    auth_user: str | None = None  # set for authenticated submission
    trace_headers: str = ""  # header lines the gateway prepends (Received, Authentication-Results), CRLF-terminated
    junk: bool = False  # DMARC p=quarantine failure: deliver to Junk
    smtputf8: bool = False
    body_8bit: bool = False
    header: str = ""  # base64 of the raw header section when small (store.summary.inline_header), else ""
    auth: dict = field(default_factory=dict, hash=False)  # postern.verdicts.AuthFacts: what the MX's SPF/DKIM/DMARC checks found
    spam: dict = field(default_factory=dict, hash=False)  # postern.verdicts.SpamVerdict; {} = "unchecked"
    redirected_by: str = ""  # a Sieve redirect of this local user sent it (router: forward out, SRS)


@dataclass(frozen=True)
class StoreJob(_Body):
    """Append one message to one local mailbox (router -> store)."""

    TYPE: ClassVar[str] = "store"

    queue_id: str
    s3_key: str  # the spool object
    user: str  # canonical address of the mailbox owner
    mail_from: str
    original_recipient: str  # the envelope recipient this came from (RFC 3464 Original-Recipient)
    received_at: float
    mailbox: str = "INBOX"
    quota: int = 0  # bytes; 0 = the default quota
    trace_headers: str = ""  # from the Envelope; the store adds Return-Path and Delivered-To
    size: int = 0
    header: str = ""  # from the Envelope: lets the store index the message without reading S3
    auth: dict = field(default_factory=dict, hash=False)  # from the Envelope (Sieve: vacation/reject backscatter rules)
    spam: dict = field(default_factory=dict, hash=False)  # from the Envelope (Sieve: spamtest, the managed Junk rule)


@dataclass(frozen=True)
class OutboundJob(_Body):
    """Deliver one message to remote recipients of one domain (router -> deliver)."""

    TYPE: ClassVar[str] = "outbound"

    queue_id: str
    s3_key: str
    mail_from: str
    domain: str  # destination domain; one SMTP transaction per job
    recipients: tuple[str, ...]
    original_recipients: tuple[str, ...] = ()  # parallel to recipients, "" where same
    received_at: float = 0.0
    auth_user: str | None = None
    trace_headers: str = ""
    size: int = 0
    delayed_notice_sent: bool = False
    # Retries (postern.retry): a deferred job is sent again as a new message carrying these.
    attempt: int = 1  # the attempt this body is for (not SQS's ApproximateReceiveCount: that counts crashes)
    not_before: float = 0.0  # epoch seconds; a body arriving earlier is only sent on (a hop)
    token: str = ""  # the retry generation; a body whose token is not the delivery log's is stale


@dataclass(frozen=True)
class RecipientFailure:
    recipient: str
    status: str  # RFC 3463, e.g. "5.1.1"
    diagnostic: str  # e.g. "smtp; 550 5.1.1 no such user"
    original_recipient: str = ""
    remote_mta: str = ""
    action: str = "failed"  # failed | delayed
    last_attempt: float = 0.0


@dataclass(frozen=True)
class NoticeJob(_Body):
    """Tell the sender that delivery failed or is delayed (anyone -> ndr)."""

    TYPE: ClassVar[str] = "notice"

    queue_id: str
    s3_key: str
    mail_from: str
    received_at: float
    kind: str  # "failed" | "delayed"
    recipients: tuple[dict, ...] = field(default_factory=tuple)  # RecipientFailure as dicts

    def failures(self) -> list[RecipientFailure]:
        return [RecipientFailure(**r) for r in self.recipients]


@dataclass(frozen=True)
class ReportJob(_Body):
    """A message to reports@<domain>: parse and summarise the DMARC / TLS-RPT report it carries (router -> reports)."""

    TYPE: ClassVar[str] = "report"

    queue_id: str
    s3_key: str  # the spool object (read by the reports function, never by the router)
    domain: str  # the local domain it was sent to
    mail_from: str
    received_at: float
    size: int = 0


_TYPES = {cls.TYPE: cls for cls in (Envelope, StoreJob, OutboundJob, NoticeJob, ReportJob)}


def parse_body(body: str):
    """Parse any queue body by its ``type``."""
    try:
        d = json.loads(body)
    except (TypeError, ValueError) as exc:
        raise EnvelopeError(f"body is not JSON: {exc}") from None
    if not isinstance(d, dict) or d.get("type") not in _TYPES:
        raise EnvelopeError("unknown body type")
    return _TYPES[d["type"]].from_dict(d)
