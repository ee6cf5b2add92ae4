"""Send through Amazon SES (SESv2 SendEmail with the raw bytes).

In:   a SendRequest; ``clients.sesv2``. The bytes (our trace and
      DKIM-Signature headers prepended to the original) go as
      ``Content.Raw.Data`` unchanged; the envelope recipients as
      ``Destination.ToAddresses`` (SES uses them as RCPT TO for raw mail).
Out:  every recipient delivered with SES's MessageId as the response, or all
      failed with the same result (SES accepts or rejects the whole call).
Fails (as results): ``MessageRejected``, ``MailFromDomainNotVerified``,
      ``BadRequest``/``NotFound`` (unverified identity) -> permanent 5.7.1 /
      5.1.0; throttling, ``AccountSuspended``/``SendingPaused``, 5xx and
      connection errors -> transient 4.x (the operator can fix them in time).

The null reverse-path cannot be expressed to SES (it uses its own
MAIL FROM); reports go out with ``FromEmailAddress`` set to the report's
``From:`` (MAILER-DAEMON@...).
"""

from __future__ import annotations

from email import policy
from email.parser import BytesHeaderParser
from email.utils import getaddresses

from botocore.exceptions import BotoCoreError, ClientError

from .base import RecipientResult, SendRequest, Transport, permanent_all, transient_all

_PERMANENT = {
    "MessageRejected": "5.7.1",
    "MailFromDomainNotVerifiedException": "5.7.1",
    "MailFromDomainNotVerified": "5.7.1",
    "BadRequestException": "5.6.0",
    "NotFoundException": "5.7.1",
}


def _header_from(data: bytes) -> str:
    end = data.find(b"\r\n\r\n")
    hdr = BytesHeaderParser(policy=policy.default).parsebytes(data[: end + 4] if end >= 0 else data)
    addrs = getaddresses([str(v) for v in hdr.get_all("From", [])])
    return addrs[0][1] if addrs else ""


class SesTransport(Transport):
    name = "ses"

    def __init__(self, settings, clients):
        self.settings = settings
        self.clients = clients

    def send(self, req: SendRequest) -> list[RecipientResult]:
        remote = f"email.{self.settings.region}.amazonaws.com"
        sender = req.mail_from or _header_from(req.data)
        kwargs = {
            "Destination": {"ToAddresses": list(req.recipients)},
            "Content": {"Raw": {"Data": req.data}},
        }
        if sender:
            kwargs["FromEmailAddress"] = sender
        try:
            r = self.clients.sesv2.send_email(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            text = f"SES {code}: {exc.response.get('Error', {}).get('Message', '')}"
            if code in _PERMANENT:
                return permanent_all(req.recipients, _PERMANENT[code], text, remote)
            return transient_all(req.recipients, "4.3.0", text, remote)
        except BotoCoreError as exc:
            return transient_all(req.recipients, "4.4.1", f"SES unreachable: {exc}", remote)
        mid = r.get("MessageId", "")
        return [RecipientResult(rc, ok=True, code=250, status="2.0.0", text=f"Ok {mid}", remote_mta=remote)
                for rc in req.recipients]
