"""Transport interface and the SMTP client transaction every SMTP transport shares.

In:   a :class:`SendRequest` (envelope sender, the recipients of ONE
      destination domain, the exact bytes to send).
Out:  one :class:`RecipientResult` per recipient: delivered, or failed
      permanently (5xx, null MX, NXDOMAIN), or failed transiently (4xx,
      timeouts, refused connections, DNS SERVFAIL) - one recipient may succeed
      while another fails.
Fails: transports never raise for a delivery failure; they return results.
      Programming errors propagate.

:func:`smtp_transaction` drives an already-connected ``smtplib.SMTP``
command by command (MAIL, RCPT per recipient, DATA) so each recipient gets
its own reply; ``smtplib.sendmail`` would fold them into one exception.
DATA is written by :func:`send_data` with :func:`postern.canonical.data_payload`
(never ``smtplib.SMTP.data``, which leaves bare CR/LF alone and would
dot-stuff a second time). :class:`SendRequest` holds its bytes in canonical
form whatever it was given, so no transport ever sees anything else.
smtplib blocks: that is fine in a Lambda, never on an event loop.
"""

from __future__ import annotations

import abc
import re
import smtplib
import socket
import ssl
from dataclasses import dataclass

from ..canonical import canonical, data_payload

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})\b")


@dataclass(frozen=True)
class SendRequest:
    mail_from: str  # "" for the null reverse-path
    recipients: tuple[str, ...]
    data: bytes  # the message, canonical (postern.canonical): CRLF line ends, not dot-stuffed
    domain: str  # the destination domain (one transaction per domain)
    queue_id: str = ""
    smtputf8: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", canonical(self.data))  # whatever the caller built


@dataclass(frozen=True)
class RecipientResult:
    recipient: str
    ok: bool
    permanent: bool = False
    code: int = 0  # SMTP reply code, 0 when there was no SMTP reply (DNS, connection)
    status: str = ""  # RFC 3463 enhanced status
    text: str = ""  # reply text / reason
    remote_mta: str = ""  # the host that answered (RFC 3464 Remote-MTA)
    diagnostic_type: str = "smtp"  # RFC 3464 Diagnostic-Code type: smtp | x-postern

    @property
    def transient(self) -> bool:
        return not self.ok and not self.permanent

    @property
    def response(self) -> str:
        """One line for logs and the delivery log: ``550 5.1.1 no such user``."""
        if self.code:
            return f"{self.code} {self.status} {self.text}".replace("  ", " ").strip()
        return f"{self.status} {self.text}".strip()

    @property
    def diagnostic(self) -> str:
        """RFC 3464 §2.3.6 Diagnostic-Code value, e.g. ``smtp; 550 5.1.1 no such user``."""
        if self.code:
            return f"smtp; {self.response}"
        return f"x-postern; {self.response}"


def reply_status(code: int, text: str) -> tuple[str, str]:
    """Split an SMTP reply text into (enhanced status, rest); derive the status
    class from the code when the server sent none (RFC 3463 §3.1)."""
    m = _ENHANCED.match(text)
    if m and m.group(1) == str(code)[0]:
        return m.group(0), text[m.end():].strip()
    cls = str(code)[0] if code else "4"
    return f"{cls}.0.0", text.strip()


def from_reply(recipient: str, code: int, msg: bytes | str, remote: str) -> RecipientResult:
    text = msg.decode("utf-8", "replace") if isinstance(msg, bytes) else msg
    text = " ".join(text.split())  # multi-line replies -> one line
    status, rest = reply_status(code, text)
    return RecipientResult(recipient, ok=200 <= code < 300, permanent=500 <= code < 600, code=code,
                           status=status, text=rest, remote_mta=remote)


def transient_all(recipients, status: str, text: str, remote: str = "") -> list[RecipientResult]:
    return [RecipientResult(r, ok=False, permanent=False, status=status, text=text, remote_mta=remote,
                            diagnostic_type="x-postern") for r in recipients]


