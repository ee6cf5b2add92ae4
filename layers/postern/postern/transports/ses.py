"""Send through Amazon SES (SESv2 SendEmail with the raw bytes).

In:   a SendRequest; ``clients.sesv2``; settings ``ses_configuration_set``
      (the configuration set whose event destination sends bounce,
      complaint and delivery-delay events through SNS to the NDR function).
      The bytes (our trace and DKIM-Signature headers prepended to the
      original, canonical CRLF) go as ``Content.Raw.Data`` unchanged; the
      envelope recipients as ``Destination.ToAddresses`` (SES uses them as
      RCPT TO for raw mail), at most :data:`MAX_DESTINATIONS` (50) per call:
      more recipients are sent in several calls of the same bytes. Each call
      carries the message tag ``postern-queue-id`` so an SES event finds its
      way back to the job (:mod:`postern.pipeline.sesevents`).
Out:  one result per recipient: delivered with SES's MessageId in the text
      (``Ok <MessageId>``; ``ses_message_id`` reads it back), or failed with
      the result of its chunk's call (SES accepts or rejects a call whole).
Fails (as results): ``MessageRejected``, ``MailFromDomainNotVerified``,
      ``BadRequest``/``NotFound`` (unverified identity) -> permanent 5.7.1 /
      5.6.0; throttling, ``AccountSuspended``/``SendingPaused``, 5xx and
      connection errors -> transient 4.x (the operator can fix them in time).

SES chooses the envelope sender itself (its MAIL FROM domain, the custom
``bounce.<domain>`` one when configured) and reports what happens after its
acceptance as events, never as mail to our sender. ``FromEmailAddress`` is
the SendRequest's ``mail_from`` (a verified domain's address: the sender's
own, or the SRS address for forwarded mail), or the ``From:`` header for the
null reverse-path (reports go out as ``MAILER-DAEMON@...``).
"""

from __future__ import annotations

import re

from botocore.exceptions import BotoCoreError, ClientError

from ..mail.author import author
from ..mail.header import Header
from .base import RecipientResult, SendRequest, Transport, permanent_all, transient_all

MAX_DESTINATIONS = 50  # SES: recipients per message, To + Cc + Bcc (SendEmail / SendRawEmail)
QUEUE_ID_TAG = "postern-queue-id"
_TAG_VALUE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")  # SES MessageTag value alphabet
_OK = re.compile(r"^Ok (\S+)$")

_PERMANENT = {
    "MessageRejected": "5.7.1",
    "MailFromDomainNotVerifiedException": "5.7.1",
    "MailFromDomainNotVerified": "5.7.1",
    "BadRequestException": "5.6.0",
    "NotFoundException": "5.7.1",
}


def _header_from(data: bytes) -> str:
    """The first From: address, read by the one parser (:mod:`postern.mail`); "" when none."""
    readable = author(Header(data)).readable
    return readable[0].addr_spec if readable else ""


def ses_message_id(result: RecipientResult) -> str:
    """The SES MessageId a delivered result carries ("" for any other result)."""
    m = _OK.match(result.text) if result.ok else None
    return m.group(1) if m else ""


class SesTransport(Transport):
    name = "ses"

    def __init__(self, settings, clients):
        self.settings = settings
        self.clients = clients

    def send(self, req: SendRequest) -> list[RecipientResult]:
        out: list[RecipientResult] = []
        rcpts = list(req.recipients)
        for i in range(0, len(rcpts), MAX_DESTINATIONS):
            out += self._send_one(req, rcpts[i:i + MAX_DESTINATIONS])
        return out

    def _send_one(self, req: SendRequest, rcpts: list[str]) -> list[RecipientResult]:
        remote = f"email.{self.settings.region}.amazonaws.com"
        sender = req.mail_from or _header_from(req.data)
        kwargs = {
            "Destination": {"ToAddresses": rcpts},
            "Content": {"Raw": {"Data": req.data}},
        }
        if sender:
            kwargs["FromEmailAddress"] = sender
        if self.settings.ses_configuration_set:
            kwargs["ConfigurationSetName"] = self.settings.ses_configuration_set
        if _TAG_VALUE.match(req.queue_id or ""):
            kwargs["EmailTags"] = [{"Name": QUEUE_ID_TAG, "Value": req.queue_id}]
        try:
            r = self.clients.sesv2.send_email(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            text = f"SES {code}: {exc.response.get('Error', {}).get('Message', '')}"
            if code in _PERMANENT:
                return permanent_all(rcpts, _PERMANENT[code], text, remote)
            return transient_all(rcpts, "4.3.0", text, remote)
        except BotoCoreError as exc:
            return transient_all(rcpts, "4.4.1", f"SES unreachable: {exc}", remote)
        mid = r.get("MessageId", "")
        return [RecipientResult(rc, ok=True, code=250, status="2.0.0", text=f"Ok {mid}", remote_mta=remote)
                for rc in rcpts]
