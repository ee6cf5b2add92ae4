"""Report summaries: written by the reports function, read by ``postern report`` and the admin route.

In:   parsed reports (:class:`~postern.reports.dmarc.DmarcReport`,
      :class:`~postern.reports.tlsrpt.TlsReport`) or refusals, and an item layer on the state
      table (keys ``keys.report_key``: one partition per kind and receiving domain, sorted by
      the end of the reported period).
Out:  :class:`ReportStore`: ``put`` (one PutItem per report; a report delivered twice overwrites
      itself: the key is the reporter's own id), ``put_refused``, ``list(kind, domain, since)``;
      :func:`summarise` -> :class:`Summary` (reporters, report count, pass/fail message or
      session counts, the failing source IPs with their counts, refusals by reason) and
      :func:`render` (the text ``postern report`` prints). :func:`as_json` for the HTTPS route.
Fails: a state-table fault raises StoreUnavailable (the reports function's record is retried).

An item stays far below DynamoDB's 400 KB: the MAX_ROWS largest rows of a report are kept (the
totals count every row), each text field is already cut to 255 characters by the parsers. Items
expire after ``POSTERN_REPORT_RETENTION_DAYS`` (the table's TTL).
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import dataclass, field

from .. import keys
from .dmarc import DmarcReport
from .errors import ReportRefused
from .tlsrpt import TlsReport

MAX_ROWS = 200
MAX_FAILURES = 50
KINDS = ("dmarc", "tls")
REFUSED = "refused"


def _id(org: str, report_id: str) -> str:
    return hashlib.sha256(f"{org}\0{report_id}".encode()).hexdigest()[:20]


class ReportStore:
    def __init__(self, items, retention_days: int = 400, clock=time.time):
        self.items = items
        self.retention = retention_days * 86400
        self._clock = clock

    def put(self, domain: str, report, queue_id: str = "", mail_from: str = "") -> dict:
        if isinstance(report, DmarcReport):
            kind = "dmarc"
            rows = sorted(report.rows, key=lambda r: -r.count)
            body = {"policy_domain": report.domain, "policy": report.policy, "messages": report.messages,
                    "passed": report.passed, "more_rows": max(0, len(rows) - MAX_ROWS),
                    "rows": [[r.source_ip, r.count, r.disposition, r.dkim, r.spf, r.header_from]
                             for r in rows[:MAX_ROWS]]}
        elif isinstance(report, TlsReport):
            kind = "tls"
            body = {"successful": report.successful, "failed": report.failed,
                    "policies": [{"type": p.policy_type, "domain": p.domain, "successful": p.successful,
                                  "failed": p.failed,
                                  "failures": [[f.result_type, f.sending_ip, f.receiving_mx, f.sessions]
                                               for f in sorted(p.failures, key=lambda f: -f.sessions)[:MAX_FAILURES]]}
                                 for p in report.policies[:MAX_ROWS]]}
        else:
            raise TypeError(f"not a report: {report!r}")
        item = {**keys.report_key(kind, domain, report.end, _id(report.org, report.report_id)), "kind": kind,
                "org": report.org, "report_id": report.report_id, "begin": report.begin, "end": report.end,
                "queue_id": queue_id, "from": mail_from[:320], "expires": int(self._clock() + self.retention), **body}
        self.items.put(item)
        return item

    def put_refused(self, domain: str, refusal: ReportRefused, queue_id: str, mail_from: str = "",
                    received_at: float | None = None) -> dict:
        at = int(received_at or self._clock())
        item = {**keys.report_key(REFUSED, domain, at, queue_id or _id(str(at), refusal.text)), "kind": REFUSED,
                "reason": refusal.reason, "text": refusal.text[:255], "queue_id": queue_id, "from": mail_from[:320],
                "end": at, "expires": int(self._clock() + self.retention)}
        self.items.put(item)
        return item

    def list(self, kind: str, domain: str, since: float = 0) -> list[dict]:
        return list(self.items.query(keys.report_pk(kind, domain), gt=keys.report_sk_from(since)))


@dataclass
class Summary:
    kind: str  # dmarc | tls
    domains: list[str]
    days: int
    reports: int = 0
    reporters: Counter = field(default_factory=Counter)  # org -> reports
    passed: int = 0  # DMARC: messages passing; TLS: successful sessions
    failed: int = 0
    failing: Counter = field(default_factory=Counter)  # source IP (DMARC) / sending MTA IP (TLS) -> count
    failure_types: Counter = field(default_factory=Counter)  # TLS result types
    refused: Counter = field(default_factory=Counter)  # reason -> reports refused


def summarise(kind: str, domains: list[str], days: int, reports: list[dict], refused: list[dict]) -> Summary:
    s = Summary(kind, domains, days)
    for r in reports:
        s.reports += 1
        s.reporters[r.get("org") or "(unnamed)"] += 1
        if kind == "dmarc":
            s.passed += int(r.get("passed", 0))
            s.failed += int(r.get("messages", 0)) - int(r.get("passed", 0))
            for ip, count, _disp, dkim, spf, *_ in r.get("rows", []):
                if dkim != "pass" and spf != "pass":
                    s.failing[ip] += int(count)
        else:
            s.passed += int(r.get("successful", 0))
            s.failed += int(r.get("failed", 0))
            for p in r.get("policies", []):
                for result_type, ip, _mx, sessions in p.get("failures", []):
                    s.failing[ip or "(unknown)"] += int(sessions)
                    s.failure_types[result_type] += int(sessions)
    for r in refused:
        s.refused[r.get("reason", "?")] += 1
    return s


def render(s: Summary, top: int = 20) -> str:
    unit = "messages" if s.kind == "dmarc" else "sessions"
    what = "DMARC aggregate" if s.kind == "dmarc" else "TLS-RPT"
    lines = [f"{what} reports for {', '.join(s.domains) or '(no domains)'}, last {s.days} days: {s.reports} reports"]
    if s.reporters:
        lines.append("sources: " + ", ".join(f"{org} ({n})" for org, n in s.reporters.most_common(top)))
    total = s.passed + s.failed
    pct = f" ({100 * s.passed / total:.1f}% pass)" if total else ""
    label = ("pass", "fail") if s.kind == "dmarc" else ("successful", "failed")
    lines.append(f"{unit}: {s.passed} {label[0]}, {s.failed} {label[1]}{pct}")
    if s.failure_types:
        lines.append("failure types: " + ", ".join(f"{t} {n}" for t, n in s.failure_types.most_common(top)))
    if s.failing:
        lines.append(f"failing {'source' if s.kind == 'dmarc' else 'sending'} IPs ({unit}):")
        lines += [f"  {ip:<39} {n}" for ip, n in s.failing.most_common(top)]
    if s.refused:
        lines.append("refused reports: " + ", ".join(f"{reason} {n}" for reason, n in sorted(s.refused.items())))
    return "\n".join(lines) + "\n"


def as_json(s: Summary, top: int = 100) -> dict:
    return {"kind": s.kind, "domains": s.domains, "days": s.days, "reports": s.reports,
            "sources": dict(s.reporters.most_common(top)), "passed": s.passed, "failed": s.failed,
            "failing": [{"ip": ip, "count": n} for ip, n in s.failing.most_common(top)],
            "failureTypes": dict(s.failure_types), "refused": dict(s.refused)}


MAX_DAYS = 400


def domains_for(directory, domain: str | None) -> list[str]:
    """The receiving domains a summary covers: ``domain`` (which must be one Postern serves:
    NoSuchDomain otherwise, InvalidAddress for a name that is no domain), or every local domain."""
    from ..address import normalize_domain
    from ..errors import NoSuchDomain

    if not domain:
        return [d.name for d in directory.list_domains()]
    name = normalize_domain(domain)
    if not directory.is_local_domain(name):
        raise NoSuchDomain(f"No such domain {name}")
    return [name]


def summary_for(directory, store: ReportStore, kind: str, domain: str | None, days: int) -> Summary:
    """What ``postern report KIND [--domain D] [--days N]``, the admin route and JMAP's Report/get
    show: one selection rule, one summary."""
    if kind not in KINDS:
        raise ValueError(f"report kinds: {', '.join(KINDS)}")
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be between 1 and {MAX_DAYS}")
    return collect(store, kind, domains_for(directory, domain), days)


def collect(store: ReportStore, kind: str, domains: list[str], days: int, now: float | None = None) -> Summary:
    """The summary over ``domains`` for the last ``days`` days (one Query per domain and kind)."""
    since = (now if now is not None else time.time()) - days * 86400
    reports, refused = [], []
    for d in domains:
        reports += store.list(kind, d, since)
        refused += [r for r in store.list(REFUSED, d, since)]
    return summarise(kind, domains, days, reports, refused)


def report_store(settings=None, clients=None) -> ReportStore:
    from ..aws import get_clients
    from ..config import get_settings
    from ..items import DynamoItems

    s = settings or get_settings()
    c = clients or get_clients()
    return ReportStore(DynamoItems(lambda: c.dynamodb, s.state_table, "state"), s.report_retention_days)
