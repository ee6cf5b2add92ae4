"""``postern doctor DOMAIN``: check, live, every record and endpoint an operator must get right.

In:   what the domain should publish (:func:`postern.dnsplan.plan` of the same facts ``postern dns``
      gathers: the one source of the expected records), a :class:`Probe` that reads the world
      (``lookup(name, type)`` through :class:`postern.dns.Resolver`, ``fetch(host, path)`` over HTTPS,
      ``certificate(host, port)`` with TLS verification), the client offer (ports and TLS modes).
Out:  :func:`run_checks` -> one :class:`Check` per item: ``ok`` or ``wrong`` with what to change.
      :func:`render` -> one line per check. The CLI exits 1 when any check is wrong.
Fails: never raises for what it finds: a DNS failure, a refused connection or an unverifiable
      certificate are wrong checks with the reason.

The checks: MX (the gateway host, which must have A records and no CNAME: RFC 2181 §10.3); SPF
(exactly one ``v=spf1`` record, the one planned: the sending addresses and SES's custom MAIL FROM);
DKIM keys published and matching Postern's (and SES's CNAMEs); DMARC (``v=DMARC1`` sending aggregate
reports to ``reports@``); TLS-RPT; the ``_mta-sts`` TXT and the policy served at
``https://mta-sts.<domain>/.well-known/mta-sts.txt``: reachable, parseable, naming the MX host, and
its digest the published id (RFC 8461 §3.1); SRV records; the HTTPS names (autoconfig, autodiscover
answering their documents, their CNAMEs to the distribution and the HTTPS certificate's validation
CNAME when ``postern dns`` knows them); the certificate on every implicit-TLS port and, deployed, the
one CloudFront presents for each HTTPS name (verifies, names the host, more than 14 days left); PTR of the sending address when Postern sends from its own (``mx``).
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
from dataclasses import dataclass

from .clientoffer import web_names
from .dnsplan import Facts, Record, plan
from .mtasts import PolicyError, parse_policy, policy_txt

MIN_DAYS = 14


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    text: str

    def line(self) -> str:
        return f"{'ok   ' if self.ok else 'wrong'} {self.name}: {self.text}"


def _norm(value: str) -> str:
    return " ".join(value.replace('"', "").split()).lower().rstrip(".")


class Probe:
    """The live world: DNS through Postern's resolver, HTTPS and TLS over the network."""

    def __init__(self, resolver, https_base: str = "", cafile: str | None = None, timeout: float = 10.0):
        self.resolver = resolver
        self.https_base = https_base.rstrip("/")  # e.g. http://127.0.0.1:8080 (local front): Host header names the site
        self.cafile = cafile
        self.timeout = timeout

    def lookup(self, name: str, rdtype: str) -> list[str]:
        return self.resolver.lookup(name, rdtype)

    def fetch(self, host: str, path: str) -> tuple[int, str]:
        import urllib.error
        import urllib.request

        url = f"{self.https_base or 'https://' + host}{path}"
        req = urllib.request.Request(url, headers={"Host": host})
        ctx = ssl.create_default_context(cafile=self.cafile)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=ctx) as r:  # noqa: S310 - https/loopback
                return r.status, r.read(64 * 1024).decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            return exc.code, ""

    def certificate(self, host: str, port: int, connect: str = "") -> dict:
        """The peer certificate after full verification (chain and host name) of an implicit-TLS port."""
        ctx = ssl.create_default_context(cafile=self.cafile)
        with socket.create_connection((connect or host, port), timeout=self.timeout) as raw:
            with ctx.wrap_socket(raw, server_hostname=host) as tls:
                return tls.getpeercert()


def _lookup(probe, name: str, rdtype: str) -> tuple[list[str] | None, str]:
    try:
        return [_norm(v) for v in probe.lookup(name, rdtype)], ""
    except Exception as exc:  # noqa: BLE001 - every DNS failure is a finding, not a crash
        return None, str(exc) or exc.__class__.__name__


def _record_check(probe, r: Record) -> Check:
    label = f"{r.type} {r.name}"
    found, err = _lookup(probe, r.name, r.type)
    if found is None:
        return Check(label, False, f"lookup failed ({err}): publish {r.zone_line().split(None, 3)[-1]}")
    want = _norm(r.value)
    if r.type == "TXT" and want.startswith(("v=spf1", "v=dmarc1", "v=stsv1", "v=tlsrptv1")):
        tag = want.split(";")[0].split()[0]
        same_kind = [v for v in found if v.startswith(tag)]
        if len(same_kind) > 1:
            return Check(label, False, f"{len(same_kind)} {tag} records (there must be one): keep only {r.value}")
        if want.startswith("v=dmarc1") and same_kind and f"rua=mailto:reports@{r.name.split('.', 1)[1]}" in \
                same_kind[0].replace(" ", ""):
            return Check(label, True, same_kind[0])  # the policy (p=) is the operator's choice; the reports come here
        if same_kind == [want]:
            return Check(label, True, r.value)
        return Check(label, False, f"publish {r.value!r}" + (f" instead of {same_kind[0]!r}" if same_kind else ""))
    if want in found:
        return Check(label, True, r.value)
    have = ", ".join(found) or "nothing"
    return Check(label, False, f"publish {r.value} (found {have})")


def _mx_target(probe, host: str) -> Check:
    cname, _ = _lookup(probe, host, "CNAME")
    if cname:
        return Check(f"MX target {host}", False, f"is a CNAME of {cname[0]}: the MX must name a host with A records "
                                                 "(RFC 2181 §10.3)")
    a, err = _lookup(probe, host, "A")
    if not a:
        return Check(f"MX target {host}", False, f"has no A record ({err or 'none published'})")
    return Check(f"MX target {host}", True, f"A {', '.join(a)}")


