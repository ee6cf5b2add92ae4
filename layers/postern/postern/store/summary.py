"""What IMAP needs of a message, computed once at append time.

In:   the per-recipient trace prefix and the raw message bytes (unchanged).
Out:  :class:`Summary`: the logical header block (prefix + the message's own
      header section, including the blank line) when it fits in
      ``HEADER_CAP`` bytes, and its length. With these, FETCH of ENVELOPE,
      HEADER, HEADER.FIELDS, RFC822.HEADER and RFC822.SIZE needs no S3 read,
      and BODY[TEXT]/partial fetches become S3 byte ranges.
Fails: never; a message without a blank line is all header (RFC 5322 §2.1
      allows no body).

Bytes are located, not parsed: the header section ends where
:func:`postern.mail.header.header_length` says (the one rule IMAP and the
SMTP checks use too: the first empty line, CRLF or bare LF line ends).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..mail.header import header_length

HEADER_CAP = 64 * 1024


@dataclass(frozen=True)
class Summary:
    header: bytes | None  # logical header block, None when larger than HEADER_CAP
    header_len: int  # logical length of the header section incl. the blank line
    size: int  # logical size: prefix + raw


def summarize(prefix: bytes, raw: bytes) -> Summary:
    return summarize_header(prefix, raw[: header_length(raw)], len(raw))


def summarize_header(prefix: bytes, header: bytes, raw_size: int) -> Summary:
    """The same summary from the raw header section alone (what the gateway sends inline)."""
    hlen = len(prefix) + len(header)
    block = (prefix + header) if hlen <= HEADER_CAP else None
    return Summary(header=block, header_len=hlen, size=len(prefix) + raw_size)


# The gateway already holds the bytes: it sends the header section along on the
# queues (base64, when small), so the store Lambda needs no S3 read to index a
# message. SQS bills per 64 KiB chunk; 16 KiB keeps an envelope in one chunk.
INLINE_HEADER_CAP = 16 * 1024


def inline_header(raw: bytes) -> str:
    """Base64 of the header section of ``raw`` if it is at most INLINE_HEADER_CAP bytes, else ""."""
    import base64

    hlen = header_length(raw)
    return base64.b64encode(raw[:hlen]).decode("ascii") if hlen <= INLINE_HEADER_CAP else ""


def decode_inline_header(value: str) -> bytes | None:
    import base64
    import binascii

    if not value:
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
