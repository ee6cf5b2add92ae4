"""Outbound transports against a scripted fake MX on 127.0.0.1 (real smtplib, real aiosmtpd).

DNS is a StaticResolver here (one test uses the loopback DNS server through
the real dnspython seam); MTA-STS policies come from a fake fetcher.
"""

from __future__ import annotations

import json
import socket
import ssl

import pytest
import trustme

from postern.config import Settings
from postern.dns import DnsTransient, MxAnswer, Resolver, StaticResolver
from postern.mtasts import MtaSts, Policy, PolicyError, parse_policy, parse_txt
from postern.transports.base import SendRequest, reply_status
from postern.transports.mx import MxTransport
from postern.transports.ses import SesTransport
from postern.transports.smarthost import SmarthostTransport
from postern_local.fakedns import FakeDNS
from postern_local.fakemx import FakeMX

MSG = b"From: alice@example.test\r\nTo: bob@remote.test\r\nSubject: hi\r\n\r\nhello\r\n.leading dot\r\n"


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def mx():
    with FakeMX("mx.remote.test") as server:
        yield server


def settings_for(port: int, **kw) -> Settings:
    return Settings(mx_port=port, outbound_timeout=kw.pop("timeout", 2.0), hostname="mail.example.test",
                    mta_sts=kw.pop("mta_sts", False), **kw)


def resolver(**extra) -> StaticResolver:
    r = StaticResolver(
        mx_records={"remote.test": [(10, "mx.remote.test")], "null.test": [(0, ".")],
                    "two.test": [(20, "mx2.two.test"), (10, "mx1.two.test")]},
        a_records={"mx.remote.test": ["127.0.0.1"], "mx1.two.test": ["127.0.0.2"], "mx2.two.test": ["127.0.0.1"],
                   "bare.test": ["127.0.0.1"]},
        failures={"servfail.test": DnsTransient("servfail.test: DNS server failure")},
    )
    for k, v in extra.items():
        getattr(r, k).update(v)
    return r


def req(*rcpts, domain="remote.test", data=MSG, mail_from="alice@example.test"):
    return SendRequest(mail_from, tuple(rcpts), data, domain, "Q1")


# (scripted RCPT replies, expected (ok, permanent, code, status) per recipient)
RCPT_TABLE = [
    ({}, [(True, False, 250, "2.0.0"), (True, False, 250, "2.0.0")]),
    ({"b@remote.test": "550 5.1.1 no such user"}, [(False, True, 550, "5.1.1"), (True, False, 250, "2.0.0")]),
    ({"b@remote.test": "451 4.3.0 try later"}, [(False, False, 451, "4.3.0"), (True, False, 250, "2.0.0")]),
    ({"b@remote.test": "550 5.1.1 no", "c@remote.test": "452 4.2.2 full"},
     [(False, True, 550, "5.1.1"), (False, False, 452, "4.2.2")]),
]


@pytest.mark.parametrize("script, expected", RCPT_TABLE)
def test_per_recipient_results_in_one_transaction(mx, script, expected):
    for addr, reply in script.items():
        mx.script.on_rcpt(addr, reply)
    t = MxTransport(settings_for(mx.port), resolver=resolver())
    results = t.send(req("b@remote.test", "c@remote.test"))
    assert [(r.ok, r.permanent, r.code, r.status) for r in results] == expected
    assert all(r.remote_mta == "mx.remote.test" for r in results)
    accepted = [r.recipient for r in results if r.ok]
    assert len(mx.messages) == (1 if accepted else 0)
    if accepted:
        assert mx.messages[0].rcpt_tos == accepted
        assert mx.messages[0].data == MSG  # byte for byte, dot-stuffing undone by the server


def test_data_rejection_applies_to_every_accepted_recipient(mx):
    mx.script.on_data("554 5.6.0 content rejected")
    results = MxTransport(settings_for(mx.port), resolver=resolver()).send(req("b@remote.test", "c@remote.test"))
    assert [(r.permanent, r.code, r.status, r.text) for r in results] == [(True, 554, "5.6.0", "content rejected")] * 2
    assert results[0].diagnostic == "smtp; 554 5.6.0 content rejected"


