"""What the stack offers mail clients: host, ports and TLS modes, written once.

In:   :class:`~postern.config.Settings`: ``hostname`` (GatewayHostname) and the listener ports
      (``POSTERN_*_PORT``; a port of 0 or less is a listener that is off). Deployed, the Lambda
      functions see the defaults, which are the NLB's public ports (25, 587, 465, 143, 993, 110,
      995); the gateway's container ports (1587, ...) are not in their environment. Locally the
      stack's own ports are, so a client pointed at ``make run`` is told what it really offers.
Out:  :func:`offer` -> :class:`Offer`: one :class:`Service` per protocol endpoint, in the order a
      client should prefer them (RFC 8314 §3: implicit TLS first, then STARTTLS), each with its
      RFC 6186 SRV service name. Every client-configuration format (Thunderbird autoconfig, Outlook
      autodiscover, the Apple profile) and ``postern dns``'s SRV records are rendered from this,
      so they cannot disagree about a port or a TLS mode.
Fails: never.

TLS modes: ``tls`` (implicit TLS from the first byte) and ``starttls`` (plain until STARTTLS /
STLS; the stack refuses a login before it unless POSTERN_ALLOW_PLAINTEXT_AUTH, the local stack's
setting). The MX port (25) is not for clients and is not offered. ManageSieve (4190) joins when
the gateway serves it.
"""

from __future__ import annotations

from dataclasses import dataclass

# (protocol, tls mode, RFC 6186 SRV service, Settings field). Preference order within a protocol.
_SERVICES = (
    ("imap", "tls", "imaps", "imaps_port"),
    ("imap", "starttls", "imap", "imap_port"),
    ("pop3", "tls", "pop3s", "pop3s_port"),
    ("pop3", "starttls", "pop3", "pop3_port"),
    ("smtp", "tls", "submissions", "submissions_port"),  # RFC 8314 §3.3
    ("smtp", "starttls", "submission", "submission_port"),  # RFC 6409
)


@dataclass(frozen=True)
class Service:
    protocol: str  # imap | pop3 | smtp (submission)
    tls: str  # tls (implicit) | starttls
    srv: str  # RFC 6186 service label without the underscore: imaps, imap, pop3s, pop3, submissions, submission
    host: str
    port: int

    @property
    def incoming(self) -> bool:
        return self.protocol != "smtp"


@dataclass(frozen=True)
class Offer:
    host: str
    services: tuple[Service, ...]
    jmap_host_prefix: str = "webmail"  # https://webmail.<domain>/.well-known/jmap (RFC 8620 §2.2)

    def of(self, protocol: str) -> tuple[Service, ...]:
        return tuple(s for s in self.services if s.protocol == protocol)

    def jmap_host(self, domain: str) -> str:
        return f"{self.jmap_host_prefix}.{domain}"


def public_offer(host: str) -> Offer:
    """What a deployed stack offers: the NLB's standard ports (the settings' defaults), for DNS records."""
    from .config import Settings

    return offer(Settings(hostname=host))


def offer(settings) -> Offer:
    host = settings.hostname.lower().rstrip(".")
    services = []
    for protocol, tls, srv, field in _SERVICES:
        port = int(getattr(settings, field))
        if port > 0:
            services.append(Service(protocol, tls, srv, host, port))
    return Offer(host, tuple(services))


# The HTTPS names every mail domain publishes (CNAMEs to the CloudFront distribution), and what each serves.
WEB_NAMES = (
    ("webmail", "the webmail and the JMAP API (/.well-known/jmap)"),
    ("autoconfig", "Thunderbird autoconfig (/mail/config-v1.1.xml)"),
    ("autodiscover", "Outlook autodiscover (/autodiscover/autodiscover.xml)"),
    ("mta-sts", "the MTA-STS policy (/.well-known/mta-sts.txt, RFC 8461 §3.3)"),
)


def web_names(domain: str) -> list[str]:
    return [f"{label}.{domain.lower().rstrip('.')}" for label, _ in WEB_NAMES]
