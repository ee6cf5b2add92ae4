"""DMARC aggregate reports (RFC 7489 §7.2, Appendix C): XML -> :class:`DmarcReport`.

In:   the decompressed XML document (:mod:`postern.reports.archive` bounded its size).
Out:  :func:`parse` -> :class:`DmarcReport`: who reported (org, report id, period), the policy
      they saw published, and one :class:`DmarcRow` per ``<record>`` (source IP, message count,
      the disposition applied and the DMARC-aligned DKIM and SPF results).
Fails: :class:`~postern.reports.errors.ReportRefused`: ``hostile`` for a DTD (entity expansion,
      external entities: defusedxml refuses them before any expansion), nesting deeper than
      MAX_DEPTH or more than MAX_ELEMENTS elements; ``malformed`` for XML that does not parse or
      lacks what every report has (report_id, date_range, policy_published/domain);
      ``not_a_report`` for another root element.

The XML is read with defusedxml's ``iterparse``, event by event: each ``<record>`` is summarised
and cleared as soon as it ends, so memory follows one record, not the document; depth and
element counts are checked on every start tag. Values are read as text, checked (IP addresses,
counts as integers within 0..2^31, times as epoch seconds) and cut to MAX_TEXT characters.
Namespaces (the DMARCbis draft's ``urn:ietf:params:xml:ns:dmarc-2.0``) are ignored.
"""

from __future__ import annotations

import io
import ipaddress
from dataclasses import dataclass
from xml.etree.ElementTree import ParseError

import defusedxml
import defusedxml.ElementTree as SafeET

from .errors import ReportRefused

MAX_DEPTH = 16  # a report is 6 levels deep
MAX_ELEMENTS = 500_000
MAX_TEXT = 255
MAX_COUNT = 2**31


@dataclass(frozen=True)
class DmarcRow:
    source_ip: str
    count: int
    disposition: str  # none | quarantine | reject
    dkim: str  # the DMARC-aligned DKIM result: pass | fail
    spf: str  # the DMARC-aligned SPF result: pass | fail
    header_from: str = ""

    @property
    def passed(self) -> bool:
        return self.dkim == "pass" or self.spf == "pass"  # RFC 7489 §4.2: either aligned pass passes DMARC


@dataclass(frozen=True)
class DmarcReport:
    org: str
    report_id: str
    begin: int
    end: int
    domain: str  # policy_published/domain
    policy: str  # policy_published/p
    rows: tuple[DmarcRow, ...]
    email: str = ""

    @property
    def messages(self) -> int:
        return sum(r.count for r in self.rows)

    @property
    def passed(self) -> int:
        return sum(r.count for r in self.rows if r.passed)


def _local(tag) -> str:
    tag = tag if isinstance(tag, str) else ""
    return tag.rsplit("}", 1)[-1]


def _text(elem) -> str:
    return (elem.text or "").strip()[:MAX_TEXT] if elem is not None else ""


def _find(elem, *path):
    for name in path:
        if elem is None:
            return None
        elem = next((c for c in elem if _local(c.tag) == name), None)
    return elem


def _int(text: str, what: str, low: int = 0, high: int = MAX_COUNT) -> int:
    try:
        n = int(text)
    except ValueError:
        raise ReportRefused("malformed", f"{what} is not a number: {text[:40]!r}") from None
    if not low <= n <= high:
        raise ReportRefused("malformed", f"{what} out of range: {n}")
    return n


def _row(record) -> DmarcRow:
    row = _find(record, "row")
    ip = _text(_find(row, "source_ip"))
    try:
        ip = str(ipaddress.ip_address(ip))
    except ValueError:
        raise ReportRefused("malformed", f"record with a bad source_ip {ip[:60]!r}") from None
    evaluated = _find(row, "policy_evaluated")
    return DmarcRow(
        source_ip=ip,
        count=_int(_text(_find(row, "count")), "count"),
        disposition=_text(_find(evaluated, "disposition")).lower(),
        dkim=_text(_find(evaluated, "dkim")).lower(),
        spf=_text(_find(evaluated, "spf")).lower(),
        header_from=_text(_find(record, "identifiers", "header_from")).lower(),
    )


def parse(doc: bytes) -> DmarcReport:
    depth = elements = 0
    path: list[str] = []
    fields: dict[str, str] = {}
    rows: list[DmarcRow] = []
    root = None
    try:
        for event, elem in SafeET.iterparse(io.BytesIO(doc), events=("start", "end"), forbid_dtd=True):
            if event == "start":
                depth += 1
                elements += 1
                if depth > MAX_DEPTH:
                    raise ReportRefused("hostile", f"XML nested deeper than {MAX_DEPTH} levels")
                if elements > MAX_ELEMENTS:
                    raise ReportRefused("hostile", f"more than {MAX_ELEMENTS} XML elements")
                name = _local(elem.tag)
                if root is None:
                    root = name
                    if root != "feedback":
                        raise ReportRefused("not_a_report", f"root element <{root[:40]}>, not <feedback>")
                path.append(name)
                continue
            name = path.pop()
            depth -= 1
            where = "/".join(path[1:] + [name])
            if where == "record":
                rows.append(_row(elem))
                elem.clear()
            elif where in ("report_metadata/org_name", "report_metadata/email", "report_metadata/report_id",
                           "report_metadata/date_range/begin", "report_metadata/date_range/end",
                           "policy_published/domain", "policy_published/p"):
                fields[where] = _text(elem)
    except ReportRefused:
        raise
    except defusedxml.DTDForbidden:
        raise ReportRefused("hostile", "XML with a DTD (entity expansion is refused)") from None
    except (defusedxml.EntitiesForbidden, defusedxml.ExternalReferenceForbidden, defusedxml.NotSupportedError):
        raise ReportRefused("hostile", "XML entities or external references are refused") from None
    except (ParseError, ValueError, UnicodeError) as exc:
        raise ReportRefused("malformed", f"XML does not parse ({str(exc)[:80]})") from None
    except RecursionError:
        raise ReportRefused("hostile", "XML nested too deep") from None
    if root is None:
        raise ReportRefused("malformed", "empty document")
    missing = [k for k in ("report_metadata/report_id", "report_metadata/date_range/begin",
                           "report_metadata/date_range/end", "policy_published/domain") if not fields.get(k)]
    if missing:
        raise ReportRefused("malformed", f"missing {', '.join(missing)}")
    begin = _int(fields["report_metadata/date_range/begin"], "date_range/begin", 0, 2**34)
    end = _int(fields["report_metadata/date_range/end"], "date_range/end", 0, 2**34)
    return DmarcReport(
        org=fields.get("report_metadata/org_name", ""),
        email=fields.get("report_metadata/email", ""),
        report_id=fields["report_metadata/report_id"],
        begin=begin,
        end=max(begin, end),
        domain=fields["policy_published/domain"].lower(),
        policy=fields.get("policy_published/p", "").lower(),
        rows=tuple(rows),
    )
