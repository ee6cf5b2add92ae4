"""The HTTPS front's certificate: one ACM certificate in us-east-1 for every served domain's HTTPS names.

In:   an ACM client for us-east-1 (CloudFront takes certificates from that region only, whatever the
      stack's region: CloudFront developer guide, "Requirements for using SSL/TLS certificates with
      CloudFront"), the stack's name, the served domains.
Out:  :func:`ensure` -> the :class:`Cert` that covers every domain, requested (DNS validation) when
      none of the stack's certificates does; :func:`for_distribution` -> the issued certificate
      ``make deploy`` passes as ``WebCertificateArn`` with :func:`aliases` of the domains it covers
      as ``WebAliases``; :class:`Validation` records, the CNAMEs the operator publishes.
Fails: :class:`WebCertError` (exit 1 from the CLI) when ACM refuses (its quota, a bad name);
      :class:`~postern.errors.StoreUnavailable` when ACM cannot be reached.

Nothing here waits for DNS validation, which may never come: a request returns at once; the
distribution gets a certificate (and its aliases) only once ACM says ``ISSUED``, and until then keeps
the previous issued one or answers on its cloudfront.net name. The certificates are found again by
their tag ``postern:stack`` = the stack's name, so the step is re-runnable: run twice it requests
nothing the second time; a domain added later gets a new certificate covering every domain (ACM cannot
add names to a certificate), which replaces the old one on the next deploy once issued.

Names: one wildcard per domain, ``*.example.com``, which covers ``webmail.``, ``autoconfig.``,
``autodiscover.`` and ``mta-sts.`` with one validation record. Four names per domain would fill ACM's
default quota of 10 names per certificate with two domains (ACM User Guide, "Quotas"); wildcards fit
ten. The distribution's aliases stay the four exact names (``postern.clientoffer.web_names``).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

from .clientoffer import web_names
from .errors import PosternError, StoreUnavailable

REGION = "us-east-1"
TAG = "postern:stack"
MAX_NAMES = 10  # ACM's default "domain names per ACM certificate" quota (adjustable to 100)
LIVE = ("PENDING_VALIDATION", "ISSUED")  # statuses worth keeping; FAILED, EXPIRED, ... are not


class WebCertError(PosternError):
    """ACM refused the certificate request; the text says why and what to do."""


@dataclass(frozen=True)
class Validation:
    """One DNS validation record ACM asks for (a CNAME), or not yet (ACM adds them seconds after a request)."""

    domain: str  # the certificate name it validates (``*.example.com``)
    name: str  # record name, no trailing dot ("" until ACM has made it)
    value: str  # CNAME target, no trailing dot
    status: str  # PENDING_VALIDATION | SUCCESS | FAILED


@dataclass(frozen=True)
class Cert:
    arn: str
    status: str  # PENDING_VALIDATION | ISSUED | FAILED | VALIDATION_TIMED_OUT | EXPIRED | ...
    names: tuple[str, ...]
    validations: tuple[Validation, ...]
    in_use_by: tuple[str, ...]
    created: float  # epoch seconds

    @property
    def domains(self) -> tuple[str, ...]:
        """The mail domains whose HTTPS names it covers."""
        return tuple(sorted(n[2:] for n in self.names if n.startswith("*.")))

    def covers(self, domain: str) -> bool:
        return f"*.{_norm(domain)}" in self.names

    @property
    def records_ready(self) -> bool:
        return bool(self.validations) and all(v.name for v in self.validations)


def _norm(domain: str) -> str:
    return domain.strip().lower().rstrip(".")


def names_for(domains: Iterable[str]) -> list[str]:
    """The certificate's names for these mail domains (sorted, one wildcard each)."""
    return sorted({f"*.{_norm(d)}" for d in domains if _norm(d)})


def aliases(domains: Iterable[str]) -> list[str]:
    """The distribution's aliases for these domains (WebAliases): the exact HTTPS names."""
    return [n for d in sorted({_norm(x) for x in domains}) for n in web_names(d)]


def _call(what: str, fn, **kw):
    try:
        return fn(**kw)
    except ClientError as exc:
        err = exc.response.get("Error", {})
        code, msg = err.get("Code", "?"), err.get("Message", str(exc))
        if code in ("LimitExceededException", "InvalidParameterException", "InvalidDomainValidationOptionsException",
                    "ValidationException", "TagPolicyException", "InvalidTagException"):
            raise WebCertError(f"ACM ({REGION}) refused to {what}: {code}: {msg}") from None
        raise StoreUnavailable(f"ACM ({REGION}) could not {what}: {code}: {msg}") from None
    except BotoCoreError as exc:
        raise StoreUnavailable(f"ACM ({REGION}) unreachable: {exc}") from None


