"""DMARC (RFC 7489): policy discovery, identifier alignment, disposition.

In:   the RFC5322.From domain, the SPF result for MAIL FROM and the DKIM
      results (domain ``d=`` and pass/fail for each signature), a resolver.
Out:  :func:`lookup_policy` -> :class:`DmarcRecord` or None;
      :func:`evaluate` -> :class:`DmarcResult` (``result`` pass | fail | none |
      temperror | permerror; ``disposition`` none | quarantine | reject).
Fails: :func:`lookup_policy` raises :class:`~postern_gateway.trust.dns.DnsTempError`
      when the record could not be fetched; :func:`evaluate` turns that into
      ``temperror`` with disposition ``none`` (RFC 7489 §6.6.3: a receiver
      unable to get the policy must not apply one).

Organisational domain (RFC 7489 §3.2): the public-suffix algorithm over the
Mozilla Public Suffix List *as shipped inside the installed publicsuffix2
package* (offline; no download at run time). Where no rule matches (e.g.
``.test``), the default rule ``*`` applies: the public suffix is the last
label and the organisational domain the last two.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

from .dns import DnsTempError


@functools.lru_cache(maxsize=1)
def _psl():
    from publicsuffix2 import PublicSuffixList

    return PublicSuffixList()  # the list bundled with the package


@functools.lru_cache(maxsize=4096)
def org_domain(domain: str) -> str:
    """RFC 7489 §3.2: the registered domain (public suffix + one label)."""
    d = domain.rstrip(".").lower()
    labels = d.split(".")
    if len(labels) < 2:
        return d
    suffix = _psl().get_tld(d, strict=True)
    if not suffix:
        suffix = labels[-1]  # the PSL's implicit "*" rule
    n = len(suffix.split("."))
    if len(labels) <= n:
        return d
    return ".".join(labels[-(n + 1):])


def aligned(a: str, b: str, mode: str) -> bool:
    """RFC 7489 §3.1: strict = identical; relaxed = same organisational domain."""
    a, b = a.rstrip(".").lower(), b.rstrip(".").lower()
    if not a or not b:
        return False
    if mode == "s":
        return a == b
    return org_domain(a) == org_domain(b)


@dataclass(frozen=True)
class DmarcRecord:
    domain: str  # where the record was found (the From domain or its org domain)
    p: str = "none"
    sp: str | None = None
    adkim: str = "r"
    aspf: str = "r"
    pct: int = 100

    def policy_for(self, from_domain: str) -> str:
        """RFC 7489 §6.3: ``sp`` applies when the record came from the org domain for a subdomain."""
        if self.sp and from_domain.rstrip(".").lower() != self.domain:
            return self.sp
        return self.p


class DmarcSyntaxError(ValueError):
    pass


def parse_record(txt: bytes | str, domain: str) -> DmarcRecord:
    """RFC 7489 §6.3/§6.4 tag list; ``v=DMARC1`` must come first."""
    s = txt.decode("utf-8", "replace") if isinstance(txt, bytes) else txt
    tags: dict[str, str] = {}
    for part in s.split(";"):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise DmarcSyntaxError(f"bad tag {part!r}")
        k, v = part.split("=", 1)
        tags.setdefault(k.strip().lower(), v.strip())
    first = s.split(";", 1)[0].replace(" ", "")
    if first != "v=DMARC1":
        raise DmarcSyntaxError("not a DMARC1 record")

    def pol(v: str | None) -> str | None:
        if v is None:
            return None
        v = v.lower()
        return v if v in ("none", "quarantine", "reject") else None

    p = pol(tags.get("p"))
    sp = pol(tags.get("sp"))
    if p is None:
        # RFC 7489 §6.6.3 step 6: invalid/missing p with a valid rua is treated as none; without, no record.
        if "rua" in tags:
            p = "none"
        else:
            raise DmarcSyntaxError("missing or invalid p=")
    try:
        pct = max(0, min(100, int(tags.get("pct", "100"))))
    except ValueError:
        pct = 100
    adkim = "s" if tags.get("adkim", "r").lower() == "s" else "r"
    aspf = "s" if tags.get("aspf", "r").lower() == "s" else "r"
    return DmarcRecord(domain=domain, p=p, sp=sp, adkim=adkim, aspf=aspf, pct=pct)


def _fetch(resolver, domain: str) -> DmarcRecord | None:
    records = [t for t in resolver.lookup(f"_dmarc.{domain}", "TXT") if t.replace(b" ", b"")[:8].lower() == b"v=dmarc1"]
    if len(records) != 1:  # RFC 7489 §6.6.3 step 5: none or several -> no policy here
        return None
    return parse_record(records[0], domain)


def lookup_policy(resolver, from_domain: str) -> DmarcRecord | None:
    """RFC 7489 §6.6.3: ``_dmarc.<From domain>``, else ``_dmarc.<organisational domain>``."""
    d = from_domain.rstrip(".").lower()
    try:
        rec = _fetch(resolver, d)
    except DmarcSyntaxError:
        rec = None
    if rec is not None:
        return rec
    org = org_domain(d)
    if org != d:
        try:
            return _fetch(resolver, org)
        except DmarcSyntaxError:
            return None
    return None


@dataclass(frozen=True)
class DmarcResult:
    result: str  # pass | fail | none | temperror | permerror
    from_domain: str
    policy: str = "none"  # the published policy that applied (p or sp)
    disposition: str = "none"  # what we do: none | quarantine | reject
    spf_aligned: bool = False
    dkim_aligned: bool = False
    reason: str = ""


def evaluate(resolver, from_domain: str | None, spf_result: str, spf_domain: str,
             dkim: list[tuple[str, str]], *, sample=random.random) -> DmarcResult:
    """Apply RFC 7489 §4.2/§6.6.2: pass if SPF or DKIM passes *and* aligns with the From domain.

    ``dkim`` is a list of (result, d=) pairs; ``sample`` returns a float in
    [0, 1) for the ``pct`` draw (tests pass a constant).
    """
    if not from_domain:
        return DmarcResult("none", "", reason="no single RFC5322.From domain")
    fd = from_domain.rstrip(".").lower()
    try:
        rec = lookup_policy(resolver, fd)
    except DnsTempError as exc:
        return DmarcResult("temperror", fd, reason=str(exc))
    if rec is None:
        return DmarcResult("none", fd, reason="no DMARC record")
    spf_ok = spf_result == "pass" and aligned(spf_domain, fd, rec.aspf)
    dkim_ok = any(r == "pass" and aligned(d, fd, rec.adkim) for r, d in dkim)
    policy = rec.policy_for(fd)
    if spf_ok or dkim_ok:
        return DmarcResult("pass", fd, policy, "none", spf_ok, dkim_ok)
    # A mechanism that could have passed but hit a DNS failure makes the whole result temporary:
    # a DNS failure is never a reason to reject (RFC 7489 §6.6.3, §11.3.x "temperror").
    if (spf_result == "temperror" and aligned(spf_domain, fd, rec.aspf)) or any(
            r == "temperror" and aligned(d, fd, rec.adkim) for r, d in dkim):
        return DmarcResult("temperror", fd, policy, "none", reason="aligned SPF or DKIM result was temperror")
    disposition = policy
    if disposition != "none" and rec.pct < 100 and sample() * 100 >= rec.pct:
        # RFC 7489 §6.6.4: outside the sample, apply the next less strict policy.
        disposition = "quarantine" if disposition == "reject" else "none"
    return DmarcResult("fail", fd, policy, disposition, False, False, reason="no aligned SPF or DKIM pass")
