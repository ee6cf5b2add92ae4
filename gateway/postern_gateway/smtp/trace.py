"""Header lines the gateway writes: Received (trace) and, for submission, Message-ID/Date.

In:   facts about one SMTP transaction (client address, HELO name, TLS, AUTH,
      queue id, recipients, time) or the raw bytes of a submitted message.
Out:  :func:`received` -> one ``Received:`` field as CRLF-terminated text
      (RFC 5321 §4.4, with-protocol names from RFC 3848 / RFC 6531 §3.7.3);
      :func:`complete_submission` -> the bytes with ``Message-ID:`` and/or
      ``Date:`` lines PREPENDED when the header block lacks them (RFC 6409 §8.3,
      Postfix cleanup does the same). Nothing here re-serialises a message:
      every other byte stays as it arrived.
      :func:`read_header` -> the message's header section as the one view
      (:class:`postern.mail.header.Header`) that every check reads.
Fails: :class:`HeaderTooLarge` for a header section over ``MAX_HEADER_BLOCK``
      (the caller refuses the message); otherwise never: a malformed header
      section is still a list of lines, and a field it lacks is lacking.

No DNS here: the client is named by its address literal, as RFC 5321 §4.4
allows, and our own name is ``settings.hostname``.
"""

from __future__ import annotations

import email.utils
import ipaddress
import re
import secrets
from datetime import datetime, timezone

from postern.mail.header import Header

_SAFE_HELO = re.compile(r"[^A-Za-z0-9.\-:\[\]_]")
_HELO_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9\-_]*[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"(?=.{{1,253}}$){_HELO_LABEL}(?:\.{_HELO_LABEL})*")
_LITERAL = re.compile(r"\[(?:IPv6:)?[0-9A-Fa-f:.]+\]")


def address_literal(ip: str) -> str:
    """RFC 5321 §4.1.3: ``[192.0.2.1]`` or ``[IPv6:2001:db8::1]``."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return "[unknown]"
    if addr.version == 6:
        if addr.ipv4_mapped is not None:
            return f"[{addr.ipv4_mapped}]"
        return f"[IPv6:{addr.compressed}]"
    return f"[{addr}]"


def helo_name(helo: str) -> str:
    """The client's HELO argument made safe for a header (it is client-controlled)."""
    h = (helo or "").strip()[:255]
    if _DOMAIN.fullmatch(h) or _LITERAL.fullmatch(h):
        return h
    cleaned = _SAFE_HELO.sub("?", h)[:64]
    return f"unknown (helo={cleaned})" if cleaned else "unknown"


def with_protocol(*, esmtp: bool, tls: bool, auth: bool, utf8: bool) -> str:
    """RFC 3848 §2 (ESMTP[S][A]) and RFC 6531 §3.7.3 (UTF8SMTP[S][A])."""
    if utf8:
        base = "UTF8SMTP"
    elif esmtp:
        base = "ESMTP"
    else:
        return "SMTP"  # RFC 3848 defines no TLS/AUTH variants for plain SMTP
    return base + ("S" if tls else "") + ("A" if auth else "")


def rfc5322_date(ts: float) -> str:
    return email.utils.format_datetime(datetime.fromtimestamp(ts, timezone.utc))


def received(*, hostname: str, client_ip: str, helo: str, queue_id: str, when: float, recipients, esmtp=True,
             tls: bool = False, tls_info: str = "", auth: bool = False, utf8: bool = False) -> str:
    """One Received field, folded, CRLF-terminated (RFC 5321 §4.4, RFC 5322 §3.6.7)."""
    lit = address_literal(client_ip)
    lines = [f"Received: from {helo_name(helo)} ({lit})"]
    if tls and tls_info:
        lines.append(f"\t(using {tls_info})")
    proto = with_protocol(esmtp=esmtp, tls=tls, auth=auth, utf8=utf8)
    lines.append(f"\tby {hostname} (Postern) with {proto} id {queue_id}")
    rcpts = list(recipients)
    date = rfc5322_date(when)
    if len(rcpts) == 1:  # "for" only with one recipient: listing several would disclose Bcc
        lines.append(f"\tfor <{rcpts[0]}>; {date}")
    else:
        lines[-1] += ";"
        lines.append(f"\t{date}")
    return "\r\n".join(lines) + "\r\n"


MAX_HEADER_BLOCK = 1024 * 1024  # checks run on the event loop: never read megabytes of "headers"


class HeaderTooLarge(ValueError):
    """No end of the header section within MAX_HEADER_BLOCK bytes."""


def read_header(raw: bytes) -> Header:
    """The header section of ``raw`` (where :mod:`postern.mail.header` says it ends; a message
    without a body is all header). Raises HeaderTooLarge beyond MAX_HEADER_BLOCK."""
    header = Header(raw)
    if header.end > MAX_HEADER_BLOCK:
        raise HeaderTooLarge(f"header section larger than {MAX_HEADER_BLOCK} bytes")
    return header


def new_message_id(hostname: str, queue_id: str) -> str:
    return f"<{queue_id}.{secrets.token_hex(4)}@{hostname}>"


def complete_submission(raw: bytes, *, hostname: str, queue_id: str, when: float,
                        header: Header | None = None) -> tuple[bytes, list[str]]:
    """Prepend ``Message-ID:`` / ``Date:`` when missing; return (bytes, names of the fields added).
    ``header`` is ``read_header(raw)`` when the caller has it already."""
    if header is None:
        header = Header(raw)
    added: list[str] = []
    prefix = b""
    if not header.count(b"message-id"):
        prefix += f"Message-ID: {new_message_id(hostname, queue_id)}\r\n".encode("ascii")
        added.append("Message-ID")
    if not header.count(b"date"):
        prefix += f"Date: {rfc5322_date(when)}\r\n".encode("ascii")
        added.append("Date")
    return prefix + raw, added