def test_null_sender_goes_out_as_empty_reverse_path(mx):
    results = MxTransport(settings_for(mx.port), resolver=resolver()).send(req("b@remote.test", mail_from=""))
    assert results[0].ok and mx.messages[0].mail_from in ("", "<>")  # aiosmtpd reports <> as "<>"


@pytest.mark.parametrize("domain, permanent, status", [
    ("null.test", True, "5.1.10"),  # RFC 7505
    ("nowhere.test", True, "5.1.2"),  # NXDOMAIN
    ("host.invalid", True, "5.1.2"),  # RFC 6761 §6.4
    ("servfail.test", False, "4.4.3"),
])
def test_dns_outcomes(domain, permanent, status):
    results = MxTransport(settings_for(closed_port()), resolver=resolver()).send(req(f"x@{domain}", domain=domain))
    assert [(r.ok, r.permanent, r.status) for r in results] == [(False, permanent, status)]


def test_no_mx_falls_back_to_the_domains_address(mx):
    # RFC 5321 §5.1: no MX records -> the domain itself is the mail exchanger
    results = MxTransport(settings_for(mx.port), resolver=resolver()).send(req("x@bare.test", domain="bare.test"))
    assert results[0].ok and results[0].remote_mta == "bare.test"


def test_hosts_tried_in_preference_order_falling_through_refusals(mx):
    # mx1 (pref 10) is 127.0.0.2 where nothing listens; mx2 (pref 20) answers
    results = MxTransport(settings_for(mx.port), resolver=resolver()).send(req("x@two.test", domain="two.test"))
    assert results[0].ok and results[0].remote_mta == "mx2.two.test"


def test_refused_connection_is_transient():
    results = MxTransport(settings_for(closed_port()), resolver=resolver()).send(req("b@remote.test"))
    assert [(r.ok, r.permanent, r.status) for r in results] == [(False, False, "4.4.1")]


def test_timeout_is_transient(mx):
    mx.script.data_delay = 1.0
    results = MxTransport(settings_for(mx.port, timeout=0.3), resolver=resolver()).send(req("b@remote.test"))
    assert [(r.ok, r.permanent, r.status) for r in results] == [(False, False, "4.4.2")]
    assert "timeout" in results[0].text


def test_4xx_at_mail_tries_next_host_then_stays_transient(mx):
    mx.script.mail.extend(["421 4.3.2 busy"])
    results = MxTransport(settings_for(mx.port), resolver=resolver()).send(req("b@remote.test"))
    assert [(r.permanent, r.code) for r in results] == [(False, 421)]


def test_real_dns_seam_against_loopback_server(mx):
    with FakeDNS() as dns:
        dns.add("remote.test", "MX", "10 mx.remote.test.").add("mx.remote.test", "A", "127.0.0.1")
        dns.add("null.test", "MX", "0 .")
        s = settings_for(mx.port, dns_nameservers=(dns.nameserver,), dns_timeout=1.0)
        t = MxTransport(s, resolver=Resolver(s))
        assert t.send(req("b@remote.test"))[0].ok
        assert t.send(req("x@null.test", domain="null.test"))[0].status == "5.1.10"
        assert Resolver(s).mx("null.test") == MxAnswer(null=True)


# --- TLS and MTA-STS ---------------------------------------------------------
@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture
def tls_mx(ca):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("mx.remote.test").configure_cert(ctx)
    with FakeMX("mx.remote.test", ssl_context=ctx) as server:
        yield server


def verified(ca) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


class FakeFetcher:
    def __init__(self, policies: dict[str, str]):
        self.policies = policies
        self.urls = []

    def __call__(self, url: str) -> str:
        self.urls.append(url)
        if url not in self.policies:
            raise OSError("no policy")
        return self.policies[url]


POLICY_URL = "https://mta-sts.remote.test/.well-known/mta-sts.txt"
ENFORCE = "version: STSv1\r\nmode: enforce\r\nmx: mx.remote.test\r\nmax_age: 86400\r\n"


