"""Optional DNSBL check of the connecting client IP (RFC 5782), off unless zones are set.

In:   the client IP, the zones (``POSTERN_DNSBL_ZONES``, e.g. ``zen.spamhaus.org``), a
      resolver (:mod:`postern_gateway.trust.dns`).
Out:  :func:`listed` -> :class:`Listing` for the first zone that lists the IP, or None.
      A listing is an A record in 127.0.0.0/8 for ``<reversed ip>.<zone>`` (IPv4 octets
      reversed, IPv6 nibbles reversed: RFC 5782 §2.1, §2.4); the TXT record, when there is
      one, is the reason shown to the client (sanitised). Answers in 127.255.255.0/24 are
      the zone's own error codes (e.g. Spamhaus "query refused") and are *not* listings.
Fails: never raises: a lookup that fails counts as "not listed" (fail open) and is logged.
      Loopback and private addresses are never looked up. Blocking: ``backend.run``.

The SMTP MX listener refuses a listed client with ``554 5.7.1`` at connect (RFC 5321
§3.1 allows a 554 greeting); submission and mailbox ports are not checked (their users
authenticate, and may connect from dynamic addresses that lists carry).
"""

from __future__ import annotations

import ipaddress
import logging
import re
from dataclasses import dataclass

from .dns import DnsTempError

log = logging.getLogger("postern.trust")


@dataclass(frozen=True)
class Listing:
    zone: str
    answer: str
    reason: str = ""


def query_name(ip: str, zone: str) -> str | None:
    try:
        a = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if a.version == 4:
        rev = ".".join(reversed(str(a).split(".")))
    else:
        rev = ".".join(reversed(a.exploded.replace(":", "")))
    return f"{rev}.{zone.strip('.')}"


def _checkable(ip: str) -> bool:
    try:
        a = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return not (a.is_loopback or a.is_private or a.is_link_local or a.is_unspecified)


def listed(resolver, ip: str, zones) -> Listing | None:
    if not zones or not _checkable(ip):
        return None
    for zone in zones:
        name = query_name(ip, zone)
        if name is None:
            return None
        try:
            answers = resolver.lookup(name, "A")
        except DnsTempError as exc:
            log.warning("dnsbl lookup failed zone=%s ip=%s: %s (not listed)", zone, ip, exc)
            continue
        hits = [a for a in answers if a.startswith("127.") and not a.startswith("127.255.255.")]
        if not hits:
            continue
        reason = ""
        try:
            txt = resolver.lookup(name, "TXT")
            if txt:
                reason = re.sub(r"[^\x20-\x7e]", "", txt[0].decode("ascii", "replace"))[:200]
        except DnsTempError:
            pass
        log.warning("dnsbl listed zone=%s ip=%s answer=%s", zone, ip, hits[0])
        return Listing(zone, hits[0], reason)
    return None