def describe(acm, arn: str) -> Cert:
    c = _call("describe the certificate", acm.describe_certificate, CertificateArn=arn)["Certificate"]
    vals = []
    for o in c.get("DomainValidationOptions") or []:
        rr = o.get("ResourceRecord") or {}  # absent for a few seconds after the request (moto fills it at once)
        vals.append(Validation(o["DomainName"], rr.get("Name", "").rstrip("."), rr.get("Value", "").rstrip("."),
                               o.get("ValidationStatus", "PENDING_VALIDATION")))
    created = c.get("CreatedAt")
    return Cert(arn=arn, status=c.get("Status", ""), names=tuple(sorted(c.get("SubjectAlternativeNames") or [])),
                validations=tuple(sorted(vals, key=lambda v: v.domain)), in_use_by=tuple(c.get("InUseBy") or []),
                created=created.timestamp() if hasattr(created, "timestamp") else float(created or 0))


def certificates(acm, stack: str) -> list[Cert]:
    """The stack's live certificates (tag ``postern:stack``), newest first."""
    out, kw = [], {"CertificateStatuses": list(LIVE)}
    while True:
        page = _call("list certificates", acm.list_certificates, **kw)
        for s in page.get("CertificateSummaryList", []):
            tags = _call("read a certificate's tags", acm.list_tags_for_certificate,
                         CertificateArn=s["CertificateArn"]).get("Tags", [])
            if {"Key": TAG, "Value": stack} in [{"Key": t["Key"], "Value": t.get("Value")} for t in tags]:
                out.append(describe(acm, s["CertificateArn"]))
        if not page.get("NextToken"):
            break
        kw["NextToken"] = page["NextToken"]
    return sorted(out, key=lambda c: (c.created, c.arn), reverse=True)


def ensure(acm, stack: str, domains: Iterable[str]) -> tuple[Cert, bool]:
    """(the certificate covering every domain, whether it was requested now). Never waits for validation."""
    wanted = names_for(domains)
    if not wanted:
        raise WebCertError("no domain to put in the HTTPS certificate: `postern domain add DOMAIN` first")
    live = certificates(acm, stack)
    covering = [c for c in live if set(wanted) <= set(c.names)]
    if covering:  # an issued one first, else the newest pending request
        return sorted(covering, key=lambda c: (c.status == "ISSUED", c.created), reverse=True)[0], False
    if len(wanted) > MAX_NAMES:
        raise WebCertError(f"{len(wanted)} domains need {len(wanted)} names in the HTTPS certificate, over ACM's "
                           f"default quota of {MAX_NAMES} per certificate: ask for more (Service Quotas, ACM, "
                           f"'Domain names per ACM certificate', in {REGION}), then run this again")
    # Same stack and names -> same token: ACM answers a repeat within an hour with the same certificate.
    token = hashlib.sha256("\n".join([stack, *wanted]).encode()).hexdigest()[:32]
    arn = _call("request a certificate", acm.request_certificate, DomainName=wanted[0],
                SubjectAlternativeNames=wanted, ValidationMethod="DNS", IdempotencyToken=token,
                Options={"CertificateTransparencyLoggingPreference": "ENABLED"},
                Tags=[{"Key": TAG, "Value": stack}])["CertificateArn"]
    return describe(acm, arn), True


def with_records(acm, cert: Cert, timeout: float = 30.0, *, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> Cert:
    """The certificate again once ACM has made its validation records (a few seconds after a request),
    or as it is after ``timeout`` seconds (the caller then says to run the step again)."""
    deadline = clock() + timeout
    while not cert.records_ready and cert.status == "PENDING_VALIDATION" and clock() < deadline:
        sleep(2.0)
        cert = describe(acm, cert.arn)
    return cert


def for_distribution(certs: Iterable[Cert]) -> Cert | None:
    """The issued certificate the distribution should use: the one covering most domains, newest on a tie."""
    issued = [c for c in certs if c.status == "ISSUED" and c.domains]
    if not issued:
        return None
    return sorted(issued, key=lambda c: (len(c.domains), c.created, c.arn), reverse=True)[0]


def zone_lines(cert: Cert, ttl: int = 3600) -> list[str]:
    """The validation CNAMEs as zone-file lines (one per name; keep them: ACM renews with them)."""
    return [f"{v.name + '.':<40} {ttl} IN CNAME {v.value}." for v in cert.validations if v.name]
