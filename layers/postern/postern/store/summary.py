"""What IMAP needs of a message, computed once at append time.

In:   the per-recipient trace prefix and the raw message bytes (unchanged).
Out:  :class:`Summary`: the logical header block (prefix + the message's own
      header section, including the blank line) when it fits in
      ``HEADER_CAP`` bytes, and its length. With these, FETCH of ENVELOPE,
      HEADER, HEADER.FIELDS, RFC822.HEADER and RFC822.SIZE needs no S3 read,
      and BODY[TEXT]/partial fetches become S3 byte ranges.
Fails: never; a message without a blank line is all header (RFC 5322 §2.1
      allows no body).

Bytes are located, not parsed: the header section ends at the first CRLFCRLF
(or LFLF for mail that arrived with bare newlines).
"""

from __future__ import annotations

from dataclasses import dataclass

HEADER_CAP = 64 * 1024


@dataclass(frozen=True)
class Summary:
    header: bytes | None  # logical header block, None when larger than HEADER_CAP
    header_len: int  # logical length of the header section incl. the blank line
    size: int  # logical size: prefix + raw


def header_length(raw: bytes) -> int:
    """Length of the header section of ``raw`` including the separating blank line."""
    if raw.startswith(b"\r\n"):
        return 2
    if raw.startswith(b"\n"):
        return 1
    crlf = raw.find(b"\r\n\r\n")
    lf = raw.find(b"\n\n")
    candidates = [i + 4 for i in (crlf,) if i >= 0] + [i + 2 for i in (lf,) if i >= 0]
    return min(candidates) if candidates else len(raw)


def summarize(prefix: bytes, raw: bytes) -> Summary:
    hlen = len(prefix) + header_length(raw)
    header = (prefix + raw[: hlen - len(prefix)]) if hlen <= HEADER_CAP else None
    return Summary(header=header, header_len=hlen, size=len(prefix) + len(raw))
