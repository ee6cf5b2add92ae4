"""A message sent to reports@<domain> -> the report it carries, parsed.

In:   the message's bytes as received (the spool object, read up to :func:`message_cap` bytes)
      and the caps (:class:`~postern.reports.archive.Caps`).
Out:  :func:`extract` -> ``("dmarc", DmarcReport)`` or ``("tls", TlsReport)``.
Fails: :class:`~postern.reports.errors.ReportRefused`: ``not_a_report`` when no part is a report
      (an ordinary message sent to reports@), otherwise what the archive and the parsers raise
      for the first report part found.

Where the report is: DMARC aggregate reports are an attachment (``application/gzip``,
``application/zip``, ``text/xml``..., RFC 7489 §7.2.1.1) or the whole body; TLS-RPT reports
are the ``application/tlsrpt+gzip`` (or ``+json``) part of a ``multipart/report;
report-type=tlsrpt`` (RFC 8460 §5.3). The kind is decided by the document itself once
unpacked: XML is DMARC, JSON is TLS-RPT. The message is parsed by the email package with
``policy.default``; at most MAX_PARTS parts are looked at.
"""

from __future__ import annotations

from email import policy
from email.parser import BytesParser

from . import dmarc, tlsrpt
from .archive import Caps, unpack
from .errors import ReportRefused

MAX_PARTS = 32
REPORT_TYPES = {
    "application/gzip", "application/x-gzip", "application/zip", "application/x-zip-compressed",
    "application/x-zip", "application/octet-stream", "text/xml", "application/xml",
    "application/tlsrpt+gzip", "application/tlsrpt+json", "application/json",
}
REPORT_SUFFIXES = (".xml", ".xml.gz", ".gz", ".zip", ".json", ".json.gz")


def message_cap(caps: Caps) -> int:
    """The most of a message worth reading: the attachment cap once base64-encoded, plus headers."""
    return caps.max_compressed * 4 // 3 + 256 * 1024


def _candidates(msg):
    seen = 0
    for part in msg.walk():
        seen += 1
        if seen > MAX_PARTS:
            return
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        name = (part.get_filename() or "").lower()
        if ctype in REPORT_TYPES or name.endswith(REPORT_SUFFIXES):
            yield part


def extract(raw: bytes, caps: Caps):
    try:
        msg = BytesParser(policy=policy.default).parsebytes(raw)
    except Exception as exc:  # noqa: BLE001 - the email package's defects are many; all mean malformed
        raise ReportRefused("malformed", f"message does not parse ({exc.__class__.__name__})") from None
    for part in _candidates(msg):
        try:
            data = part.get_payload(decode=True) or b""
        except Exception:  # noqa: BLE001 - a broken transfer encoding
            raise ReportRefused("malformed", "report attachment with a broken transfer encoding") from None
        doc = unpack(data, caps)
        head = doc.lstrip()[:1]
        if head == b"<":
            return "dmarc", dmarc.parse(doc)
        if head == b"{":
            return "tls", tlsrpt.parse(doc)
        raise ReportRefused("malformed", "report attachment holds neither XML nor JSON")
    raise ReportRefused("not_a_report", "no DMARC or TLS-RPT report attached")
