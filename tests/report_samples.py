"""Sample DMARC aggregate (RFC 7489 Appendix C) and TLS-RPT (RFC 8460 §4.5) reports, and a message carrying one.

Used by tests/unit/test_reports.py and tests/e2e/test_reports_e2e.py (``from report_samples import ...``).
"""

from __future__ import annotations

import json
from email import policy
from email.message import EmailMessage


def dmarc_xml(domain="example.test", rows=(("192.0.2.1", 5, "pass", "pass"), ("203.0.113.9", 3, "fail", "fail")),
              report_id="r-1", org="google.com", end=1_800_000_000) -> bytes:
    records = "".join(
        f"<record><row><source_ip>{ip}</source_ip><count>{n}</count><policy_evaluated><disposition>none"
        f"</disposition><dkim>{dk}</dkim><spf>{sp}</spf></policy_evaluated></row><identifiers><header_from>"
        f"{domain}</header_from></identifiers></record>" for ip, n, dk, sp in rows)
    return (f'<?xml version="1.0" encoding="UTF-8"?><feedback><report_metadata><org_name>{org}</org_name>'
            f"<email>noreply-dmarc@{org}</email><report_id>{report_id}</report_id><date_range><begin>{end - 86400}"
            f"</begin><end>{end}</end></date_range></report_metadata><policy_published><domain>{domain}</domain>"
            f"<p>none</p></policy_published>{records}</feedback>").encode()


def tls_json(failures=(("certificate-expired", "192.0.2.50", "mail.example.test", 2),), end="2027-01-15T23:59:59Z"):
    return json.dumps({
        "organization-name": "Company-X", "date-range": {"start-datetime": "2027-01-15T00:00:00Z", "end-datetime": end},
        "contact-info": "sts-reporting@company-x.example", "report-id": "5065427c-23d3-47ca-b6e0-946ea0e8c4be",
        "policies": [{"policy": {"policy-type": "sts", "policy-domain": "example.test"},
                      "summary": {"total-successful-session-count": 5326, "total-failure-session-count": 2},
                      "failure-details": [{"result-type": t, "sending-mta-ip": ip, "receiving-mx-hostname": mx,
                                           "failed-session-count": n} for t, ip, mx, n in failures]}]}).encode()


def message(attachment: bytes, ctype: str, filename: str) -> bytes:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "noreply-dmarc@google.com", "reports@example.test", "Report"
    m.set_content("A report.")
    maintype, subtype = ctype.split("/")
    m.add_attachment(attachment, maintype=maintype, subtype=subtype, filename=filename)
    return m.as_bytes(policy=policy.SMTP)  # CRLF line ends, as SMTP carries them
