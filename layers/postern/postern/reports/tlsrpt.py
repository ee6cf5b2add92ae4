"""SMTP TLS reports (RFC 8460 §4): JSON -> :class:`TlsReport`.

In:   the decompressed JSON document (:mod:`postern.reports.archive` bounded its size).
Out:  :func:`parse` -> :class:`TlsReport`: who reported, the period, and per policy (STS, TLSA or
      no policy found) the successful and failed session counts with the failure details (result
      type, sending MTA IP, receiving MX host, failed sessions).
Fails: :class:`~postern.reports.errors.ReportRefused`: ``malformed`` for JSON that does not parse,
      a field of the wrong type, counts that are no integers in 0..2^53, a date-time that is not
      RFC 3339, or a report without its required members (§4.4); ``hostile`` for nesting deeper
      than Python's JSON decoder allows (it stops with RecursionError, which is caught) or more
      than MAX_POLICIES policies / MAX_DETAILS failure details.

Only the members this module names are read; anything else in the document is ignored, so an
unexpected shape costs nothing but the (capped) decode.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from .errors import ReportRefused

MAX_POLICIES = 1000
MAX_DETAILS = 10_000
MAX_TEXT = 255
MAX_COUNT = 2**53


@dataclass(frozen=True)
class TlsFailure:
    result_type: str
    sending_ip: str
    receiving_mx: str
    sessions: int


@dataclass(frozen=True)
class TlsPolicy:
    policy_type: str  # sts | tlsa | no-policy-found
    domain: str
    successful: int
    failed: int
    failures: tuple[TlsFailure, ...]


@dataclass(frozen=True)
class TlsReport:
    org: str
    report_id: str
    begin: int
    end: int
    policies: tuple[TlsPolicy, ...]
    contact: str = ""

    @property
    def successful(self) -> int:
        return sum(p.successful for p in self.policies)

    @property
    def failed(self) -> int:
        return sum(p.failed for p in self.policies)


def _obj(v, what: str) -> dict:
    if not isinstance(v, dict):
        raise ReportRefused("malformed", f"{what} is not an object")
    return v


def _str(d: dict, key: str, required: bool = True) -> str:
    v = d.get(key)
    if v is None and not required:
        return ""
    if not isinstance(v, str) or (required and not v):
        raise ReportRefused("malformed", f"{key} missing or not a string")
    return v.strip()[:MAX_TEXT]


def _count(d: dict, key: str) -> int:
    v = d.get(key, 0)
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_COUNT:
        raise ReportRefused("malformed", f"{key} is not a count")
    return v


def _time(text: str, what: str) -> int:
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))  # RFC 3339 (§4.4 "date-time")
    except ValueError:
        raise ReportRefused("malformed", f"{what} is not an RFC 3339 date-time") from None
    if t.tzinfo is None:
        raise ReportRefused("malformed", f"{what} has no time zone")
    return int(t.timestamp())


def _policy(p) -> TlsPolicy:
    p = _obj(p, "policies[]")
    pol = _obj(p.get("policy"), "policy")
    summary = _obj(p.get("summary"), "summary")
    details = p.get("failure-details", [])
    if not isinstance(details, list):
        raise ReportRefused("malformed", "failure-details is not an array")
    if len(details) > MAX_DETAILS:
        raise ReportRefused("hostile", f"more than {MAX_DETAILS} failure details")
    failures = []
    for f in details:
        f = _obj(f, "failure-details[]")
        failures.append(TlsFailure(_str(f, "result-type"), _str(f, "sending-mta-ip", False),
                                   _str(f, "receiving-mx-hostname", False).lower().rstrip("."),
                                   _count(f, "failed-session-count")))
    return TlsPolicy(_str(pol, "policy-type").lower(), _str(pol, "policy-domain").lower().rstrip("."),
                     _count(summary, "total-successful-session-count"),
                     _count(summary, "total-failure-session-count"), tuple(failures))


def parse(doc: bytes) -> TlsReport:
    try:
        d = json.loads(doc)
    except RecursionError:
        raise ReportRefused("hostile", "JSON nested too deep") from None
    except (ValueError, UnicodeError) as exc:
        raise ReportRefused("malformed", f"JSON does not parse ({str(exc)[:80]})") from None
    if not isinstance(d, dict) or "policies" not in d:
        raise ReportRefused("not_a_report", "not a TLS-RPT report (no policies)")
    rng = _obj(d.get("date-range"), "date-range")
    policies = d["policies"]
    if not isinstance(policies, list):
        raise ReportRefused("malformed", "policies is not an array")
    if len(policies) > MAX_POLICIES:
        raise ReportRefused("hostile", f"more than {MAX_POLICIES} policies")
    begin = _time(_str(rng, "start-datetime"), "start-datetime")
    end = _time(_str(rng, "end-datetime"), "end-datetime")
    return TlsReport(org=_str(d, "organization-name"), report_id=_str(d, "report-id"), begin=begin,
                     end=max(begin, end), policies=tuple(_policy(p) for p in policies),
                     contact=_str(d, "contact-info", False))
