"""Inbound message authentication before the 250: SPF, DKIM, DMARC, ARC -> one verdict.

In:   the raw message bytes as received (never re-serialised), the client IP,
      the HELO name and the MAIL FROM address of the SMTP transaction, and the
      one DNS seam (:mod:`postern_gateway.trust.dns`).
Out:  :class:`Verdict`: ``action`` accept | quarantine | reject, the
      ``Authentication-Results`` header (RFC 8601) as CRLF-terminated bytes
      with our hostname as authserv-id (ready to prepend to the trace prefix,
      ``Envelope.trace_headers``), the SMTP ``reply`` for a reject
      (``550 5.7.1``, RFC 7489 §7.3 "reject during the SMTP transaction"), and
      the individual results.
Fails: nothing raises for DNS trouble: a lookup that fails is ``temperror``
      for that method and never causes a reject (RFC 7208 §2.6.6, RFC 6376
      §6.1.2, RFC 7489 §6.6.3); malformed signatures are ``permerror``/``fail``.

Policy: DMARC ``p=reject`` failures are refused in the session
(``status.DMARC_REJECT``) — rejecting, not bouncing later, is what keeps us
from sending backscatter; ``p=quarantine`` failures are accepted with
``action="quarantine"``, which the SMTP handler turns into
``Envelope.junk=True`` (delivered to the recipient's Junk mailbox). SPF or
DKIM failing on their own only show in the header. An ARC chain is verified
and reported (``arc=``) but does not override a DMARC failure: we keep no
list of trusted sealers (RFC 8617 §7.2 leaves that to local policy).

Forged results (RFC 8601 §5): Authentication-Results fields already in the
message that claim *our* authserv-id are never read by us (no evaluation
here looks at incoming A-R fields at all). We do not delete them, because
Postern never rewrites received bytes (S3 holds exactly what arrived, and
removing fields could break DKIM); instead our own field goes on top of the
message (the store prepends the trace prefix) and carries a comment with the
number of such fields found below it, so a reader — and any filter that, as
RFC 8601 §4.1 asks, trusts only the topmost field with our id — sees ours.

Everything here is blocking (DNS, RSA): the gateway calls
``await backend.run(auth.check, ...)``.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field

import dkim

from postern import status
from postern.mail.author import author
from postern.mail.encoded import as_text
from postern.mail.header import Header
from postern.mail.limits import structured
from postern.status import Reply

from . import dmarc as dmarc_mod
from . import spf as spf_mod
from .dns import DnsTempError

log = logging.getLogger("postern.trust")

MAX_DKIM_SIGNATURES = 5  # signatures verified per message (each costs a DNS lookup and an RSA op)

_DOMAIN_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,251}[A-Za-z0-9])?$")
_B_RE = re.compile(r"^[A-Za-z0-9+/]{1,8}")


def _safe_domain(d: str | bytes | None) -> str | None:
    if d is None:
        return None
    if isinstance(d, bytes):
        d = d.decode("ascii", "replace")
    d = d.strip().rstrip(".")
    return d.lower() if _DOMAIN_RE.match(d) else None


@dataclass(frozen=True)
class DkimResult:
    result: str  # pass | fail | neutral | temperror | permerror | none
    domain: str = ""
    selector: str = ""
    b: str = ""  # first characters of the signature (RFC 6008 header.b)
    reason: str = ""


@dataclass(frozen=True)
class Verdict:
    action: str  # accept | quarantine | reject
    header: bytes  # "Authentication-Results: ...\r\n"
    reply: Reply | None = None  # the SMTP reply when action == "reject"
    spf: spf_mod.SpfResult | None = None
    helo: spf_mod.SpfResult | None = None
    dkim: tuple[DkimResult, ...] = ()
    dmarc: dmarc_mod.DmarcResult | None = None
    arc: str = "none"
    ignored_authres: int = 0  # incoming A-R fields that claimed our authserv-id
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def junk(self) -> bool:
        return self.action == "quarantine"


def _from_domains(header: Header) -> list[str] | None:
    """RFC 7489 §6.6.1: the RFC5322.From domain(s), read by the one parser (the MX port has
    already refused more than one From: or an unreadable one); None when there is none."""
    domains = [d for d in (_safe_domain(x) for x in author(header).domains) if d]
    return list(dict.fromkeys(domains)) or None


def _authserv_id(value: str) -> str:
    words = re.sub(r"\([^)]*\)", " ", value).split(";", 1)[0].split()  # comments dropped
    return words[0].lower() if words else ""


def _count_claims(header: Header, hostname: str) -> int:
    """Authentication-Results fields already in the message that claim our authserv-id."""
    me = hostname.lower()
    return sum(1 for v in header.get_all(b"authentication-results") if _authserv_id(as_text(structured(v))) == me)


class Budget:
    """One message's view of the resolver: answers memoised, and a deadline for all of it."""

    def __init__(self, resolver, seconds: float, clock=time.monotonic):
        self._r = resolver
        self._clock = clock
        self._deadline = clock() + seconds
        self._memo: dict[tuple[str, str], object] = {}

    def lookup(self, name: str, rdtype: str) -> list:
        key = (name.rstrip(".").lower(), rdtype)
        if key in self._memo:
            hit = self._memo[key]
            if isinstance(hit, DnsTempError):
                raise hit
            return list(hit)
        if self._clock() >= self._deadline:
            raise DnsTempError(f"{rdtype} {name}: DNS time budget for this message spent")
        try:
            answer = self._r.lookup(name, rdtype)
        except DnsTempError as exc:
            self._memo[key] = exc
            raise
        self._memo[key] = list(answer)
        return answer


