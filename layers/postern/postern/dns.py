"""DNS for outbound delivery: a small seam over dnspython.

In:   :class:`~postern.config.Settings` (``dns_timeout`` bounds every lookup;
      ``dns_nameservers`` = ``ip[:port],...`` or empty for the system's).
Out:  :class:`Resolver` with ``mx(domain)`` (a :class:`MxAnswer`),
      ``addresses(host)`` and ``txt(name)``. Tests inject any object with the
      same three methods (see :class:`StaticResolver`), or point
      ``POSTERN_DNS_NAMESERVERS`` at a loopback DNS server they run.
Fails: :class:`DnsPermanent` for NXDOMAIN and names under ``.invalid``
      (RFC 6761 §6.4: never resolves, so no point retrying);
      :class:`DnsTransient` for SERVFAIL, timeouts and no reachable server.
      "No records of that type" is not an error: an empty answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver


class DnsError(Exception):
    permanent = False


class DnsPermanent(DnsError):
    permanent = True


class DnsTransient(DnsError):
    permanent = False


@dataclass(frozen=True)
class MxAnswer:
    hosts: tuple[tuple[int, str], ...] = ()  # (preference, host) sorted by preference
    null: bool = False  # RFC 7505: a single "0 ." record
    implicit: bool = False  # no MX records: the domain itself is the host (RFC 5321 §5.1)


def is_invalid_name(name: str) -> bool:
    """RFC 6761 §6.4: ``invalid`` and names under it never resolve."""
    n = name.rstrip(".").lower()
    return n == "invalid" or n.endswith(".invalid")


def parse_nameserver(spec: str):
    """One ``POSTERN_DNS_NAMESERVERS`` item -> a dnspython name server: ``ip``, ``ip:port``,
    ``[v6]:port`` or a bare IPv6 address (more than one colon: no port; ``2001:db8::53``). The one
    rule for the outbound resolver here and the trust checks' (postern_gateway.trust.dns)."""
    host, port = spec, 53
    if spec.startswith("["):  # [v6]:port
        host, _, rest = spec[1:].partition("]")
        if rest.startswith(":"):
            port = int(rest[1:])
    elif spec.count(":") == 1:
        host, p = spec.split(":")
        port = int(p)
    return dns.nameserver.Do53Nameserver(host, port)


def _mx_from_records(records) -> MxAnswer:
    hosts = sorted(((int(r.preference), r.exchange.to_text(omit_final_dot=True).lower()) for r in records),
                   key=lambda x: (x[0], x[1]))
    # RFC 7505 §3: a null MX is one record, preference 0, exchange "."
    if len(hosts) == 1 and hosts[0][1] in ("", "."):
        return MxAnswer(null=True)
    return MxAnswer(hosts=tuple(h for h in hosts if h[1] not in ("", ".")))


