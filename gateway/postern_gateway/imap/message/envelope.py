"""ENVELOPE (RFC 3501 §7.4.2) and its address structures.

In:   a header block (a whole message works too), or one address-list field value.
Out:  :func:`envelope` -> the ENVELOPE in wire form; :func:`addresses` -> RFC 3501 address
      tuples; :func:`envelope_of` for a :class:`~postern.mail.header.Header` already split
      (an encapsulated message's, for BODYSTRUCTURE).
Fails: never: a field that cannot be read degrades to NIL. Encoded-words are left raw
      (RFC 3501 §7.4.2). Addresses are read by :mod:`postern.mail.addresses` (the one address
      parser, linear, 8 KiB per field), so ENVELOPE shows what the SMTP checks saw.
"""

from __future__ import annotations

from postern.mail.addresses import Group, parse_address_list
from postern.mail.header import Header

from ..wire import NIL, format_list, quote

__all__ = ["Address", "MISSING_DOMAIN", "addresses", "envelope", "envelope_of"]

MISSING_DOMAIN = b"MISSING_DOMAIN"  # host for an address without one (Dovecot's choice)


Address = tuple  # (name, adl, mailbox, host), each bytes or None: RFC 3501 §7.4.2 address


def _addr(a: Address) -> bytes:
    return b"(" + b" ".join(quote(x) for x in a) + b")"


def _mailbox_tuple(m) -> Address:
    return (m.name, m.route, m.local, m.domain if m.domain else MISSING_DOMAIN)


def addresses(value: bytes | None) -> list[Address]:
    """Addresses of one raw address-list field value, RFC 3501 §7.4.2 style.

    Read by :func:`postern.mail.addresses.parse_address_list` (the one address
    parser); each is ``(name, adl, mailbox, host)`` (bytes or None, encoded-words
    left raw; a missing host is MISSING_DOMAIN, as Dovecot). A group is a start
    marker ``(None, None, b"group name", None)``, its members, and an end marker
    ``(None, None, None, None)``. Never raises.
    """
    out: list[Address] = []
    for item in parse_address_list(value):
        if isinstance(item, Group):
            out.append((None, None, item.name, None))
            out += [_mailbox_tuple(m) for m in item.members]
            out.append((None, None, None, None))
        else:
            out.append(_mailbox_tuple(item))
    return out


def _address_list(value: bytes | None) -> list[bytes]:
    """RFC 3501 §7.4.2 address structures in wire form, with group start/end markers."""
    return [_addr(a) for a in addresses(value)]


def _nil_list(items: list[bytes]) -> bytes:
    return b"(" + b"".join(items) + b")" if items else NIL


def _addresses_of(h: Header, name: bytes) -> list[bytes]:
    # a field given more than once (malformed, RFC 5322 §3.6) contributes all its
    # addresses, as Dovecot answers
    out: list[bytes] = []
    for value in h.get_all(name):
        out += _address_list(value)
    return out


def envelope_of(h: Header) -> bytes:
    """ENVELOPE of a split header section."""
    from_ = _nil_list(_addresses_of(h, b"from"))
    # RFC 3501 §7.4.2: sender and reply-to default to from when absent or empty
    sender = _addresses_of(h, b"sender")
    reply_to = _addresses_of(h, b"reply-to")
    items = [
        quote(h.get(b"date")),
        quote(h.get(b"subject")),
        from_,
        _nil_list(sender) if sender else from_,
        _nil_list(reply_to) if reply_to else from_,
        _nil_list(_addresses_of(h, b"to")),
        _nil_list(_addresses_of(h, b"cc")),
        _nil_list(_addresses_of(h, b"bcc")),
        quote(h.get(b"in-reply-to")),
        quote(h.get(b"message-id")),
    ]
    return format_list(items)


def envelope(header: bytes) -> bytes:
    """ENVELOPE (RFC 3501 §7.4.2) of a header block (a whole message works too)."""
    return envelope_of(Header(header))
