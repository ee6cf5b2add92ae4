"""``postern dns``: the records a domain needs, per outbound transport, from the deployed stack."""

from __future__ import annotations

import io
import json

import pytest

from postern.dnsplan import Facts, plan, smarthost_include, table_text, zone_text


def _by(records, rtype, name=None):
    return [r for r in records if r.type == rtype and (name is None or r.name == name)]


def test_mx_names_the_gateway_host_which_has_a_records_never_a_cname():
    f = Facts("example.com", "mail.example.com", gateway_addresses=("198.51.100.7", "198.51.100.8"))
    records, _ = plan(f)
    assert [r.value for r in _by(records, "MX")] == ["10 mail.example.com."]
    assert [r.value for r in _by(records, "A", "mail.example.com")] == ["198.51.100.7", "198.51.100.8"]
    assert not [r for r in records if r.type == "CNAME" and r.name == "mail.example.com"]


def test_without_elastic_ips_the_host_is_an_alias_of_the_nlb_or_its_current_addresses():
    nlb = "postern-nlb-0123.elb.eu-west-1.amazonaws.com"
    records, advice = plan(Facts("example.com", "mail.example.com", gateway_dns_name=nlb))
    assert not _by(records, "A") and not _by(records, "CNAME", "mail.example.com")
    (a,) = [a for a in advice if a.topic == "A"]
    assert nlb in a.text and "alias" in a.text and "not a CNAME" in a.text
    records, _ = plan(Facts("example.com", "mail.example.com", gateway_dns_name=nlb, nlb_addresses=("192.0.2.1",)))
    assert [r.value for r in _by(records, "A")] == ["192.0.2.1"]


def test_small_profile_publishes_its_own_a_record():
    records, advice = plan(Facts("example.com", "mail.example.com", self_published=True))
    assert not _by(records, "A") and [r.value for r in _by(records, "MX")] == ["10 mail.example.com."]
    (a,) = [a for a in advice if a.topic == "A"]
    assert "GatewayProfile=small" in a.text and "writes this A record itself" in a.text


def test_spf_names_where_mail_really_leaves_from():
    ses, _ = plan(Facts("example.com", "mail.example.com", transport="ses", ses_mail_from="bounce.example.com",
                        ses_records=(("bounce.example.com", "TXT", "v=spf1 include:amazonses.com ~all"),)))
    assert [r.value for r in _by(ses, "TXT", "example.com")] == ["v=spf1 -all"]  # SES uses its MAIL FROM domain
    assert [r.value for r in _by(ses, "TXT", "bounce.example.com")] == ["v=spf1 include:amazonses.com ~all"]

    relay, _ = plan(Facts("example.com", "mail.example.com", transport="smarthost", smarthost="smtp.sendgrid.net:587"))
    assert [r.value for r in _by(relay, "TXT", "example.com")] == ["v=spf1 include:sendgrid.net -all"]
    unknown, advice = plan(Facts("example.com", "mail.example.com", transport="smarthost", smarthost="relay.isp.test"))
    assert not _by(unknown, "TXT", "example.com")
    assert any(a.topic == "SPF" and "your provider's SPF domain" in a.text for a in advice)

    direct, advice = plan(Facts("example.com", "mail.example.com", transport="mx", nat_address="203.0.113.9"))
    assert [r.value for r in _by(direct, "TXT", "example.com")] == ["v=spf1 ip4:203.0.113.9 -all"]
    (ptr,) = [a for a in advice if a.topic == "PTR"]
    assert "203.0.113.9 must have a PTR" in ptr.text and "resolves back" in ptr.text
    assert "cannot be that name" in ptr.text  # the gateway's name points at the NLB, not the NAT


@pytest.mark.parametrize("host,include", [("email-smtp.eu-west-1.amazonaws.com", "amazonses.com"),
                                          ("smtp.mailgun.org:587", "mailgun.org"),
                                          ("smtp.office365.com", "spf.protection.outlook.com"),
                                          ("smtp.example.net", None)])
def test_known_smarthost_includes(host, include):
    assert smarthost_include(host) == include


def test_ptr_advice_only_where_our_address_sends():
    for transport, words in (("ses", "SES sends from its own addresses"), ("smarthost", "provider's reverse DNS")):
        _, advice = plan(Facts("example.com", "mail.example.com", transport=transport, smarthost="smtp.x.test"))
        (ptr,) = [a for a in advice if a.topic == "PTR"]
        assert words in ptr.text and "nothing to do" in ptr.text


