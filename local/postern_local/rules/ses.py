"""SES sending rules that moto does not enforce.

In:   SES sends: v2 ``SendEmail`` (``POST /v2/email/outbound-emails``, what
      Postern's ``ses`` transport uses) and v1 ``SendRawEmail``/``SendEmail``.
Out:  :class:`SesRules` ``before(call)`` raises :class:`~postern_local.rules.wire.AwsError`
      for a send AWS would refuse.
Fails: as SES does: ``MessageRejected`` ("Email address is not verified. The
      following identities failed the check in region ...") for an unverified
      sender or, in the sandbox, recipient; v2 ``BadRequestException`` / v1
      ``InvalidParameterValue`` for too many recipients, a message too large,
      or a non-ASCII local part.

The rules (SES Developer Guide, "Service quotas in Amazon SES" and "Verified
identities"; SESv2 API Reference, SendEmail, RawMessage and Destination, whose
text ships in botocore's service model):
  * Every sending address must be a verified identity: the sending address
    (v2 ``FromEmailAddress``, v1 ``Source``), each address of the raw
    message's ``From:`` and ``Sender:`` fields, and where feedback goes
    (``FeedbackForwardingEmailAddress``, v1 ``ReturnPath``). An address is
    verified if it is an identity itself or its domain, or a parent domain,
    is one (a verified domain covers its subdomains). moto checks only
    ``FromEmailAddress`` when one is given, never the ``From:`` field.
  * At most 50 recipients per message (To + Cc + Bcc; with no Destination,
    those header fields of the raw message).
  * In the sandbox (``POSTERN_LOCAL_SES_SANDBOX=true``) every recipient must
    be verified too, except the mailbox simulator's addresses.
  * At most 40 MB per message after base64 encoding with v2 (10 MB with v1).
  * No line of a raw message longer than 1,000 characters (RFC 5321; SESv2
    RawMessage).
  * Destination local parts in 7-bit ASCII (SES does not support SMTPUTF8).
"Verified" locally means the identity exists in moto (created with
``CreateEmailIdentity`` or v1 ``Verify*Identity``): moto has no DNS to check,
so an identity is verified from the moment it is created.

A v2 raw send that passes is recorded here (:attr:`SesRules.outbox`) and in
moto's SES backend (``sent_messages``, where tests have looked so far), and
answered by the proxy itself: moto's own send refuses what SES accepts (it
counts the header recipients on top of the Destination, ignores subdomain
verification, and fails on a message that is not UTF-8).
Not enforced locally: the sandbox's 200 messages per 24 h and 1 per second,
sending authorization policies (``*IdentityArn`` parameters: resource
policies, checked on paper only).
"""

from __future__ import annotations

import threading
import uuid
from collections import deque
from dataclasses import dataclass
from urllib.parse import quote

from .actions import header_addresses, raw_message, sending_addresses
from .upstream import Upstream
from .wire import AwsError, Call

MAX_RECIPIENTS = 50
MAX_V2_BYTES = 40 * 1024 * 1024
MAX_V1_BYTES = 10 * 1024 * 1024
MAX_LINE = 1000
SIMULATOR_DOMAIN = "simulator.amazonses.com"


@dataclass(frozen=True)
class SentRaw:
    message_id: str
    sender: str
    recipients: tuple[str, ...]
    raw: bytes
    configuration_set: str | None


