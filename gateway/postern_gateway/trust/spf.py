"""SPF (RFC 7208) for the MAIL FROM and HELO identities, over our DNS seam.

In:   the client IP the connection came from (the NLB preserves it), the
      MAIL FROM address ("" for the null reverse-path), the HELO/EHLO name,
      and a resolver (:mod:`postern_gateway.trust.dns`).
Out:  :func:`check_mailfrom` / :func:`check_helo` -> :class:`SpfResult` with
      ``result`` in {pass, fail, softfail, neutral, none, temperror, permerror}
      (RFC 7208 §2.6) and the domain that was checked.
Fails: never raises for DNS trouble: a lookup that times out or SERVFAILs is
      ``temperror`` (RFC 7208 §2.6.6); the caller decides what that costs
      (Postern: nothing but the header; no reject on SPF alone).

The evaluation is pyspf's. pyspf looks names up through its module-level
``DNSLookup`` function; we replace it once with a dispatcher that answers
from the resolver bound to the current thread (set for the length of one
check) and falls back to pyspf's own lookup otherwise. Checks are blocking
and run on the gateway's bounded executor (``backend.run``), one check per
thread at a time, so the thread-local binding is exact.
"""

from __future__ import annotations

import ipaddress
import threading
from dataclasses import dataclass

import spf as pyspf

from .dns import DnsTempError

_local = threading.local()
_original_lookup = pyspf.DNSLookup

# RFC 7208 §4.6.4: at most 10 DNS-querying terms; pyspf enforces it. Our own
# bound is the total time of one check (pyspf "querytime", RFC 7208 §4.6.4 SHOULD 20 s).
DEFAULT_QUERYTIME = 20.0


def _dispatch(name, qtype, strict=True, timeout=30):
    resolver = getattr(_local, "resolver", None)
    if resolver is None:
        return _original_lookup(name, qtype, strict, timeout)
    try:
        answers = resolver.lookup(str(name), qtype)
    except DnsTempError as exc:
        raise pyspf.TempError(f"DNS {exc}") from None
    key = (str(name), qtype)
    if qtype in ("TXT", "SPF"):
        return [(key, (a,)) for a in answers]
    return [(key, a) for a in answers]


pyspf.DNSLookup = _dispatch


@dataclass(frozen=True)
class SpfResult:
    result: str  # pass | fail | softfail | neutral | none | temperror | permerror
    identity: str  # "mailfrom" or "helo"
    domain: str  # the domain whose policy was evaluated
    explanation: str = ""

    @property
    def passed(self) -> bool:
        return self.result == "pass"


def _valid_ip(ip: str) -> bool:
    try:
        ipaddress.ip_address(ip)
        return True
    except ValueError:
        return False


def _run(resolver, ip: str, sender: str, helo: str, identity: str, domain: str, querytime: float) -> SpfResult:
    if not _valid_ip(ip):
        return SpfResult("none", identity, domain, "no client IP")
    _local.resolver = resolver
    try:
        q = pyspf.query(i=ip, s=sender, h=helo, querytime=querytime)
        result, _code, explanation = q.check()
    except pyspf.TempError as exc:  # raised outside check() (rare)
        result, explanation = "temperror", str(exc)
    except pyspf.PermError as exc:
        result, explanation = "permerror", str(exc)
    finally:
        _local.resolver = None
    return SpfResult(str(result), identity, domain, str(explanation))


def _helo_domain(helo: str) -> str | None:
    """The HELO identity is checked only when it is a domain name (RFC 7208 §2.3)."""
    h = (helo or "").strip().rstrip(".")
    if not h or h.startswith("[") or "." not in h or _valid_ip(h):
        return None
    return h.lower()


def check_helo(resolver, ip: str, helo: str, querytime: float = DEFAULT_QUERYTIME) -> SpfResult:
    """RFC 7208 §2.3: the HELO identity, as ``postmaster@<helo>``."""
    h = _helo_domain(helo)
    if h is None:
        return SpfResult("none", "helo", (helo or "")[:255], "HELO is not a domain name")
    return _run(resolver, ip, "", h, "helo", h, querytime)


def check_mailfrom(resolver, ip: str, mail_from: str, helo: str, querytime: float = DEFAULT_QUERYTIME) -> SpfResult:
    """RFC 7208 §2.4: the MAIL FROM identity; for the null reverse-path, ``postmaster@<helo>``."""
    if not mail_from:
        h = _helo_domain(helo)
        if h is None:
            return SpfResult("none", "mailfrom", "", "null sender and HELO is not a domain name")
        return _run(resolver, ip, f"postmaster@{h}", h, "mailfrom", h, querytime)
    if "@" not in mail_from:
        return SpfResult("none", "mailfrom", "", "sender has no domain")
    domain = mail_from.rsplit("@", 1)[1].rstrip(".").lower()
    return _run(resolver, ip, mail_from, _helo_domain(helo) or "unknown", "mailfrom", domain, querytime)
