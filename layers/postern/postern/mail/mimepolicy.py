"""The email policy every reader of a message's MIME structure parses with (JMAP, Sieve body).

In:   nothing (constants).
Out:  :data:`CAPPED_POLICY`: ``policy.default`` that parses at most :data:`HEADER_VALUE_CAP`
      characters of any header value it is asked for. The stdlib header parser takes time growing
      with the square of the encoded-words in a value (issue 11); Content-Type,
      Content-Disposition and Content-Transfer-Encoding never need more. Stored bytes are never
      changed: only what is parsed is cut.
Fails: never.
"""

from __future__ import annotations

from email.policy import EmailPolicy

HEADER_VALUE_CAP = 1024


class _CappedPolicy(EmailPolicy):
    """policy.default, parsing at most HEADER_VALUE_CAP characters of a header value."""

    def header_fetch_parse(self, name, value):
        if isinstance(value, str) and len(value) > HEADER_VALUE_CAP:
            value = value[:HEADER_VALUE_CAP]
        return super().header_fetch_parse(name, value)


CAPPED_POLICY = _CappedPolicy()
