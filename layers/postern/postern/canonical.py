"""Outbound bytes in canonical form: the only place line endings and dot-stuffing are decided.

In:   message bytes as stored (S3 keeps exactly what arrived: a bare LF is
      accepted at ingest and stored as received; a bare CR is refused at
      ingest, but older objects or other sources may still hold one).
Out:  :func:`canonical` - the message with every line ending CRLF (RFC 5321
      §2.3.8: bare CR and bare LF become CRLF) and a final CRLF; what is
      DKIM-signed, ARC-sealed and handed to SES as raw content.
      :func:`data_payload` - the DATA section as it goes on the SMTP wire:
      the canonical message dot-stuffed (RFC 5321 §4.5.2) and terminated by
      ``.`` CRLF. SMTP transports write exactly this and nothing else
      (``transports.base.send_data``).
Fails: never; both functions are total on bytes.

Why Postern does this itself: ``smtplib.SMTP.data()`` given bytes neither
fixes line endings nor dot-stuffs a line that follows a bare CR, so stored
bytes such as ``\\r.\\r\\nMAIL FROM:<bob@...>`` would reach a smarthost or a
remote MX unchanged and be read there as the end of DATA plus a new
transaction (SMTP smuggling). After :func:`canonical` every CR and LF is
part of a CRLF, so a line is exactly what every receiver sees as a line,
and :func:`data_payload` stuffs every line that starts with a dot.
"""

from __future__ import annotations

import re

CRLF = b"\r\n"
# A line ending in any spelling: CRLF, or a CR or LF standing alone (RFC 5321 §2.3.8).
_ANY_EOL = re.compile(rb"\r\n|\r|\n")


def canonical(data: bytes) -> bytes:
    """Every line ending as CRLF, and the message ending in CRLF. Idempotent."""
    if b"\r" in data or b"\n" in data:
        if data.count(b"\r") != data.count(CRLF) or data.count(b"\n") != data.count(CRLF):
            data = _ANY_EOL.sub(CRLF, data)  # only when a bare CR or LF is present
    if data and not data.endswith(CRLF):
        data += CRLF
    return data


def is_canonical(data: bytes) -> bool:
    """True when every CR and LF in ``data`` belongs to a CRLF pair."""
    n = data.count(CRLF)
    return data.count(b"\r") == n and data.count(b"\n") == n


def has_bare_cr(data: bytes) -> bool:
    """A CR not followed by LF (what ingest refuses, as Postfix's smtpd_forbid_bare_newline does for LF)."""
    return data.count(b"\r") != data.count(CRLF)


def data_payload(message: bytes) -> bytes:
    """The DATA section on the wire: canonical, dot-stuffed, ending with ``.`` CRLF."""
    body = canonical(message)
    # RFC 5321 §4.5.2: a line beginning with "." gets one more; lines are CRLF-delimited now.
    if body.startswith(b"."):
        body = b"." + body
    body = body.replace(b"\r\n.", b"\r\n..")
    return body + b".\r\n"