def _mta_sts(probe, facts: Facts) -> list[Check]:
    d = facts.domain
    site = f"mta-sts.{d}"
    try:
        status, text = probe.fetch(site, "/.well-known/mta-sts.txt")
    except Exception as exc:  # noqa: BLE001 - unreachable is a finding
        return [Check("MTA-STS policy", False, f"https://{site}/.well-known/mta-sts.txt unreachable ({exc})")]
    if status != 200:
        return [Check("MTA-STS policy", False, f"https://{site}/.well-known/mta-sts.txt answers {status}")]
    try:
        policy = parse_policy(text)
    except PolicyError as exc:
        return [Check("MTA-STS policy", False, f"does not parse ({exc})")]
    checks = []
    if facts.gateway_host not in policy.mx:
        checks.append(Check("MTA-STS policy", False, f"mx {', '.join(policy.mx)} does not name {facts.gateway_host}"))
    else:
        checks.append(Check("MTA-STS policy", True, f"mode {policy.mode}, mx {', '.join(policy.mx)}"))
    published, _ = _lookup(probe, f"_mta-sts.{d}", "TXT")
    served = _norm(policy_txt(text))
    if served in (published or []):
        checks.append(Check("MTA-STS id", True, "the published id is the served policy's"))
    else:
        checks.append(Check("MTA-STS id", False, f"publish _mta-sts.{d} TXT \"{policy_txt(text)}\": senders cache "
                                                 "the policy by this id"))
    return checks


def _web(probe, facts: Facts) -> list[Check]:
    d = facts.domain
    out = []
    for host, path, what in ((f"autoconfig.{d}", "/mail/config-v1.1.xml", "Thunderbird autoconfig"),
                             (f"autodiscover.{d}", f"/autodiscover/autodiscover.xml?Email=postmaster@{d}",
                              "Outlook autodiscover")):
        try:
            status, body = probe.fetch(host, path)
        except Exception as exc:  # noqa: BLE001
            out.append(Check(what, False, f"https://{host} unreachable ({exc})"))
            continue
        good = status == 200 and body.lstrip().startswith("<?xml")
        out.append(Check(what, good, f"https://{host}{path.split('?')[0]}" + ("" if good else f" answers {status}")))
    return out


def _certificate(probe, name: str, host: str, port: int, connect: str, now: dt.datetime, fix: str = "") -> Check:
    """One implicit-TLS endpoint: the certificate verifies (chain, host name) and has more than MIN_DAYS left."""
    try:
        cert = probe.certificate(host, port, connect)
    except (OSError, ssl.SSLError, ValueError) as exc:
        return Check(name, False, (f"does not verify ({exc.__class__.__name__}: {exc})"[:300] + fix))
    not_after = dt.datetime.fromtimestamp(ssl.cert_time_to_seconds(cert["notAfter"]), dt.timezone.utc)
    left = (not_after - now).days
    if left <= MIN_DAYS:
        return Check(name, False, f"expires {not_after:%Y-%m-%d}, {left} days left: renew it")
    return Check(name, True, f"valid, names the host, {left} days left")


def _certificates(probe, offer, connect: str, now: dt.datetime) -> list[Check]:
    return [_certificate(probe, f"certificate {svc.srv} {svc.host}:{svc.port}", svc.host, svc.port, connect, now)
            for svc in offer.services
            if svc.tls == "tls"]  # STARTTLS ports present the same certificate (one gateway, one certificate)


def _https_certificates(probe, facts: Facts, now: dt.datetime) -> list[Check]:
    """The certificate CloudFront presents for each HTTPS name (deployed only: the local front is plain HTTP)."""
    if not facts.web_target or getattr(probe, "https_base", ""):
        return []
    fix = ("; until the HTTPS certificate is issued and `make deploy` has run again, the distribution presents "
           "only its cloudfront.net certificate (`postern web certificate` says where it stands)")
    return [_certificate(probe, f"certificate https {name}:443", name, 443, "", now, fix)
            for name in web_names(facts.domain)]


def _ptr(probe, facts: Facts) -> list[Check]:
    if facts.transport != "mx" or not facts.nat_address:
        return []
    import dns.reversename

    rev = dns.reversename.from_address(facts.nat_address).to_text().rstrip(".")
    names, err = _lookup(probe, rev, "PTR")
    if not names:
        return [Check(f"PTR {facts.nat_address}", False, f"none ({err or 'not published'}): ask AWS to set it")]
    forward, _ = _lookup(probe, names[0], "A")
    ok = facts.nat_address in (forward or [])
    return [Check(f"PTR {facts.nat_address}", ok, f"{names[0]}" + ("" if ok else " does not resolve back to it"))]


def run_checks(facts: Facts, probe, offer, connect: str = "", now: dt.datetime | None = None) -> list[Check]:
    now = now or dt.datetime.now(dt.timezone.utc)
    records, _advice = plan(facts)
    checks = [_record_check(probe, r) for r in records]
    checks.insert(1, _mx_target(probe, facts.gateway_host))
    checks += _mta_sts(probe, facts)
    checks += _web(probe, facts)
    checks += _certificates(probe, offer, connect, now)
    checks += _https_certificates(probe, facts, now)
    checks += _ptr(probe, facts)
    return checks


def render(checks: list[Check]) -> str:
    wrong = sum(1 for c in checks if not c.ok)
    lines = [c.line() for c in checks]
    lines.append(f"{len(checks) - wrong} ok, {wrong} wrong")
    return "\n".join(lines) + "\n"