class Resolver:
    """dnspython with our timeouts and nameservers."""

    def __init__(self, settings, resolver: dns.resolver.Resolver | None = None):
        if resolver is None:
            if settings.dns_nameservers:
                resolver = dns.resolver.Resolver(configure=False)
                resolver.nameservers = [parse_nameserver(s) for s in settings.dns_nameservers]
            else:
                resolver = dns.resolver.Resolver()
        resolver.timeout = settings.dns_timeout
        resolver.lifetime = settings.dns_timeout
        # Answers are cached per process for their TTL (a warm Lambda reuses them);
        # SERVFAIL and timeouts are never cached.
        resolver.cache = dns.resolver.LRUCache(1024)
        self._r = resolver

    def _query(self, name: str, rdtype: str):
        if is_invalid_name(name):
            raise DnsPermanent(f"{name}: reserved .invalid name (RFC 6761)")
        try:
            return list(self._r.resolve(name, rdtype, search=False))
        except dns.resolver.NXDOMAIN:
            raise DnsPermanent(f"{name}: no such domain (NXDOMAIN)") from None
        except dns.resolver.NoAnswer:
            return []
        except dns.resolver.NoNameservers as exc:  # SERVFAIL/REFUSED from every server
            raise DnsTransient(f"{name}: DNS server failure ({exc.__class__.__name__})") from None
        except dns.exception.Timeout:
            raise DnsTransient(f"{name}: DNS timeout") from None
        except dns.exception.DNSException as exc:
            raise DnsTransient(f"{name}: DNS error {exc.__class__.__name__}") from None

    def mx(self, domain: str) -> MxAnswer:
        records = self._query(domain, "MX")
        if not records:
            return MxAnswer(hosts=((0, domain.lower()),), implicit=True)
        return _mx_from_records(records)

    def addresses(self, host: str) -> list[str]:
        """AAAA and A addresses of ``host`` (A first: IPv4 is what Lambda egress has)."""
        out: list[str] = []
        errors: list[DnsError] = []
        for rdtype in ("A", "AAAA"):
            try:
                out += [r.to_text() for r in self._query(host, rdtype)]
            except DnsPermanent:
                raise
            except DnsTransient as exc:
                errors.append(exc)
        if not out and errors:
            raise errors[0]
        return out

    def lookup(self, name: str, rdtype: str) -> list[str]:
        """Any record type as text (TXT: its strings joined); [] for none; DnsError when DNS fails
        (NXDOMAIN is DnsPermanent). ``postern doctor`` reads the published records with it."""
        records = self._query(name, rdtype)
        if rdtype == "TXT":
            return [b"".join(r.strings).decode("utf-8", "replace") for r in records]
        return [r.to_text() for r in records]

    def txt(self, name: str) -> list[str]:
        try:
            records = self._query(name, "TXT")
        except DnsPermanent:
            return []
        return [b"".join(r.strings).decode("utf-8", "replace") for r in records]


@dataclass
class StaticResolver:
    """An in-memory resolver for unit tests: ``mx_records={domain: [(pref, host)]}``,
    ``a_records={host: [ip]}``, ``txt_records={name: [text]}``; ``failures={name: exc}``."""

    mx_records: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    a_records: dict[str, list[str]] = field(default_factory=dict)
    txt_records: dict[str, list[str]] = field(default_factory=dict)
    failures: dict[str, DnsError] = field(default_factory=dict)
    existing: set[str] = field(default_factory=set)  # names that exist without records (NoAnswer)

    def _check(self, name: str) -> None:
        n = name.lower().rstrip(".")
        if is_invalid_name(n):
            raise DnsPermanent(f"{name}: reserved .invalid name (RFC 6761)")
        if n in self.failures:
            raise self.failures[n]

    def _exists(self, n: str) -> bool:
        return n in self.mx_records or n in self.a_records or n in self.txt_records or n in self.existing

    def mx(self, domain: str) -> MxAnswer:
        n = domain.lower().rstrip(".")
        self._check(n)
        if not self._exists(n):
            raise DnsPermanent(f"{domain}: no such domain (NXDOMAIN)")
        recs = self.mx_records.get(n)
        if not recs:
            return MxAnswer(hosts=((0, n),), implicit=True)
        hosts = sorted(((p, h.rstrip(".").lower()) for p, h in recs), key=lambda x: (x[0], x[1]))
        if len(hosts) == 1 and hosts[0][1] == "":
            return MxAnswer(null=True)
        return MxAnswer(hosts=tuple(hosts))

    def addresses(self, host: str) -> list[str]:
        n = host.lower().rstrip(".")
        self._check(n)
        if not self._exists(n):
            raise DnsPermanent(f"{host}: no such domain (NXDOMAIN)")
        return list(self.a_records.get(n, []))

    def txt(self, name: str) -> list[str]:
        n = name.lower().rstrip(".")
        try:
            self._check(n)
        except DnsPermanent:
            return []
        return list(self.txt_records.get(n, []))