def sts(fetcher, policy_id="20260101"):
    r = resolver(txt_records={"_mta-sts.remote.test": [f"v=STSv1; id={policy_id}"]})
    return r, MtaSts(r, fetcher)


def test_opportunistic_starttls_without_verification(tls_mx):
    # the certificate is from an unknown CA: opportunistic TLS still encrypts (RFC 7435)
    results = MxTransport(settings_for(tls_mx.port), resolver=resolver()).send(req("b@remote.test"))
    assert results[0].ok and len(tls_mx.messages) == 1


def test_mta_sts_enforce_delivers_over_verified_tls(tls_mx, ca):
    r, m = sts(FakeFetcher({POLICY_URL: ENFORCE}))
    t = MxTransport(settings_for(tls_mx.port), resolver=r, mtasts=m, verified_context=verified(ca))
    assert t.send(req("b@remote.test"))[0].ok


def test_mta_sts_enforce_refuses_unverifiable_certificate(tls_mx):
    r, m = sts(FakeFetcher({POLICY_URL: ENFORCE}))
    results = MxTransport(settings_for(tls_mx.port), resolver=r, mtasts=m).send(req("b@remote.test"))  # system CAs
    assert [(r_.ok, r_.permanent, r_.status) for r_ in results] == [(False, False, "4.7.5")]
    assert tls_mx.messages == []


def test_mta_sts_enforce_refuses_server_without_starttls(mx):
    r, m = sts(FakeFetcher({POLICY_URL: ENFORCE}))
    results = MxTransport(settings_for(mx.port), resolver=r, mtasts=m).send(req("b@remote.test"))
    assert results[0].status == "4.7.5" and mx.messages == []


def test_mta_sts_enforce_skips_mx_hosts_outside_the_policy(mx):
    r, m = sts(FakeFetcher({POLICY_URL: ENFORCE.replace("mx.remote.test", "*.elsewhere.test")}))
    results = MxTransport(settings_for(mx.port), resolver=r, mtasts=m).send(req("b@remote.test"))
    assert results[0].status == "4.7.5" and "policy" in results[0].text


def test_mta_sts_testing_mode_and_fetch_failure_do_not_block(mx):
    r, m = sts(FakeFetcher({POLICY_URL: ENFORCE.replace("enforce", "testing")}))
    assert MxTransport(settings_for(mx.port), resolver=r, mtasts=m).send(req("b@remote.test"))[0].ok
    r, m = sts(FakeFetcher({}))  # TXT published, policy unreachable: deliver as if none (RFC 8461 §5.1)
    assert MxTransport(settings_for(mx.port), resolver=r, mtasts=m).send(req("b@remote.test"))[0].ok


def test_mta_sts_policy_is_cached_by_id():
    f = FakeFetcher({POLICY_URL: ENFORCE})
    _, m = sts(f)
    assert m.policy_for("remote.test").enforced
    assert m.policy_for("remote.test").mx == ("mx.remote.test",)
    assert f.urls == [POLICY_URL]  # second lookup: same id, cached


@pytest.mark.parametrize("pattern, host, ok", [
    ("mx.remote.test", "mx.remote.test", True), ("mx.remote.test", "MX.Remote.Test.", True),
    ("*.remote.test", "mx1.remote.test", True), ("*.remote.test", "a.b.remote.test", False),
    ("*.remote.test", "remote.test", False), ("mx.remote.test", "mx2.remote.test", False),
])
def test_policy_mx_patterns(pattern, host, ok):
    assert Policy("enforce", (pattern,), 86400).matches(host) is ok


@pytest.mark.parametrize("text", ["version: STSv2\nmode: enforce\nmx: a\nmax_age: 1\n", "version: STSv1\nmode: sure\n",
                                  "version: STSv1\nmode: enforce\nmax_age: 5\n", "garbage"])
def test_bad_policies(text):
    with pytest.raises(PolicyError):
        parse_policy(text)


def test_txt_record_parsing():
    assert parse_txt(["v=STSv1; id=abc123;"]) == "abc123"
    assert parse_txt(["v=spf1 -all"]) is None
    assert parse_txt(["v=STSv1; id=a", "v=STSv1; id=b"]) is None  # RFC 8461 §3.1: more than one -> none


