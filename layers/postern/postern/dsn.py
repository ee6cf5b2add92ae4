"""RFC 3464 delivery status notifications, built with the email package.

In:   a :class:`Report` (kind ``failed`` | ``delayed``, per-recipient
      :class:`~postern.envelope.RecipientFailure`, the original's header
      block, dates, names) - everything the bytes depend on, so the output
      is deterministic (golden-file tests).
Out:  :func:`build` -> the report as bytes (CRLF, ``policy.SMTP``):
      ``multipart/report; report-type=delivery-status`` (RFC 6522) with
        1. ``text/plain``: what happened, for people;
        2. ``message/delivery-status`` (RFC 3464 §2): a list of header
           blocks - the per-message fields (Reporting-MTA, Arrival-Date),
           then one block per recipient (Final-Recipient, Original-Recipient
           where known, Action, Status, Remote-MTA, Diagnostic-Code,
           Last-Attempt-Date, Will-Retry-Until for delays);
        3. ``text/rfc822-headers``: the original's headers only (RFC 6522 §3).
      ``From: MAILER-DAEMON@<domain>``, ``Auto-Submitted: auto-replied``
      (RFC 3834 §5); it is sent with the null reverse-path ``<>``.
Fails: ValueError for an unknown kind or no recipients.

The delivery-status payload must be a list of Message objects: the
generator writes each as a header block separated by blank lines (a string
payload crashes it).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from email import policy
from email.generator import BytesGenerator
from email.message import EmailMessage, Message
from datetime import datetime, timezone
from email.utils import format_datetime
from io import BytesIO

from .envelope import RecipientFailure
from .mail.header import header_end

POLICY = policy.SMTP  # CRLF, 78-column folding


@dataclass(frozen=True)
class Report:
    kind: str  # failed | delayed
    reporting_mta: str  # our host name
    from_addr: str  # MAILER-DAEMON@domain
    to_addr: str  # the original sender
    message_id: str  # without <>
    date: float
    arrival_date: float
    failures: tuple[RecipientFailure, ...]
    original_headers: bytes | None = None  # the original's header block (no body)
    original_queue_id: str = ""
    will_retry_until: float = 0.0  # delayed only


def formatdate(t: float) -> str:
    """RFC 5322 §3.3 date-time in UTC with an explicit ``+0000`` zone."""
    return format_datetime(datetime.fromtimestamp(t, timezone.utc))


_SUBJECT = {
    "failed": "Undelivered Mail Returned to Sender",
    "delayed": "Delayed Mail (still being retried)",
}


def _addr_type(addr: str) -> str:
    # RFC 3464 §2.3.2 / RFC 6533 §3: utf-8 address type for non-ASCII addresses
    return "rfc822" if addr.isascii() else "utf-8"


def _human(report: Report) -> str:
    lines = [f"This is the mail system at host {report.reporting_mta}.", ""]
    if report.kind == "failed":
        lines += ["I'm sorry to have to inform you that your message could not",
                  "be delivered to one or more recipients. Its headers are attached below.", ""]
    else:
        lines += ["####################################################################",
                  "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #",
                  "####################################################################", "",
                  "Your message could not be delivered yet to one or more recipients.",
                  f"Delivery will be retried until {formatdate(report.will_retry_until)}.", ""]
    for f in report.failures:
        lines.append(f"<{f.recipient}>: {f.diagnostic.split(';', 1)[-1].strip()}")
    lines.append("")
    return "\r\n".join(lines)


def _block(pairs: list[tuple[str, str]], pol=POLICY) -> Message:
    m = Message(policy=pol)
    for name, value in pairs:
        m[name] = value
    return m


def _is_international(report: Report) -> bool:
    texts = [report.to_addr] + [x for f in report.failures for x in (f.recipient, f.original_recipient, f.diagnostic)]
    return not all(t.isascii() for t in texts)


def delivery_status(report: Report, pol=POLICY) -> Message:
    """The ``message/delivery-status`` part: per-message block, then one per recipient.

    With non-ASCII addresses it is ``message/global-delivery-status`` (RFC 6533
    §6.2), written as UTF-8 by :class:`_Generator`.
    """
    blocks = []
    per_message = [("Reporting-MTA", f"dns; {report.reporting_mta}")]
    if report.original_queue_id:
        per_message.append(("X-Postern-Queue-ID", report.original_queue_id))
    per_message.append(("Arrival-Date", formatdate(report.arrival_date)))  # RFC 3464 §2.2.5
    blocks.append(_block(per_message, pol))
    for f in report.failures:
        fields = [("Final-Recipient", f"{_addr_type(f.recipient)}; {f.recipient}")]
        if f.original_recipient:
            fields.append(("Original-Recipient", f"{_addr_type(f.original_recipient)}; {f.original_recipient}"))
        fields.append(("Action", f.action))
        fields.append(("Status", f.status))
        if f.remote_mta:
            fields.append(("Remote-MTA", f"dns; {f.remote_mta}"))
        if f.diagnostic:
            fields.append(("Diagnostic-Code", f.diagnostic))
        if f.last_attempt:
            fields.append(("Last-Attempt-Date", formatdate(f.last_attempt)))
        if report.kind == "delayed" and report.will_retry_until:
            fields.append(("Will-Retry-Until", formatdate(report.will_retry_until)))  # RFC 3464 §2.3.9
        blocks.append(_block(fields, pol))
    part = Message(policy=pol)
    part["Content-Type"] = "message/delivery-status" if pol is POLICY else "message/global-delivery-status"
    for b in blocks:
        part.attach(b)
    return part


class _Generator(BytesGenerator):
    """The stdlib generator, also writing RFC 6533's global types: the header-block list
    of ``message/global-delivery-status`` like ``message/delivery-status``'s, and
    ``message/global-headers`` as 8-bit text (the original bytes, unchanged)."""

    def _handle_message_delivery_status(self, msg):
        # Status fields are written unfolded (up to RFC 5322's 998): a long
        # Diagnostic-Code folded right after its colon reads back with a leading
        # space in some parsers, and the text is the remote server's, verbatim.
        saved = self.policy
        self.policy = saved.clone(max_line_length=998)
        try:
            super()._handle_message_delivery_status(msg)
        finally:
            self.policy = saved

    _handle_message_global_delivery_status = _handle_message_delivery_status
    _handle_message_global_headers = BytesGenerator._handle_text


def boundary_for(message_id: str) -> str:
    return "=_postern_" + hashlib.sha256(message_id.encode()).hexdigest()[:24]


def build(report: Report) -> bytes:
    if report.kind not in _SUBJECT:
        raise ValueError(f"unknown report kind {report.kind!r}")
    if not report.failures:
        raise ValueError("a report needs at least one recipient")
    intl = _is_international(report)
    pol = policy.SMTPUTF8 if intl else POLICY  # RFC 6533: UTF-8 headers need SMTPUTF8 transport
    msg = EmailMessage(policy=pol)
    msg["From"] = f"Mail Delivery System <{report.from_addr}>"
    msg["To"] = f"<{report.to_addr}>"
    msg["Subject"] = _SUBJECT[report.kind]
    msg["Date"] = formatdate(report.date)
    msg["Message-ID"] = f"<{report.message_id}>"
    msg["Auto-Submitted"] = "auto-replied"  # RFC 3834 §5
    msg["MIME-Version"] = "1.0"
    msg["Content-Type"] = "multipart/report"
    msg.set_param("report-type", "global-delivery-status" if intl else "delivery-status")
    msg.set_boundary(boundary_for(report.message_id))

    human = _human(report)
    text = EmailMessage(policy=pol)
    text.set_content(human.replace("\r\n", "\n"), charset="us-ascii" if human.isascii() else "utf-8")
    del text["MIME-Version"]  # only the top level carries it (RFC 2045 §4)
    text["Content-Description"] = "Notification"
    msg.attach(text)

    ds = delivery_status(report, pol)
    ds["Content-Description"] = "Delivery report"
    msg.attach(ds)

    if report.original_headers:
        hdr = Message(policy=pol)
        raw = report.original_headers.rstrip(b"\r\n") + b"\r\n"
        eight_bit = any(b > 127 for b in raw)
        # RFC 6522 §3 text/rfc822-headers; RFC 6533 §6.3 message/global-headers for UTF-8 ones
        hdr["Content-Type"] = "message/global-headers" if eight_bit else "text/rfc822-headers"
        hdr["Content-Description"] = "Undelivered Message Headers" if report.kind == "failed" else "Delayed Message Headers"
        hdr["Content-Transfer-Encoding"] = "8bit" if eight_bit else "7bit"
        hdr.set_payload(raw.decode("ascii", "surrogateescape"))  # the original bytes, unchanged
        msg.attach(hdr)

    buf = BytesIO()
    _Generator(buf, policy=pol).flatten(msg)
    return buf.getvalue()


def header_block(data: bytes) -> bytes | None:
    """The header section of ``data`` (up to and excluding the empty line: the one rule of
    :func:`postern.mail.header.header_end`), or None if no end of it is in ``data`` (read more)."""
    end, body_start = header_end(data)
    return data[:end] if body_start > end else None
