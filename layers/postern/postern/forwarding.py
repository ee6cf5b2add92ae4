"""Forwarding mail we did not write: the envelope sender, the one permitted edit, DKIM and ARC.

In:   an :class:`~postern.envelope.OutboundJob` with a recipient that came
      from one of our addresses (an alias, a catch-all or a Sieve
      ``redirect`` forwarding out, or a bounce relayed through our SRS
      address), the canonical message, the transport's name, a predicate
      saying which domains are ours, and where the :class:`~postern.srs.Srs`
      comes from (None when no SRS secret is configured).
Out:  :func:`plan` -> :class:`ForwardPlan` or None (not a forward):
        ``envelope_from``: the SRS address of the forwarding domain when the
            sender's domain is not ours (so the next hop's SPF check sees our
            domain), else the sender as it was (ours already, or ``<>``);
        ``rewrite_from``: True when the transport is ``ses`` and the
            ``From:`` (or ``Sender:``) domain is not ours: SES sends only
            from verified identities;
        ``domain``/``address``: the forwarding domain and address (the
            alias), which sign, seal, and stand in for the author.
      :func:`rewrite_originator` -> the message with ``From:`` replaced in
      place by ``"<author> via <domain>" <address>``, the original ``From:``
      value moved to a new ``Reply-To:`` right after it (unless the message
      has one: the author's choice stands), and a foreign ``Sender:``
      replaced by the forwarding address too (SES checks it as well). This
      is the one edit Postern ever makes to received bytes; every other byte
      stays as received.
      :func:`arc_seal` -> the ARC set (``ARC-Seal``, ``ARC-Message-Signature``,
      ``ARC-Authentication-Results``, RFC 8617) to prepend, signed with the
      forwarding domain's RSA DKIM key, recording the Authentication-Results
      our MX wrote when the message arrived (in the trace lines Postern
      prepends, never one found in the received bytes).
Fails: never raises for a message it cannot improve: no forwarding address
      -> no plan; no RSA key for the domain, or no Authentication-Results of
      ours (mail that did not come in through our MX) -> no ARC set (b"").

Why ARC: a forward breaks SPF, and the From: rewrite breaks the author's
DKIM signature; the ARC set carries the results we saw on arrival (SPF,
DKIM, DMARC) to the next receiver under our signature (RFC 8617 §1).
Forged Authentication-Results fields lower in the message that claim our
authserv-id (RFC 8601 §5) are left out of what the seal records: dkimpy
would otherwise merge them into the ARC-Authentication-Results. They stay in
the message (never rewritten), and ARC-Message-Signature does not cover
Authentication-Results fields, so the seal verifies on the real bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formataddr

import dkim as dkimpy

from .mail.addresses import mailboxes, parse_address_list
from .mail.header import Header, split, unfold
from .srs import Srs

log = logging.getLogger(__name__)

AR = b"authentication-results"


@dataclass(frozen=True)
class ForwardPlan:
    domain: str  # the forwarding domain: signs (DKIM) and seals (ARC)
    address: str  # the forwarding address: the alias, or postmaster@ for a relayed bounce
    envelope_from: str  # what goes in MAIL FROM (or SES's FromEmailAddress)
    rewrite_from: bool  # replace From:/Sender: in place (SES demands a verified author)


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower() if "@" in address else ""


def _foreign_author_fields(message: bytes, is_local: Callable[[str], bool]) -> bool:
    """Does From: or Sender: name a domain that is not ours (or no domain at all)?"""
    h = Header(message)
    for name in (b"from", b"sender"):
        for box in mailboxes(h.addresses(name)):
            d = box.domain.decode("utf-8", "replace").rstrip(".").lower() if box.domain else ""
            if not d or not is_local(d):
                return True
    return False


def plan(job, message: bytes, transport: str, is_local: Callable[[str], bool],
         srs_source: Callable[[], Srs | None]) -> ForwardPlan | None:
    """What forwarding ``job`` takes, or None when it is not a forward. ``srs_source()`` is
    asked only when the sender needs rewriting (it may read a secret)."""
    origin = next((o for o in job.original_recipients or () if o and is_local(_domain(o))), "")
    if not origin:
        return None  # mail of our own users (submission) or our own reports: nothing to rewrite
    domain = _domain(origin)
    address = f"postmaster@{domain}" if Srs.is_srs(origin) else origin
    sender = job.mail_from
    envelope_from = sender
    if sender and not is_local(_domain(sender)):
        srs = srs_source()
        if srs is not None:
            envelope_from = srs.forward(sender, domain)
        else:  # SES needs a verified sending address; SMTP hops will see SPF fail
            envelope_from = address if transport == "ses" else sender
            log.warning("forwarding %s from %s without SRS (no POSTERN_SRS_SECRET[_ID])", job.queue_id, sender)
    rewrite = transport == "ses" and _foreign_author_fields(message, is_local)
    return ForwardPlan(domain, address, envelope_from, rewrite)


def _display(value: bytes) -> str:
    """Who the original From: named, for the display name of the new one."""
    boxes = mailboxes(parse_address_list(value))
    if not boxes:
        return value.decode("utf-8", "replace")[:200]
    first = boxes[0]
    if first.name:
        from .mail.encoded import decode_words

        return decode_words(first.name).strip('" ') or first.addr_spec
    return first.addr_spec


def rewrite_originator(message: bytes, address: str, domain: str) -> bytes:
    """``From:`` replaced in place by the forwarding address, the original kept in ``Reply-To:``."""
    sp = split(message)
    fields = sp.fields
    froms = [f for f in fields if f.name == b"from"]
    has_reply_to = any(f.name == b"reply-to" for f in fields)
    edits: list[tuple[int, int, bytes]] = []  # (start, end, replacement), non-overlapping
    if froms:
        f = froms[0]
        original = message[f.value_start:f.end]  # as written: folding and encoded-words kept
        if not original.endswith(b"\n"):
            original += b"\r\n"
        who = _display(unfold(message, f))
        new = f"From: {formataddr((f'{who} via {domain}', address), charset='utf-8')}\r\n".encode("utf-8")
        if not has_reply_to:
            new += b"Reply-To:" + original
        edits.append((f.start, f.end, new))
    else:  # SES needs an author: name the forwarding address
        edits.append((0, 0, f"From: {address}\r\n".encode("ascii")))
    for f in fields:
        if f.name == b"sender":
            edits.append((f.start, f.end, f"Sender: {address}\r\n".encode("ascii")))
    out = bytearray()
    pos = 0
    for start, end, new in sorted(edits):
        out += message[pos:start] + new
        pos = end
    out += message[pos:]
    return bytes(out)


def _authserv_id(value: bytes) -> bytes:
    return value.split(b";", 1)[0].split(b"(", 1)[0].strip().lower()


def arc_seal(message: bytes, domain: str, keys, authserv_id: str, now: float, trusted_end: int) -> bytes:
    """The ARC set to prepend to ``message`` (b"" when it cannot be made). ``message[:trusted_end]``
    is what Postern itself prepended (its trace lines): only an Authentication-Results field of
    ours found there is believed; every other one claiming our authserv-id is a forgery."""
    key = next((k for k in keys if k.algorithm == "rsa"), None)  # ARC signs with rsa-sha256 only (RFC 8617)
    if key is None:
        log.info("no RSA DKIM key for %s: forwarded mail goes out without an ARC seal", domain)
        return b""
    ours = authserv_id.lower().encode()
    fields = split(message).fields
    ar = [f for f in fields if f.name == AR and _authserv_id(unfold(message, f)) == ours]
    if not ar or ar[0].end > trusted_end:
        log.info("no Authentication-Results of %s from our MX: no ARC seal", authserv_id)
        return b""
    # Keep only the field our MX prepended: the others claiming our authserv-id are forgeries.
    sealed = bytearray()
    pos = 0
    for f in ar[1:]:
        sealed += message[pos:f.start]
        pos = f.end
    sealed += message[pos:]
    try:
        lines = dkimpy.arc_sign(bytes(sealed), key.selector.encode(), domain.encode(), key.private_bytes,
                                authserv_id.encode(), timestamp=int(now), linesep=b"\r\n")
    except dkimpy.DKIMException as exc:
        log.warning("ARC seal for %s failed: %s", domain, exc)
        return b""
    return b"".join(lines)