class InboundAuth:
    """SPF + DKIM + DMARC + ARC with one resolver; ``check`` is blocking."""

    def __init__(self, hostname: str, resolver, *, dns_timeout: float = 5.0, sample=None, budget: float | None = None):
        self.hostname = hostname
        self.resolver = resolver
        self.dns_timeout = dns_timeout
        self._sample = sample  # DMARC pct draw (None = random)
        # Wall-clock budget for all the DNS of one message: past it every lookup is a temperror at once,
        # so a DNS outage costs a message seconds, not minutes of an executor thread.
        self.budget = budget if budget is not None else max(5.0, 3 * dns_timeout)

    @classmethod
    def from_settings(cls, settings, resolver=None) -> InboundAuth:
        from .dns import resolver_for

        return cls(settings.hostname, resolver or resolver_for(settings), dns_timeout=settings.dns_timeout)

    # --- DKIM / ARC -------------------------------------------------------------
    def _dnsfunc(self, resolver=None):
        resolver = resolver or self.resolver

        def txt(name, timeout=5):
            n = name.decode("ascii", "replace") if isinstance(name, bytes) else str(name)
            recs = resolver.lookup(n, "TXT")  # DnsTempError propagates to our caller
            return recs[0] if recs else None  # None -> dkimpy KeyFormatError -> fail

        return txt

    def verify_dkim(self, raw: bytes, resolver=None) -> list[DkimResult]:
        try:
            d = dkim.DKIM(raw, timeout=self.dns_timeout, logger=_quiet)
        except Exception as exc:  # unparseable message
            return [DkimResult("permerror", reason=f"message: {exc.__class__.__name__}")]
        sigs = [h for h in d.headers if h[0].lower() == b"dkim-signature"]
        if not sigs:
            return []
        out: list[DkimResult] = []
        dnsfunc = self._dnsfunc(resolver)
        for idx in range(min(len(sigs), MAX_DKIM_SIGNATURES)):
            dom = sel = b = ""
            try:
                v = dkim.DKIM(raw, timeout=self.dns_timeout, logger=_quiet)
                prep = v.verify_headerprep(idx)
                if prep:
                    sig = prep[0]
                    dom = _safe_domain(sig.get(b"d")) or ""
                    sel = _safe_domain(sig.get(b"s")) or ""
                    m = _B_RE.match(re.sub(rb"\s+", b"", sig.get(b"b", b"")).decode("ascii", "replace"))
                    b = m.group(0) if m else ""
                ok = v.verify(idx, dnsfunc=dnsfunc)
                out.append(DkimResult("pass" if ok else "fail", dom, sel, b, "" if ok else "signature did not verify"))
            except DnsTempError as exc:
                out.append(DkimResult("temperror", dom, sel, b, str(exc)))
            except (dkim.KeyFormatError, dkim.ValidationError) as exc:
                # RFC 8601 §2.7.1: a signature that fails verification (body hash mismatch, key too small
                # or unusable) is "fail"; a signature we cannot even evaluate is "permerror".
                kind = "fail" if isinstance(exc, dkim.KeyFormatError) or "body hash" in str(exc) else "permerror"
                out.append(DkimResult(kind, dom, sel, b, str(exc)[:100]))
            except dkim.DKIMException as exc:
                out.append(DkimResult("permerror", dom, sel, b, str(exc)[:100]))
            except Exception as exc:  # dkimpy on hostile input: never let it escape the session
                out.append(DkimResult("permerror", dom, sel, b, exc.__class__.__name__))
        return out

    def verify_arc(self, raw: bytes, resolver=None) -> tuple[str, str]:
        if not Header(raw).count(b"arc-seal"):
            return "none", ""
        try:
            a = dkim.ARC(raw, timeout=self.dns_timeout, logger=_quiet)
            cv, _results, reason = a.verify(dnsfunc=self._dnsfunc(resolver))
        except DnsTempError as exc:
            return "fail", f"temporary DNS failure: {exc}"
        except Exception as exc:
            return "fail", exc.__class__.__name__
        if cv is None:
            return "fail", str(reason)
        cv = cv.decode() if isinstance(cv, bytes) else str(cv)
        return (cv if cv in ("pass", "fail", "none") else "fail"), str(reason)

    # --- everything ---------------------------------------------------------------
    def check(self, raw: bytes, *, client_ip: str, helo: str, mail_from: str) -> Verdict:
        header = Header(raw)  # postern.mail.header: the one view, with its caps
        r = Budget(self.resolver, self.budget)
        helo_res = spf_mod.check_helo(r, client_ip, helo, querytime=self.budget)
        spf_res = spf_mod.check_mailfrom(r, client_ip, mail_from, helo, querytime=self.budget)
        dkim_res = self.verify_dkim(raw, r)
        arc_res, arc_reason = self.verify_arc(raw, r)
        domains = _from_domains(header)
        dkim_pairs = [(r.result, r.domain) for r in dkim_res]
        kw = {"sample": self._sample} if self._sample else {}
        if domains:
            results = [dmarc_mod.evaluate(r, d, spf_res.result, spf_res.domain, dkim_pairs, **kw)
                       for d in domains]
        else:
            results = [dmarc_mod.evaluate(r, None, spf_res.result, spf_res.domain, dkim_pairs)]
        # Several From domains (RFC 7489 §6.6.1): every one must pass; the strictest disposition wins.
        order = {"none": 0, "quarantine": 1, "reject": 2}
        dm = max(results, key=lambda r: (r.result == "fail", order.get(r.disposition, 0)))
        ignored = _count_claims(header, self.hostname)
        action = "accept"
        reply = None
        if dm.result == "fail" and dm.disposition == "reject":
            action = "reject"
            reply = status.DMARC_REJECT.with_text(f"Rejected by DMARC policy of {dm.from_domain}")
        elif dm.result == "fail" and dm.disposition == "quarantine":
            action = "quarantine"
        hdr = self.header(spf_res, helo_res, dkim_res, dm, arc_res, ignored)
        if action != "accept":
            log.info("dmarc %s ip=%s from_domain=%s spf=%s dkim=%s", action, client_ip, dm.from_domain,
                     spf_res.result, ",".join(r.result for r in dkim_res) or "none")
        return Verdict(action, hdr, reply, spf_res, helo_res, tuple(dkim_res), dm, arc_res, ignored,
                       tuple(x for x in (arc_reason,) if x))

    async def acheck(self, backend, raw: bytes, **kw) -> Verdict:
        return await backend.run(self.check, raw, **kw)

    # --- RFC 8601 ----------------------------------------------------------------------
    def header(self, spf_res, helo_res, dkim_res, dm, arc_res, ignored: int = 0) -> bytes:
        parts: list[str] = []
        # spf for the MAIL FROM identity (RFC 8601 §2.7.2 smtp.mailfrom: the domain, safe form)
        sender = _safe_domain(spf_res.domain) if spf_res.domain else None
        parts.append(f"spf={spf_res.result}" + (f" smtp.mailfrom={sender}" if sender else ""))
        h = _safe_domain(helo_res.domain) if helo_res.domain else None
        if h:
            parts.append(f"spf={helo_res.result} smtp.helo={h}")
        if not dkim_res:
            parts.append("dkim=none")
        for r in dkim_res:
            s = f"dkim={r.result}"
            if r.result in ("temperror", "permerror", "fail") and r.reason:
                s += f" ({_comment(r.reason)})"
            if r.domain:
                s += f" header.d={r.domain}"
            if r.selector:
                s += f" header.s={r.selector}"
            if r.b:
                s += f" header.b={r.b}"
            parts.append(s)
        dmarc = f"dmarc={dm.result}"
        if dm.result in ("pass", "fail"):
            dmarc += f" (p={dm.policy} dis={dm.disposition})"
        if dm.from_domain:
            dmarc += f" header.from={dm.from_domain}"
        parts.append(dmarc)
        parts.append(f"arc={arc_res}")
        sid = _safe_domain(self.hostname) or "localhost"
        head = f"Authentication-Results: {sid}"
        if ignored:
            head += f" ({ignored} earlier Authentication-Results with this authserv-id ignored)"
        return (head + ";\r\n\t" + ";\r\n\t".join(parts) + "\r\n").encode("ascii", "replace")


def _comment(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9 .,:_=@/-]", "", text)[:60]


class _Quiet:
    """dkimpy logs every failure at error level; a forged signature is not our error."""

    def debug(self, *a, **k):
        pass

    info = warning = error = debug


_quiet = _Quiet()
