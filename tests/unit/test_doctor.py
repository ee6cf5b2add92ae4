"""postern.doctor's checks on a scripted world (no network): what each finding says.

Live, against fake DNS, the local HTTPS front and the gateway's certificates: tests/e2e/test_doctor_e2e.py.
"""

from __future__ import annotations

import datetime as dt

from postern.clientoffer import public_offer
from postern.config import Settings
from postern.dnsplan import Facts, plan
from postern.doctor import run_checks
from postern.mtasts import settings_policy

NOW = dt.datetime(2027, 1, 1, tzinfo=dt.timezone.utc)
POLICY = settings_policy(Settings(hostname="mail.example.com"))


class World:
    def __init__(self, facts, not_after="Jan 10 00:00:00 2027 GMT"):
        self.dns: dict[tuple[str, str], list[str]] = {}
        for r in plan(facts)[0]:
            self.dns.setdefault((r.name, r.type), []).append(r.value)
        self.dns[("mail.example.com", "A")] = ["192.0.2.1"]
        self.not_after = not_after

    def lookup(self, name, rdtype):
        return self.dns.get((name, rdtype), [])

    def fetch(self, host, path):
        if host.startswith("mta-sts."):
            return 200, POLICY
        return 200, '<?xml version="1.0"?><x/>'

    def certificate(self, host, port, connect=""):
        return {"notAfter": self.not_after}


def facts(**kw):
    return Facts("example.com", "mail.example.com", transport="mx", nat_address="192.0.2.9", mta_sts_policy=POLICY,
                 dkim_records=(("postern._domainkey.example.com", "v=DKIM1; k=rsa; p=AAAA"),), **kw)


def wrong(checks):
    return {c.name: c.text for c in checks if not c.ok}


def test_findings_say_what_to_change():
    f = facts()
    w = World(f)
    w.dns[("9.2.0.192.in-addr.arpa", "PTR")] = ["out.example.com."]
    w.dns[("out.example.com", "A")] = ["192.0.2.99"]
    w.dns[("postern._domainkey.example.com", "TXT")] = ["v=DKIM1; k=rsa; p=OLDKEY"]
    w.dns[("_dmarc.example.com", "TXT")] = ["v=DMARC1; p=reject; rua=mailto:reports@example.com"]  # p= is theirs
    found = wrong(run_checks(f, w, public_offer("mail.example.com"), now=NOW))
    assert set(found) == {"TXT postern._domainkey.example.com", "certificate imaps mail.example.com:993",
                          "certificate pop3s mail.example.com:995", "certificate submissions mail.example.com:465",
                          "PTR 192.0.2.9"}, found
    assert "publish postern._domainkey.example.com" not in found["TXT postern._domainkey.example.com"]
    assert "v=DKIM1; k=rsa; p=AAAA" in found["TXT postern._domainkey.example.com"]
    assert "9 days left: renew it" in found["certificate imaps mail.example.com:993"]
    assert "does not resolve back" in found["PTR 192.0.2.9"]


def test_a_healthy_domain_is_all_ok():
    f = facts()
    w = World(f, not_after="Jun  1 00:00:00 2027 GMT")
    w.dns[("9.2.0.192.in-addr.arpa", "PTR")] = ["out.example.com."]
    w.dns[("out.example.com", "A")] = ["192.0.2.9"]
    assert wrong(run_checks(f, w, public_offer("mail.example.com"), now=NOW)) == {}


def test_the_https_names_present_a_certificate_that_verifies():
    """Deployed (the distribution known): one check per HTTPS name; CloudFront without the issued certificate
    presents *.cloudfront.net, which does not verify for webmail.<domain>, and the finding says why."""
    import ssl

    f = facts(web_target="d111111abcdef8.cloudfront.net")
    w = World(f, not_after="Jun  1 00:00:00 2027 GMT")
    w.dns[("9.2.0.192.in-addr.arpa", "PTR")] = ["out.example.com."]
    w.dns[("out.example.com", "A")] = ["192.0.2.9"]
    checks = run_checks(f, w, public_offer("mail.example.com"), now=NOW)
    names = [c.name for c in checks if c.name.startswith("certificate https ")]
    assert names == [f"certificate https {h}.example.com:443" for h in ("webmail", "autoconfig", "autodiscover",
                                                                           "mta-sts")]
    assert wrong(checks) == {}
    served = w.certificate

    def cloudfront_default(host, port, connect=""):
        if port == 443:
            raise ssl.SSLCertVerificationError(f"hostname '{host}' doesn't match '*.cloudfront.net'")
        return served(host, port, connect)

    w.certificate = cloudfront_default
    found = wrong(run_checks(f, w, public_offer("mail.example.com"), now=NOW))
    assert set(found) == set(names), found
    assert "postern web certificate" in found["certificate https webmail.example.com:443"]
    w.https_base = "http://127.0.0.1:8080"  # the local front: plain HTTP, no certificate to check
    assert not [c for c in run_checks(f, w, public_offer("mail.example.com"), now=NOW) if c.name in names]