@pytest.mark.parametrize("code, text, status", [(550, "5.1.1 no such user", "5.1.1"), (451, "try later", "4.0.0"),
                                                (550, "4.1.1 mismatched class", "5.0.0")])
def test_reply_status(code, text, status):
    assert reply_status(code, text)[0] == status


# --- smarthost -----------------------------------------------------------------
def test_smarthost_with_credentials_from_secrets_manager(aws):
    settings, clients, _ = aws
    clients.secrets.create_secret(Name="postern/smarthost", SecretString=json.dumps({"username": "u", "password": "p"}))
    with FakeMX("relay.test", credentials=("u", "p")) as relay:
        s = settings.replace(outbound_transport="smarthost", smarthost=f"127.0.0.1:{relay.port}", smarthost_tls="none",
                             smarthost_secret_id="postern/smarthost", outbound_timeout=2.0)
        results = SmarthostTransport(s, clients).send(req("b@remote.test", "c@other.test"))
        assert [r.ok for r in results] == [True, True]
        assert relay.messages[0].rcpt_tos == ["b@remote.test", "c@other.test"]


def test_smarthost_bad_credentials_keep_mail_queued(aws):
    settings, clients, _ = aws
    clients.secrets.create_secret(Name="postern/smarthost", SecretString=json.dumps({"username": "u", "password": "x"}))
    with FakeMX("relay.test", credentials=("u", "p")) as relay:
        s = settings.replace(smarthost=f"127.0.0.1:{relay.port}", smarthost_tls="none",
                             smarthost_secret_id="postern/smarthost", outbound_timeout=2.0)
        results = SmarthostTransport(s, clients).send(req("b@remote.test"))
        assert [(r.ok, r.permanent) for r in results] == [(False, False)] and relay.messages == []


# --- SES -------------------------------------------------------------------------
def test_ses_raw_send_against_moto(aws):
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    settings, clients, _ = aws
    clients.sesv2.create_email_identity(EmailIdentity="example.test")
    results = SesTransport(settings, clients).send(req("b@remote.test", "c@remote.test"))
    assert [r.ok for r in results] == [True, True]
    sent = ses_backends[DEFAULT_ACCOUNT_ID][settings.region].sent_messages
    assert sent[-1].raw_data.encode() == MSG
    assert {"b@remote.test", "c@remote.test"} <= set(sent[-1].destinations)


def test_ses_rejection_is_permanent(aws):
    settings, clients, _ = aws  # no verified identity: SES refuses the sender
    results = SesTransport(settings, clients).send(req("b@remote.test"))
    assert [(r.ok, r.permanent, r.status) for r in results] == [(False, True, "5.7.1")]


def test_dns_timeout_is_transient():
    with FakeDNS() as dns:
        dns.drop("slow.test")
        s = settings_for(closed_port(), dns_nameservers=(dns.nameserver,), dns_timeout=0.3)
        results = MxTransport(s, resolver=Resolver(s)).send(req("x@slow.test", domain="slow.test"))
    assert [(r.ok, r.permanent, r.status) for r in results] == [(False, False, "4.4.3")]
    assert "timeout" in results[0].text


def test_utf8_address_needs_smtputf8(mx):
    rq = SendRequest("alice@example.test", ("josé@remote.test",), MSG, "remote.test", "Q1", smtputf8=True)
    results = MxTransport(settings_for(mx.port), resolver=resolver()).send(rq)
    assert results[0].ok and mx.messages[0].rcpt_tos == ["josé@remote.test"]  # aiosmtpd offers SMTPUTF8


def test_utf8_address_to_server_without_smtputf8_bounces():
    with FakeMX("mx.remote.test", smtputf8=False) as old:
        rq = SendRequest("alice@example.test", ("josé@remote.test",), MSG, "remote.test", "Q1", smtputf8=True)
        results = MxTransport(settings_for(old.port), resolver=resolver()).send(rq)
        assert [(r.ok, r.permanent, r.status) for r in results] == [(False, True, "5.6.7")] and old.messages == []
