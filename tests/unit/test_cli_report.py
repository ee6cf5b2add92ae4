"""``postern user admin`` and ``postern report dmarc|tls`` on the state table (moto)."""

from __future__ import annotations

import io

from postern.cli import main
from postern.reports import dmarc, tlsrpt
from postern.reports.errors import ReportRefused
from postern.reports.summaries import report_store
from report_samples import dmarc_xml, tls_json


def test_admin_role_and_report_summaries(aws, directory):
    settings, clients, _ = aws

    def run(*argv):
        out = io.StringIO()
        return main(list(argv), settings=settings, clients=clients, out=out), out.getvalue()

    directory.add_domain("example.test")
    directory.add_domain("other.test")
    directory.add_user("ops@example.test", "pw")
    assert run("user", "admin", "ops@example.test")[0] == 0
    assert directory.get_user("ops@example.test").admin
    assert run("user", "admin", "ops@example.test", "--revoke")[0] == 0
    assert not directory.get_user("ops@example.test").admin

    import time

    end = int(time.time()) - 3600
    store = report_store(settings, clients)
    store.put("example.test", dmarc.parse(dmarc_xml(end=end)))
    store.put("other.test", dmarc.parse(dmarc_xml("other.test", rows=(("198.51.100.3", 4, "fail", "fail"),), end=end)))
    store.put("example.test", tlsrpt.parse(tls_json(end=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(end)))))
    store.put_refused("example.test", ReportRefused("hostile", "DTD"), "q9", "x@evil.test", end)

    rc, out = run("report", "dmarc", "--domain", "Example.TEST")
    assert rc == 0
    assert out.splitlines()[:3] == [
        "DMARC aggregate reports for example.test, last 7 days: 1 reports", "sources: google.com (1)",
        "messages: 5 pass, 3 fail (62.5% pass)"]
    assert "203.0.113.9" in out and "198.51.100.3" not in out and "refused reports: hostile 1" in out
    rc, out = run("report", "dmarc")  # every domain
    assert "example.test, other.test" in out and "198.51.100.3" in out and "messages: 5 pass, 7 fail" in out
    rc, out = run("report", "tls", "--domain", "example.test", "--days", "2")
    assert "sessions: 5326 successful, 2 failed" in out and "certificate-expired 2" in out and "192.0.2.50" in out
    assert run("report", "dmarc", "--domain", "nope.test")[0] != 0
