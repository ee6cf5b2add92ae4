"""Reports sent to reports@<domain>: SMTP -> router -> reports function -> summary -> admin HTTPS route.

The router never reads the body: it routes reports@ to the reports queue; the reports function
(with its own IAM role, through the local AWS-rules proxy) reads the spool object and stores a
summary or a refusal. Parsing and hostile inputs in detail: tests/unit/test_reports.py.
"""

from __future__ import annotations

import base64
import gzip
import json
import smtplib
import urllib.error
import urllib.request

from report_samples import dmarc_xml, message, tls_json


def get(stack, path: str, user: str, pw: str):
    auth = base64.b64encode(f"{user}:{pw}".encode()).decode()
    req = urllib.request.Request(stack.http_url + path, headers={"Authorization": f"Basic {auth}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_reports_are_summarised_and_shown_to_admins_only(stack, new_user):
    admin, pw = new_user("admin")
    domain = admin.split("@")[1]
    mails = [message(gzip.compress(dmarc_xml(domain)), "application/gzip", "r.xml.gz"),
             message(gzip.compress(tls_json()), "application/tlsrpt+gzip", "r.json.gz"),
             message(gzip.compress(b"<" + b" " * (20 * 1024 * 1024)), "application/gzip", "bomb.xml.gz")]
    with smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=30) as c:
        for raw in mails:
            assert c.sendmail("noreply@reporter.test", [f"Reports@{domain}"], raw) == {}
    stack.drain()

    assert get(stack, f"/admin/reports/dmarc?domain={domain}", admin, pw)[0] == 403
    stack.directory.set_admin(admin, True)
    status, s = get(stack, f"/admin/reports/dmarc?domain={domain}&days=30", admin, pw)
    assert status == 200, s
    assert (s["reports"], s["passed"], s["failed"]) == (1, 5, 3)
    assert s["failing"] == [{"ip": "203.0.113.9", "count": 3}] and s["refused"] == {"ratio": 1}
    status, s = get(stack, f"/admin/reports/tls?domain={domain}&days=30", admin, pw)
    assert (s["reports"], s["passed"], s["failed"]) == (1, 5326, 2)
    assert get(stack, "/admin/reports/dmarc?domain=not-ours.test", admin, pw)[0] == 404
    assert get(stack, f"/admin/reports/dmarc?domain={domain}&days=0", admin, pw)[0] == 400