class SesRules:
    def __init__(self, upstream: Upstream, region: str, sandbox: bool = False, account: str = "123456789012"):
        self.upstream = upstream
        self.region = region
        self.sandbox = sandbox
        self.account = account
        self.outbox: deque[SentRaw] = deque(maxlen=1000)
        self._lock = threading.Lock()

    def before(self, call: Call):
        if call.operation not in ("SendEmail", "SendRawEmail"):
            return None
        v2 = call.protocol == "rest-json"
        bad_request = "BadRequestException" if v2 else "InvalidParameterValue"
        raw = raw_message(call)
        self._check_size(call, v2, bad_request)
        recipients = self.recipients(call, raw)
        if len(recipients) > MAX_RECIPIENTS:
            raise AwsError(bad_request, f"Recipient count exceeds {MAX_RECIPIENTS}.")
        for r in recipients:
            if not r.rsplit("@", 1)[0].isascii():
                raise AwsError(bad_request, f"Local address contains non-ASCII characters: {r} "
                                            "(SES does not support SMTPUTF8)")
        unverified = [a for a in dict.fromkeys(sending_addresses(call)) if not self.verified(a)]
        if self.sandbox:
            unverified += [r for r in dict.fromkeys(recipients)
                           if not r.lower().endswith("@" + SIMULATOR_DOMAIN) and not self.verified(r)]
        if unverified:
            raise AwsError("MessageRejected", "Email address is not verified. The following identities failed "
                                              f"the check in region {self.region.upper()}: {', '.join(unverified)}")
        if raw is not None:
            longest = max((len(line.rstrip(b"\r")) for line in raw.split(b"\n")), default=0)
            if longest > MAX_LINE:
                raise AwsError("MessageRejected", f"Message has a line of {longest} characters; SES accepts at most "
                                                  f"{MAX_LINE} per line (RFC 5321 §4.5.3.1.6)")
            if v2:
                return self._send_raw(call, raw, recipients)
        return None

    def _send_raw(self, call: Call, raw: bytes, recipients: list[str]):
        from moto.ses.models import RawMessage, ses_backends

        from . import Answer

        p = call.params
        senders = sending_addresses(call)
        message_id = f"0100{uuid.uuid4().hex}-{uuid.uuid4().hex[:8]}-000000"
        sent = SentRaw(message_id, senders[0] if senders else "", tuple(recipients), raw,
                       p.get("ConfigurationSetName"))
        backend = ses_backends[self.account][self.region]
        with self._lock:
            self.outbox.append(sent)
            backend.sent_messages.append(RawMessage(message_id, sent.sender, list(recipients),
                                                    raw.decode("utf-8", "surrogateescape")))
            backend.sent_message_count += len(recipients)
        return Answer({"MessageId": message_id})

    @staticmethod
    def _check_size(call: Call, v2: bool, code: str) -> None:
        p = call.params
        if v2:
            data = ((p.get("Content") or {}).get("Raw") or {}).get("Data") or ""
            if len(data) > MAX_V2_BYTES:
                raise AwsError(code, "Message length is more than 40 megabytes")
        elif len(p.get("RawMessage.Data", "")) > MAX_V1_BYTES:
            raise AwsError(code, "Message length is more than 10 megabytes")

    @staticmethod
    def recipients(call: Call, raw: bytes | None) -> list[str]:
        p = call.params
        dest = p.get("Destination")
        out: list[str] = []
        if isinstance(dest, dict):  # v2
            for k in ("ToAddresses", "CcAddresses", "BccAddresses"):
                out += list(dest.get(k) or [])
        else:  # v1: Destinations.member.N (raw) or Destination.ToAddresses.member.N
            out += [v for k, v in sorted(p.items()) if k.startswith(("Destinations.member.",
                                                                      "Destination.ToAddresses.member.",
                                                                      "Destination.CcAddresses.member.",
                                                                      "Destination.BccAddresses.member."))]
        if not out and raw is not None:
            out = header_addresses(raw, "To", "Cc", "Bcc")
        return out

    def verified(self, address: str) -> bool:
        """True if the address, its domain or a parent domain is an identity in moto."""
        local, _, domain = address.rpartition("@")
        domain = domain.lower().rstrip(".")
        candidates = [f"{local}@{domain}"] if local else []
        labels = domain.split(".")
        candidates += [".".join(labels[i:]) for i in range(len(labels) - 1)]
        for identity in candidates:
            status, _ = self.upstream.rest("ses", "GET", f"/v2/email/identities/{quote(identity, safe='@')}")
            if status == 200:
                return True
        return False
