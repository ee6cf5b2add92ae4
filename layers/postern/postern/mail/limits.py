"""The work budget of header parsing: caps on what is parsed, never on what is stored.

In:   nothing (constants), and a raw structured field value for :func:`structured`.
Out:  the caps every reader of attacker-controlled headers goes through
      (:class:`postern.mail.header.Header` applies them):
        MAX_STRUCTURED      bytes of one structured field value that are parsed
                            (addresses, Date, Message-ID, Content-Type...): 8 KiB
        MAX_ENCODED_WORDS   RFC 2047 encoded-words decoded per field: 64; the
                            rest stay as written
        MAX_REFERENCES      References keeps its first msg-id and its last 100
        MAX_FIELDS          fields in the ordered list of one header section
        MAX_SAME_NAME       fields of one name read for their values
Fails: never.

Why: the stdlib header-value parser (``policy.default``) needs memory that
grows with the square of the number of encoded-words in a field (issue 11:
one 168 KB message took a gateway from 0.37 to 2.1 GB). The stored bytes
are never changed (DKIM verifies them as received); only the parsed view
is bounded, and every parser behind it runs in time linear in its input.
"""

from __future__ import annotations

MAX_STRUCTURED = 8 * 1024
MAX_ENCODED_WORDS = 64
MAX_REFERENCES = 100
MAX_FIELDS = 2000
MAX_SAME_NAME = 100


def structured(value: bytes) -> bytes:
    """The part of a structured field value that is parsed: at most MAX_STRUCTURED bytes,
    cut after the last comma inside the cap when there is one (so a list loses whole items)."""
    if len(value) <= MAX_STRUCTURED:
        return value
    head = value[:MAX_STRUCTURED]
    comma = head.rfind(b",")
    return head[:comma] if comma > 0 else head
