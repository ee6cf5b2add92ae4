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
:class:`FakeResolver` is its in-memory twin for tests: a mapping of names to
per-type answers or to an exception, with a log of the questions asked.
Both are blocking: callers in the gateway run them via ``backend.run``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

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


class FakeResolver:
    """Answers from a table, for tests (and for a stack with no DNS at all).

    ``records`` maps a name to either an exception instance/class (every type
    fails with it) or a mapping ``{rdtype: answers | exception}``. TXT answers
    may be given as ``str`` or ``bytes``. Unknown names answer ``[]`` (NXDOMAIN).
    ``queries`` records every (name, rdtype) asked, in order.
    """

    def __init__(self, records: Mapping[str, object] | None = None):
        self.records: dict[str, object] = {}
        self.queries: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        for name, value in (records or {}).items():
            self.records[_norm(name)] = value

    def add(self, name: str, rdtype: str, *answers) -> None:
        with self._lock:
            entry = self.records.setdefault(_norm(name), {})
            if not isinstance(entry, dict):
                entry = self.records[_norm(name)] = {}
            entry.setdefault(rdtype, []).extend(answers)

    def fail(self, name: str, rdtype: str | None = None, exc: Exception | None = None) -> None:
        exc = exc or DnsTempError(f"SERVFAIL {name}")
        with self._lock:
            if rdtype is None:
                self.records[_norm(name)] = exc
            else:
                entry = self.records.setdefault(_norm(name), {})
                entry[rdtype] = exc

    def lookup(self, name: str, rdtype: str) -> list:
        key = _norm(name)
        with self._lock:
            self.queries.append((key, rdtype))
            entry = self.records.get(key)
        if entry is None:
            return []
        if isinstance(entry, BaseException) or (isinstance(entry, type) and issubclass(entry, BaseException)):
            raise entry
        answers = entry.get(rdtype, [])
        if isinstance(answers, BaseException) or (isinstance(answers, type) and issubclass(answers, BaseException)):
            raise answers
        if rdtype == "TXT":
            return [a.encode() if isinstance(a, str) else bytes(a) for a in answers]
        if rdtype == "MX":
            return [(int(p), _norm(h)) for p, h in answers]
        return list(answers)


def resolver_for(settings):
    """The production resolver for these settings."""
    return DnsResolver.from_settings(settings)
