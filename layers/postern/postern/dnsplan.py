"""Every DNS record a mail domain needs, from what is known about the deployment: pure, no I/O.

In:   :class:`Facts`: the domain, the gateway's host name and addresses (Elastic IPs, or the
      NLB's name and its current addresses), the outbound transport and what it sends from
      (SES and its MAIL FROM domain and Easy DKIM tokens, the smarthost, the NAT address of
      the deliver VPC), Postern's own DKIM records.
Out:  :func:`plan` -> (records, advice). Records are :class:`Record` (name, type, value, why);
      advice is :class:`Advice` for what is no record in this zone (PTR, an alias, a value
      not known yet). :func:`zone_text` renders zone-file lines (advice as ``;`` comments),
      :func:`table_text` a table with a WHY column.
Fails: never; what is unknown becomes advice saying how to find it.

The rules, each once:
- MX names the gateway host, which has A records (RFC 2181 §10.3: never a CNAME); with no
  Elastic IPs the host is a Route 53 alias (or ALIAS/ANAME) of the NLB, or A records of the
  NLB's current per-subnet addresses.
- SPF lists where mail really leaves from (RFC 7208): SES on its custom MAIL FROM domain (the
  envelope domain SES uses; the apex then sends nothing itself), the smarthost provider's
  include on the apex, the NAT gateway's Elastic IP on the apex with the ``mx`` transport.
- DKIM: Postern's own key(s) and SES Easy DKIM's three CNAMEs. DMARC (RFC 7489) and TLS-RPT
  (RFC 8460) with reports to reports@ (the reports function reads them: ``postern report``).
  MTA-STS (RFC 8461): the ``_mta-sts`` TXT whose id is the digest of the policy the HTTPS front
  serves (``postern.mtasts``). RFC 6186/8314 SRV records for client set-up, from the one list of
  what the stack offers (``postern.clientoffer``), ``_jmap._tcp`` (RFC 8620 §2.2) and
  ``_autodiscover._tcp``; the HTTPS names (webmail., autoconfig., autodiscover., mta-sts.) are
  CNAMEs of the CloudFront distribution, and the DNS validation CNAME of the certificate that covers
  them (``postern.webcert``: ACM in us-east-1) stays published (ACM renews with it).
- PTR only where Postern's own address sends (``mx`` transport): the NAT address must have a
  PTR whose name resolves back to it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .clientoffer import public_offer, web_names
from .mtasts import policy_txt, tlsrpt_txt

TTL = 3600

# Smarthosts whose SPF include is well known: host pattern -> include domain.
SMARTHOST_SPF = (
    (re.compile(r"^email-smtp(-fips)?\.[a-z0-9-]+\.amazonaws\.com$"), "amazonses.com"),
    (re.compile(r"^smtp\.sendgrid\.net$"), "sendgrid.net"),
    (re.compile(r"^smtp(\.eu)?\.mailgun\.org$"), "mailgun.org"),
    (re.compile(r"^smtp-relay\.gmail\.com$|^smtp\.gmail\.com$"), "_spf.google.com"),
    (re.compile(r"^smtp\.office365\.com$"), "spf.protection.outlook.com"),
)


@dataclass(frozen=True)
class Record:
    name: str  # fully qualified, no trailing dot
    type: str  # A | MX | TXT | CNAME | SRV
    value: str  # as published; TXT without quotes
    why: str

    def zone_line(self) -> str:
        value = self.value
        if self.type == "TXT":  # RFC 1035 §3.3.14: strings of at most 255 octets
            value = " ".join(f'"{value[i:i + 250]}"' for i in range(0, len(value), 250)) or '""'
        return f"{self.name + '.':<40} {TTL} IN {self.type:<5} {value}"


@dataclass(frozen=True)
class Advice:
    topic: str  # PTR | A | SPF | DKIM | SES ...
    text: str


@dataclass(frozen=True)
class Facts:
    domain: str
    gateway_host: str
    transport: str = "ses"  # ses | smarthost | mx
    region: str = "us-east-1"
    stack: str = ""
    gateway_addresses: tuple[str, ...] = ()  # Elastic IPs of the NLB (UseElasticIps=true)
    gateway_dns_name: str = ""  # the NLB's DNS name
    nlb_addresses: tuple[str, ...] = ()  # its current addresses, when resolved
    self_published: bool = False  # GatewayProfile=small: the task writes its own A record (postern_gateway.publish)
    smarthost: str = ""  # host[:port]
    nat_address: str = ""  # the deliver VPC's NAT Elastic IP (mx transport)
    ses_records: tuple[tuple[str, str, str], ...] = ()  # (name, type, value): Easy DKIM CNAMEs, MAIL FROM MX/TXT
    ses_mail_from: str = ""  # the custom MAIL FROM domain SES uses for this domain
    ses_note: str = ""  # why the SES records are missing, when they are
    dkim_records: tuple[tuple[str, str], ...] = ()  # Postern's own: (name, TXT value)
    mta_sts_policy: str = ""  # the policy text the HTTPS front serves (postern.mtasts.settings_policy)
    web_target: str = ""  # the CloudFront distribution's name (stack output WebDistributionDomain)
    cert_records: tuple[tuple[str, str], ...] = ()  # the HTTPS certificate's validation CNAMEs: (name, value)
    cert_note: str = ""  # the HTTPS certificate's state, or how to get one (postern.webcert)
    notes: tuple[Advice, ...] = field(default_factory=tuple)  # what gathering the facts found


def smarthost_include(host: str) -> str | None:
    h = host.rsplit(":", 1)[0].lower().rstrip(".")
    for pattern, include in SMARTHOST_SPF:
        if pattern.match(h):
            return include
    return None


def _gateway(f: Facts) -> tuple[list[Record], list[Advice]]:
    host = f.gateway_host
    zone_hint = "" if host == f.domain or host.endswith("." + f.domain) else \
        f" (in the zone of {host}, once for every domain)"
    why = f"the gateway's address; the MX target must have A records, never a CNAME (RFC 2181 §10.3){zone_hint}"
    if f.self_published:
        return [], [Advice("A", f"{host}: nothing to publish by hand - with GatewayProfile=small the gateway task "
                                "writes this A record itself in the stack's hosted zone (TTL 60 s) each time a "
                                "task starts")]
    if f.gateway_addresses:
        return [Record(host, "A", a, why) for a in f.gateway_addresses], []
    if f.gateway_dns_name:
        advice = [Advice("A", f"{host}: a Route 53 alias A record (or your provider's ALIAS/ANAME) to "
                              f"{f.gateway_dns_name}, the NLB; not a CNAME, since the MX names it. For stable "
                              "addresses of your own, deploy with UseElasticIps=true.")]
        if f.nlb_addresses:
            advice.append(Advice("A", f"the A records of {host} given here are the NLB's current addresses (fixed "
                                      "for its life, one per subnet), for DNS hosts without alias records"))
            return [Record(host, "A", a, why + "; the NLB's current address") for a in f.nlb_addresses], advice
        return [], advice
    return [], [Advice("A", f"{host}: A records of the gateway's addresses (with --stack NAME: the stack's "
                            "GatewayAddresses or GatewayDnsName output)")]


def _spf(f: Facts) -> tuple[list[Record], list[Advice]]:
    d = f.domain
    if f.transport == "ses":
        return [Record(d, "TXT", "v=spf1 -all",
                       f"no mail leaves with {d} as its envelope domain: SES sends with its MAIL FROM domain "
                       f"{f.ses_mail_from or 'bounce.' + d} (SPF below); add an include: for any other service "
                       f"that sends as @{d}")], []
    if f.transport == "smarthost":
        include = smarthost_include(f.smarthost)
        if include:
            return [Record(d, "TXT", f"v=spf1 include:{include} -all",
                           f"mail leaves through the smarthost {f.smarthost}, whose provider publishes {include}")], []
        return [], [Advice("SPF", f'{d} TXT "v=spf1 include:<your provider\'s SPF domain> -all": mail leaves '
                                  f"through the smarthost {f.smarthost or '(SmarthostHost)'}; its provider "
                                  "documents the include")]
    if f.transport == "mx":
        if f.nat_address:
            return [Record(d, "TXT", f"v=spf1 ip4:{f.nat_address} -all",
                           "mail leaves from the deliver function's NAT gateway, this Elastic IP")], []
        return [], [Advice("SPF", f'{d} TXT "v=spf1 ip4:<the NAT Elastic IP> -all": the stack output '
                                  "DeliverNatAddress (DeliverVpc=true)")]
    return [], [Advice("SPF", f"unknown outbound transport {f.transport!r}")]


def _ptr(f: Facts) -> list[Advice]:
    if f.transport == "ses":
        return [Advice("PTR", "nothing to do: SES sends from its own addresses, with its own reverse DNS")]
    if f.transport == "smarthost":
        return [Advice("PTR", f"nothing to do: mail leaves from {f.smarthost or 'the smarthost'}'s addresses, "
                              "with its provider's reverse DNS")]
    ip = f.nat_address or "<the NAT Elastic IP>"
    return [Advice("PTR", f"{ip} must have a PTR record whose name resolves back to {ip} (forward-confirmed "
                          "reverse DNS; large receivers refuse mail without it). Publish an A record such as "
                          f"out.{f.domain} -> {ip}, then have AWS set the PTR: the port-25 request form, or "
                          "aws ec2 modify-address-attribute --allocation-id <its id> --domain-name "
                          f"out.{f.domain}. The gateway's name cannot be that name: it resolves to the NLB.")]


def plan(f: Facts) -> tuple[list[Record], list[Advice]]:
    d, host = f.domain, f.gateway_host
    records: list[Record] = [Record(d, "MX", f"10 {host}.", "mail for the domain goes to the gateway")]
    advice: list[Advice] = list(f.notes)
    r, a = _gateway(f)
    records += r
    advice += a
    r, a = _spf(f)
    records += r
    advice += a
    if f.transport == "ses":
        why = {"CNAME": "SES Easy DKIM: SES signs as the domain, and verifies the domain by these",
               "MX": "SES's custom MAIL FROM domain: bounces come back to SES",
               "TXT": "SPF of SES's custom MAIL FROM domain, where SES's mail leaves from (aligned with "
                      f"{d} for DMARC)"}
        records += [Record(n, t, v, why.get(t, "SES")) for n, t, v in f.ses_records]
        if f.ses_note:
            advice.append(Advice("SES", f.ses_note))
    for name, txt in f.dkim_records:
        records.append(Record(name, "TXT", txt, "Postern's DKIM key (the deliver function signs with it)"))
    if not f.dkim_records:
        advice.append(Advice("DKIM", f"no Postern DKIM key for {d}: `postern domain dkim {d}` makes one and "
                                     "prints its record" + (" (SES's Easy DKIM signs too)" if f.transport == "ses"
                                                            else "")))
    records.append(Record(f"_dmarc.{d}", "TXT", f"v=DMARC1; p=quarantine; rua=mailto:reports@{d}",
                          "DMARC: mail failing SPF and DKIM alignment goes to spam; daily reports to reports@, "
                          "summarised by `postern report dmarc` (start with p=none if other services send as "
                          "this domain)"))
    records.append(Record(f"_smtp._tls.{d}", "TXT", tlsrpt_txt(d),
                          "TLS-RPT (RFC 8460): senders report TLS failures to reports@ (`postern report tls`)"))
    if f.mta_sts_policy:
        records.append(Record(f"_mta-sts.{d}", "TXT", policy_txt(f.mta_sts_policy),
                              f"MTA-STS (RFC 8461): the id follows the policy served at https://mta-sts.{d}"
                              "/.well-known/mta-sts.txt (MtaStsMode)"))
    records += _web(f, advice)
    for svc in public_offer(host).services:
        records.append(Record(f"_{svc.srv}._tcp.{d}", "SRV", f"0 1 {svc.port} {svc.host}.",
                              "mail client set-up (RFC 6186; RFC 8314 prefers the implicit TLS ports)"))
    records.append(Record(f"_jmap._tcp.{d}", "SRV", f"0 1 443 webmail.{d}.", "JMAP (RFC 8620 §2.2)"))
    records.append(Record(f"_autodiscover._tcp.{d}", "SRV", f"0 1 443 autodiscover.{d}.",
                          "Outlook autodiscover when its host name is not tried first"))
    advice += _ptr(f)
    return records, advice


def _web(f: Facts, advice: list[Advice]) -> list[Record]:
    names = web_names(f.domain)
    records = [Record(n, "CNAME", f"{v.rstrip('.')}.", "ACM DNS validation of the HTTPS certificate (us-east-1): "
                      "keep it published, ACM renews with it") for n, v in f.cert_records]
    if f.cert_note:
        advice.append(Advice("CERTIFICATE", f.cert_note))
    if not f.web_target:
        advice.append(Advice("HTTPS", f"{', '.join(names)}: CNAMEs of the CloudFront distribution (with --stack "
                                      "NAME: its WebDistributionDomain output); the certificate (WebCertificateArn, "
                                      "us-east-1) must name them"))
        return records
    return records + [Record(n, "CNAME", f"{f.web_target.rstrip('.')}.",
                             "the HTTPS front (CloudFront): webmail and JMAP, client set-up, the MTA-STS policy")
                      for n in names]


def _header(f: Facts) -> str:
    where = f"stack {f.stack}" if f.stack else "local settings (no --stack)"
    return f"DNS records for {f.domain}: {where}, outbound {f.transport}, region {f.region}"


def zone_text(f: Facts, records: list[Record], advice: list[Advice]) -> str:
    lines = [f"; {_header(f)}", "; Zone-file lines; ';' lines are advice, not records."]
    lines += [r.zone_line() for r in records]
    lines += [f"; {a.topic}: {a.text}" for a in advice]
    return "\n".join(lines) + "\n"


def table_text(records: list[Record], advice: list[Advice]) -> str:
    name_w = max([4] + [len(r.name) for r in records])
    value_w = min(60, max([5] + [len(r.value) for r in records]))
    lines = [f"{'NAME':<{name_w}}  {'TYPE':<5}  {'VALUE':<{value_w}}  WHY"]
    for r in records:
        value = r.value if len(r.value) <= value_w else r.value[:value_w - 3] + "..."
        lines.append(f"{r.name:<{name_w}}  {r.type:<5}  {value:<{value_w}}  {r.why}")
    lines += [f"{a.topic}: {a.text}" for a in advice]
    return "\n".join(lines) + "\n"
