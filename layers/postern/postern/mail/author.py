"""Who a message says it is from, and the header rules that keep every reader agreeing on it.

In:   a :class:`~postern.mail.header.Header` (the one parser: the SMTP checks,
      DMARC, DKIM alignment and IMAP's ENVELOPE all read From: through it).
Out:  :func:`author` -> :class:`Author` (the From: fields and their mailboxes);
      :func:`submission_problem` and :func:`mx_problem` -> None when the
      header may pass that port, else the reason (text for the reply).
Fails: never.

The rules (issue 11, finding 5: a check that sees one header and a reader
that sees another can be talked around):
* ``From :`` (WSP before the colon, RFC 5322 §4.5) IS a From: field, here
  as in every reader that goes through :mod:`postern.mail.header`.
* Submission (RFC 6409 §8 lets the MSA refuse what it cannot fix): a header
  section that starts with a continuation line, a line that is not a field
  (no colon, or a bad field name), more fields than the parser reads, and
  anything but exactly one From: whose every mailbox has a domain are
  refused; the caller then checks that every mailbox belongs to the user.
* MX (RFC 7489 §6.6.1: a receiver may reject what it cannot evaluate):
  more than one From: field, or a From: without a readable mailbox, is
  refused, so that DMARC always judges the author the user will be shown.
  A message without From: passes (there is no author to impersonate).
"""

from __future__ import annotations

from dataclasses import dataclass

from .addresses import Mailbox, mailboxes, parse_address_list
from .header import Header

__all__ = ["Author", "author", "submission_problem", "mx_problem"]


@dataclass(frozen=True, slots=True)
class Author:
    fields: int  # number of From: fields
    mailboxes: tuple[Mailbox, ...]  # every mailbox named by them (group members included)

    @property
    def readable(self) -> tuple[Mailbox, ...]:
        """The mailboxes with a domain (the ones DMARC can judge and a reader will show)."""
        return tuple(m for m in self.mailboxes if m.domain)

    @property
    def domains(self) -> tuple[str, ...]:
        """Lower-cased author domains, each once, in order (RFC 7489 §3.1, §6.6.1)."""
        out: list[str] = []
        for m in self.readable:
            d = m.domain.decode("utf-8", "replace").rstrip(".").lower()
            if d and d not in out:
                out.append(d)
        return tuple(out)


def author(header: Header) -> Author:
    """The From: fields of ``header`` and their mailboxes."""
    values = header.get_all(b"from")
    boxes: list[Mailbox] = []
    for v in values:
        boxes += mailboxes(parse_address_list(v))
    return Author(header.count(b"from"), tuple(boxes))


def submission_problem(header: Header, a: Author | None = None) -> str | None:
    """Why a submitted header section is refused, or None. ``a`` is ``author(header)`` if known."""
    if header.faults:
        return header.faults[0]
    a = a or author(header)
    if a.fields == 0:
        return "no From: field"
    if a.fields > 1:
        return "more than one From: field"
    if not a.mailboxes or len(a.readable) != len(a.mailboxes):
        return "an address in From: is not readable"
    return None


def mx_problem(header: Header, a: Author | None = None) -> str | None:
    """Why a header section is refused on the MX port, or None."""
    a = a or author(header)
    if a.fields > 1:
        return "more than one From: field"
    if a.fields == 1 and not a.readable:
        return "no readable address in From:"
    return None
