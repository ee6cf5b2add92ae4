"""The one DNS seam of the trust checks (SPF, DKIM, DMARC, ARC, DNSBL).

In:   a name and a record type (``TXT``, ``A``, ``AAAA``, ``MX``, ``PTR``).
Out:  ``resolver.lookup(name, rdtype) -> list``:
        TXT        -> list[bytes]   one item per record, its strings joined (RFC 7208 §3.3)
        A / AAAA   -> list[str]     addresses
        MX         -> list[tuple[int, str]]  (preference, exchange without the trailing dot)
        PTR        -> list[str]     names without the trailing dot
      An empty list means "no such data" (NXDOMAIN or NODATA): a definite answer.
Fails: :class:`DnsTempError` when the answer could not be had (timeout, SERVFAIL,
      no reachable name server). Callers turn that into ``temperror`` — never
      into a reject.

:class:`DnsResolver` is dnspython with a bounded lifetime per lookup
(``POSTERN_DNS_TIMEOUT``, name servers from ``POSTERN_DNS_NAMESERVERS``).
It is blocking: callers in the gateway run it via ``backend.run``. (Its test double,
``FakeResolver``, lives in ``tests/fakes.py``.)
"""

from __future__ import annotations

import threading

RDTYPES = ("TXT", "A", "AAAA", "MX", "PTR")


class DnsTempError(Exception):
    """The lookup failed in a way a retry may fix (RFC 7208 §2.6.6, RFC 7489 §6.6.3)."""


def _norm(name: str) -> str:
    return name.rstrip(".").lower()


class DnsResolver:
    """dnspython, one Resolver object, each lookup bounded by ``timeout`` seconds."""

    def __init__(self, timeout: float = 5.0, nameservers: tuple[str, ...] = ()):
        import dns.resolver

        self.timeout = timeout
        if nameservers:
            from postern.dns import parse_nameserver  # the one rule for ip / ip:port / [v6]:port / v6

            r = dns.resolver.Resolver(configure=False)
            r.nameservers = [parse_nameserver(ns) for ns in nameservers]
        else:
            try:
                r = dns.resolver.Resolver()
            except dns.resolver.NoResolverConfiguration:  # no /etc/resolv.conf: every lookup temperrors
                r = dns.resolver.Resolver(configure=False)
        r.lifetime = timeout
        r.timeout = min(timeout, 2.0)
        self._resolver = r
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings) -> DnsResolver:
        return cls(timeout=settings.dns_timeout, nameservers=tuple(settings.dns_nameservers))

    def lookup(self, name: str, rdtype: str) -> list:
        import dns.exception
        import dns.name
        import dns.resolver

        try:
            answer = self._resolver.resolve(_norm(name) + ".", rdtype, lifetime=self.timeout, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except (dns.exception.Timeout, dns.resolver.NoNameservers, dns.resolver.LifetimeTimeout) as exc:
            raise DnsTempError(f"{rdtype} {name}: {exc.__class__.__name__}") from None
        except dns.exception.DNSException as exc:  # malformed name and the like: no usable answer
            if isinstance(exc, dns.name.NameTooLong | dns.name.EmptyLabel | dns.name.LabelTooLong):
                return []
            raise DnsTempError(f"{rdtype} {name}: {exc.__class__.__name__}") from None
        out: list = []
        for rd in answer:
            if rdtype == "TXT":
                out.append(b"".join(rd.strings))
            elif rdtype in ("A", "AAAA"):
                out.append(rd.address)
            elif rdtype == "MX":
                out.append((int(rd.preference), rd.exchange.to_text(omit_final_dot=True)))
            elif rdtype == "PTR":
                out.append(rd.target.to_text(omit_final_dot=True))
        return out


def resolver_for(settings):
    """The production resolver for these settings."""
    return DnsResolver.from_settings(settings)