def permanent_all(recipients, status: str, text: str, remote: str = "") -> list[RecipientResult]:
    return [RecipientResult(r, ok=False, permanent=True, status=status, text=text, remote_mta=remote,
                            diagnostic_type="x-postern") for r in recipients]


class SessionFailed(Exception):
    """The session failed before any per-recipient answer: try the next host."""

    def __init__(self, results: list[RecipientResult]):
        super().__init__(results[0].response if results else "session failed")
        self.results = results


def smtp_transaction(client: smtplib.SMTP, req: SendRequest, remote: str) -> list[RecipientResult]:
    """MAIL, RCPT per recipient, DATA on a connected (and greeted, maybe TLS) client.

    Raises :class:`SessionFailed` when the whole session failed transiently
    before any recipient was answered (the caller may try another host).
    """
    pending = list(req.recipients)
    try:
        client.ehlo_or_helo_if_needed()
        options: list[str] = []
        if client.has_extn("size"):
            options.append(f"SIZE={len(req.data)}")
        if client.has_extn("8bitmime") and any(b > 127 for b in req.data):
            options.append("BODY=8BITMIME")  # RFC 6152
        if req.smtputf8:
            if not client.has_extn("smtputf8"):  # RFC 6531 §3.2: never downgrade an address
                return permanent_all(pending, "5.6.7", f"{remote} does not support SMTPUTF8", remote)
            options.append("SMTPUTF8")  # RFC 6531 §3.4
        code, msg = client.mail(req.mail_from, options)
        if code != 250:
            results = [from_reply(r, code, msg, remote) for r in pending]
            if 400 <= code < 500:
                raise SessionFailed(results)
            return results
        results: dict[str, RecipientResult] = {}
        accepted: list[str] = []
        for r in pending:
            code, msg = client.rcpt(r)
            if code in (250, 251):
                accepted.append(r)
            else:
                results[r] = from_reply(r, code if code >= 400 else 451, msg, remote)
        if not accepted:
            try:
                client.rset()
            except (smtplib.SMTPException, OSError):
                pass
            return [results[r] for r in pending]
        code, msg = send_data(client, req.data)
        for r in accepted:
            results[r] = from_reply(r, code, msg, remote)  # RFC 5321 §4.1.1.4: one reply for all
        return [results[r] for r in pending]
    except SessionFailed:
        raise
    except smtplib.SMTPResponseException as exc:
        res = [from_reply(r, exc.smtp_code, exc.smtp_error, remote) for r in pending]
        if 400 <= exc.smtp_code < 500 or exc.smtp_code < 400:
            raise SessionFailed([from_reply(r, 451 if exc.smtp_code < 400 else exc.smtp_code, exc.smtp_error, remote)
                                 for r in pending]) from None
        return res
    except (socket.timeout, TimeoutError):
        raise SessionFailed(transient_all(pending, "4.4.2", f"timeout talking to {remote}", remote)) from None
    except smtplib.SMTPServerDisconnected as exc:
        # smtplib reports a read timeout as a disconnect ("... closed: timed out")
        what = f"timeout talking to {remote}" if "timed out" in str(exc) else f"connection lost with {remote}: {exc}"
        raise SessionFailed(transient_all(pending, "4.4.2", what, remote)) from None
    except (ssl.SSLError, OSError, smtplib.SMTPException) as exc:
        raise SessionFailed(transient_all(pending, "4.4.2", f"{remote}: {exc.__class__.__name__}: {exc}", remote)) from None


def send_data(client: smtplib.SMTP, message: bytes) -> tuple[int, bytes]:
    """DATA, then the canonical dot-stuffed payload (RFC 5321 §4.1.1.4); the final reply.

    A refusal of DATA itself (anything but 354) is returned as that reply."""
    code, msg = client.docmd("DATA")
    if code != 354:
        return code, msg
    client.send(data_payload(message))
    return client.getreply()


class Transport(abc.ABC):
    name = "transport"

    @abc.abstractmethod
    def send(self, req: SendRequest) -> list[RecipientResult]:
        """Deliver ``req`` to its recipients; one result per recipient, in order."""

    def close(self) -> None:  # pragma: no cover - transports holding connections override
        pass