def test_long_dkim_txt_is_split_into_255_octet_strings_and_every_record_has_a_why():
    long = "v=DKIM1; k=rsa; p=" + "A" * 400
    f = Facts("example.com", "mail.example.com", gateway_addresses=("198.51.100.7",),
              dkim_records=(("postern._domainkey.example.com", long),))
    records, advice = plan(f)
    (dkim,) = _by(records, "TXT", "postern._domainkey.example.com")
    line = dkim.zone_line()
    assert line.count('"') == 4 and "".join(line.split('"')[1::2]) == long
    assert all(r.why for r in records)
    assert {r.name for r in _by(records, "SRV")} == {f"_{s}._tcp.example.com" for s in
                                                     ("submissions", "submission", "imaps", "imap", "pop3s", "pop3",
                                                      "jmap", "autodiscover")}
    (jmap,) = _by(records, "SRV", "_jmap._tcp.example.com")
    assert jmap.value == "0 1 443 webmail.example.com."
    (imaps,) = _by(records, "SRV", "_imaps._tcp.example.com")
    assert imaps.value == "0 1 993 mail.example.com."  # the NLB's port, from postern.clientoffer
    (dmarc,) = _by(records, "TXT", "_dmarc.example.com")
    assert dmarc.value.startswith("v=DMARC1; p=quarantine; rua=mailto:reports@example.com")
    (tlsrpt,) = _by(records, "TXT", "_smtp._tls.example.com")
    assert tlsrpt.value == "v=TLSRPTv1; rua=mailto:reports@example.com"
    assert not _by(records, "CNAME") and any("WebDistributionDomain" in a.text for a in advice)
    zone = zone_text(f, records, advice)
    assert zone.startswith("; DNS records for example.com") and "example.com.  " in zone
    table = table_text(records, advice)
    assert table.splitlines()[0].split() == ["NAME", "TYPE", "VALUE", "WHY"]


# --- the command, against a stack on moto ------------------------------------------------------
STACK_TEMPLATE = {
    "Parameters": {k: {"Type": "String"} for k in ("GatewayHostname", "OutboundTransport", "SmarthostHost",
                                                  "SesMailFromSubdomain", "Directory", "Mail", "State", "Bucket")},
    "Resources": {"Nothing": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
    "Outputs": {
        "GatewayAddresses": {"Value": "198.51.100.7 198.51.100.8"},
        "GatewayDnsName": {"Value": "postern-nlb.elb.us-east-1.amazonaws.com"},
        "DirectoryTableName": {"Value": {"Ref": "Directory"}},
        "MailTableName": {"Value": {"Ref": "Mail"}},
        "StateTableName": {"Value": {"Ref": "State"}},
        "MailBucketName": {"Value": {"Ref": "Bucket"}},
    },
}


class FakeSes:
    def __init__(self, response):
        self.response = response

    def get_email_identity(self, EmailIdentity):
        return self.response


@pytest.fixture
def deployed(aws):
    settings, clients, res = aws
    params = {"GatewayHostname": "mail.example.com", "OutboundTransport": "ses", "SmarthostHost": "",
              "SesMailFromSubdomain": "bounce", "Directory": res.tables["DirectoryTable"],
              "Mail": res.tables["MailTable"], "State": res.tables["StateTable"], "Bucket": res.buckets["MailBucket"]}
    clients.client("cloudformation").create_stack(
        StackName="postern", TemplateBody=json.dumps(STACK_TEMPLATE),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()])
    return settings, clients


def _run(settings, clients, *argv) -> tuple[int, str]:
    from postern.cli import main

    out = io.StringIO()
    import contextlib

    with contextlib.redirect_stdout(out):
        rc = main(list(argv), settings=settings, clients=clients)
    return rc, out.getvalue()


def test_postern_dns_from_a_stack_with_ses(deployed, monkeypatch):
    settings, clients = deployed
    from postern.cli_outbound import domain_dkim
    from postern.directory import dynamo_directory

    dynamo_directory(settings, clients).add_domain("example.com")
    domain_dkim(settings, clients, "example.com")
    tokens = ["tok1", "tok2", "tok3"]
    monkeypatch.setattr(type(clients), "sesv2", property(lambda self: FakeSes({  # moto returns no DKIM tokens
        "VerifiedForSendingStatus": True, "DkimAttributes": {"Tokens": tokens},
        "MailFromAttributes": {"MailFromDomain": "bounce.example.com"}})))
    rc, out = _run(settings, clients, "dns", "example.com", "--stack", "postern")
    assert rc == 0
    zone, table = out.split("\n\n", 1)
    lines = zone.splitlines()
    assert lines[0] == "; DNS records for example.com: stack postern, outbound ses, region us-east-1"

    def has(name, rtype, value):
        return any(ln.split()[:4] == [name + ".", "3600", "IN", rtype] and ln.endswith(value) for ln in lines)

    assert has("example.com", "MX", "10 mail.example.com.")
    assert has("mail.example.com", "A", "198.51.100.7") and has("mail.example.com", "A", "198.51.100.8")
    assert has("example.com", "TXT", '"v=spf1 -all"')
    for t in tokens:
        assert has(f"{t}._domainkey.example.com", "CNAME", f"{t}.dkim.amazonses.com.")
    assert has("bounce.example.com", "MX", "10 feedback-smtp.us-east-1.amazonses.com.")
    assert has("bounce.example.com", "TXT", '"v=spf1 include:amazonses.com ~all"')  # postern.sesidentity's
    assert any(ln.startswith("postern._domainkey.example.com.") and "v=DKIM1; k=rsa; p=" in ln for ln in lines)
    assert has("_dmarc.example.com", "TXT", '"v=DMARC1; p=quarantine; rua=mailto:reports@example.com"')
    assert "; PTR: nothing to do: SES sends from its own addresses" in zone
    assert "CNAME" not in " ".join(ln for ln in lines if ln.startswith("mail.example.com."))
    assert table.splitlines()[0].split() == ["NAME", "TYPE", "VALUE", "WHY"]
    assert sum(1 for ln in table.splitlines() if ln.startswith("tok")) == 3


def test_mta_sts_id_follows_the_served_policy_and_web_names_are_cnames():
    from postern.config import Settings
    from postern.mtasts import parse_policy, policy_id, settings_policy

    s = Settings(hostname="mail.example.com")
    testing, enforce = settings_policy(s), settings_policy(s, mode="enforce")
    assert parse_policy(enforce).mode == "enforce" and parse_policy(testing).mx == ("mail.example.com",)
    ids = set()
    for policy in (testing, enforce):
        f = Facts("example.com", "mail.example.com", mta_sts_policy=policy, web_target="d111111abcdef8.cloudfront.net")
        records, _ = plan(f)
        (txt,) = _by(records, "TXT", "_mta-sts.example.com")
        assert txt.value == f"v=STSv1; id={policy_id(policy)}"
        ids.add(txt.value)
        assert {(r.name, r.value) for r in _by(records, "CNAME")} == {
            (f"{n}.example.com", "d111111abcdef8.cloudfront.net.") for n in ("webmail", "autoconfig", "autodiscover",
                                                                             "mta-sts")}
    assert len(ids) == 2  # a new mode is a new policy: senders see a new id and fetch it again


def test_postern_dns_says_what_is_missing(deployed):
    """moto: no SES identity, no DKIM key, a domain not added: each is advice naming its command."""
    settings, clients = deployed
    rc, out = _run(settings, clients, "--stack", "postern", "dns", "new.example", "--format", "zone")
    assert rc == 0
    assert "; DOMAIN: new.example is not served by Postern yet: `postern domain add new.example`" in out
    assert "`postern domain ses new.example`" in out
    assert "; DKIM: no Postern DKIM key for new.example: `postern domain dkim new.example`" in out
    assert "NAME  " not in out  # --format zone: no table


def test_postern_dns_without_a_stack_uses_the_settings(aws):
    settings, clients, _ = aws
    s = settings.replace(outbound_transport="smarthost", smarthost="email-smtp.us-east-1.amazonaws.com:587",
                         hostname="mx.example.org")
    rc, out = _run(s, clients, "dns", "example.org", "--format", "table")
    assert rc == 0
    assert any(ln.split()[:3] == ["example.org", "TXT", "v=spf1"] and "include:amazonses.com" in ln
               for ln in out.splitlines())
    assert "A: mx.example.org: A records of the gateway's addresses (with --stack NAME" in out
