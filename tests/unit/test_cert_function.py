"""The cert function without a CA: when to renew, bring-your-own checks, the custom resource protocol,
and the template wiring it. (Issuing against a real ACME server: tests/e2e/test_cert_pebble.py.)"""

from __future__ import annotations

import datetime as dt
import json

import pytest
import trustme

from postern_local.lambdas import function_specs, load_handler
from postern_local.template import load_template

_spec = function_specs()["CertFunction"]
handler = load_handler(_spec["code_uri"], _spec["handler"], "postern_fn_CertFunction")
# Importable once the function is loaded, as on Lambda (its directory is on sys.path).
from postern_cert import cfn, renew  # noqa: E402
from postern_cert.certificate import Certificate, byo_problem, renewal_reason  # noqa: E402
from postern_cert.request import LETS_ENCRYPT, CertRequest, RequestError  # noqa: E402

NOW = dt.datetime(2027, 3, 1, 12, 0, tzinfo=dt.timezone.utc)
DAY = dt.timedelta(days=1)


def _cert(days: int, left: float, names=("mail.example.com",)) -> Certificate:
    not_after = NOW + left * DAY
    return Certificate(names=names, not_before=not_after - days * DAY, not_after=not_after, issuer="CN=R3",
                       fingerprint="AA")


# --- when to renew --------------------------------------------------------------------------
@pytest.mark.parametrize("days,window", [(90, 30), (45, 22.5), (6, 3), (397, 397 / 3)])
def test_renewal_window(days, window):
    assert _cert(days, left=10).renew_window() == window * DAY


def test_renewal_reasons():
    names = ("mail.example.com",)
    assert renewal_reason(None, names, NOW) == "no certificate yet"
    assert renewal_reason(_cert(90, 31), names, NOW) is None
    assert renewal_reason(_cert(90, 29.5), names, NOW).startswith("29.5 days left (renewal window opened")
    assert renewal_reason(_cert(90, -1), names, NOW).startswith("the certificate expired on")
    assert renewal_reason(_cert(90, 60, names=("imap.example.com",)), names, NOW) == \
        "the certificate does not cover mail.example.com"
    # the CA's renewal information (ARI) can only bring the date forward
    assert renewal_reason(_cert(90, 60), names, NOW, suggested=NOW - DAY).startswith("the CA suggests renewal")
    assert renewal_reason(_cert(90, 60), names, NOW, suggested=NOW + DAY) is None


def test_wildcards_cover_one_label_only():
    c = _cert(90, 60, names=("*.example.com",))
    assert c.covers("mail.example.com") and c.covers("MAIL.example.com.")
    assert not c.covers("example.com") and not c.covers("a.mail.example.com")


def test_byo_problems():
    names = ("mail.example.com",)
    assert byo_problem(_cert(90, 5), names, NOW) is None  # short, but the alarm's business, not a refusal
    assert byo_problem(None, names, NOW) == "the secret holds no certificate"
    assert byo_problem(_cert(90, -2), names, NOW).startswith("the certificate expired on 2027-02-27")
    assert byo_problem(_cert(90, 60, names=("www.example.com",)), names, NOW) == \
        "the certificate covers www.example.com, not mail.example.com"


def test_request_from_properties():
    r = CertRequest.from_properties({"Domains": ["Mail.Example.com."], "SecretId": "postern/x/tls",
                                     "HostedZoneId": "/hostedzone/Z0123ABC", "AccountParameter": "/postern/x/acme",
                                     "DirectoryUrl": ""})
    assert r.domains == ("mail.example.com",) and r.hosted_zone_id == "Z0123ABC" and r.acme
    assert r.directory_url == LETS_ENCRYPT
    assert not CertRequest.from_properties({"Domains": "mail.example.com", "SecretId": "postern/byo",
                                            "HostedZoneId": "", "AccountParameter": ""}).acme
    for props, words in [({"SecretId": "s"}, "Domains is empty"),
                         ({"Domains": ["mail_host.example.com"], "SecretId": "s"}, "not a DNS name"),
                         ({"Domains": ["mail.example.com"], "HostedZoneId": "Z1"}, "SecretId is empty"),
                         ({"Domains": ["mail.example.com"], "SecretId": "s", "HostedZoneId": "Z1"}, "AccountParameter is empty"),
                         ({"Domains": ["mail.example.com"], "SecretId": "s", "HostedZoneId": "Z1",
                           "AccountParameter": "postern-acme/x"}, "not a parameter path")]:
        with pytest.raises(RequestError, match=words):
            CertRequest.from_properties(props)


# --- bring-your-own, through the handler, on moto --------------------------------------------
class Responses:
    def __init__(self):
        self.sent: list[dict] = []

    def put(self, url, body):
        self.sent.append(json.loads(body))
        return 200


@pytest.fixture
def cfn_out(monkeypatch):
    r = Responses()
    real = cfn.respond
    monkeypatch.setattr(cfn, "respond", lambda *a, **kw: real(*a, put=r.put, **kw))
    return r


def _event(kind: str, props: dict) -> dict:
    return {"RequestType": kind, "ResponseURL": "https://cloudformation-custom-resource-response.example/x",
            "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/postern/abc", "RequestId": "r1",
            "LogicalResourceId": "TlsCertificate", "ResourceType": "Custom::TlsCertificate",
            "ResourceProperties": {"ServiceToken": "arn:fn", **props}}


def _pem_doc(ca: trustme.CA, *names: str, **kw) -> str:
    c = ca.issue_cert(*names, **kw)
    return json.dumps({"cert": b"".join(b.bytes() for b in c.cert_chain_pems).decode(),
                       "key": c.private_key_pem.bytes().decode()})


@pytest.fixture
def sm():
    """Secrets Manager on moto (the function builds its own clients, as on Lambda)."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        yield boto3.client("secretsmanager", region_name="us-east-1")


BYO = {"Domains": ["mail.example.com"], "SecretId": "postern/byo", "HostedZoneId": "", "AccountParameter": "",
       "DirectoryUrl": LETS_ENCRYPT}


def test_byo_certificate_is_checked_before_the_gateway_starts(sm, cfn_out):
    ca = trustme.CA()
    sm.create_secret(Name="postern/byo", SecretString=_pem_doc(ca, "mail.example.com"))
    handler(_event("Create", BYO), None)
    (r,) = cfn_out.sent
    assert r["Status"] == "SUCCESS" and r["Data"]["Action"] == "checked" and r["PhysicalResourceId"] == "postern/byo"
    assert r["Reason"] == "certificate checked: bring-your-own certificate"
    assert int(r["Data"]["DaysLeft"]) > 300  # trustme: valid until 3000


@pytest.mark.parametrize("store,reason", [
    (None, "TLS certificate: there is no secret postern/byo"),
    ("empty", "TLS certificate: TlsSecretId postern/byo: the secret holds no certificate"),
    ("not json", "TLS certificate: secret postern/byo does not hold JSON"),
    ({"cert": "x"}, 'TLS certificate: TlsSecretId postern/byo: secret postern/byo must hold JSON with "cert" and '
                    '"key" (PEM)'),
    ("other name", "TLS certificate: TlsSecretId postern/byo: the certificate covers www.example.com, "
                   "not mail.example.com"),
    ("expired", "TLS certificate: TlsSecretId postern/byo: the certificate expired on 2000-01-02 00:00 UTC"),
    ("mismatch", "TLS certificate: TlsSecretId postern/byo: secret postern/byo: the private key does not belong "
                 "to the certificate"),
])
def test_a_byo_certificate_that_cannot_be_served_fails_the_deploy_with_a_sentence(sm, cfn_out, store, reason):
    ca = trustme.CA()
    if store == "empty":
        sm.create_secret(Name="postern/byo")
    elif store == "not json":
        sm.create_secret(Name="postern/byo", SecretString="-----BEGIN CERTIFICATE-----")
    elif store == "other name":
        sm.create_secret(Name="postern/byo", SecretString=_pem_doc(ca, "www.example.com"))
    elif store == "expired":
        sm.create_secret(Name="postern/byo", SecretString=_pem_doc(
            ca, "mail.example.com", not_before=dt.datetime(1999, 1, 1), not_after=dt.datetime(2000, 1, 2)))
    elif store == "mismatch":
        a, b = json.loads(_pem_doc(ca, "mail.example.com")), json.loads(_pem_doc(ca, "mail.example.com"))
        sm.create_secret(Name="postern/byo", SecretString=json.dumps({"cert": a["cert"], "key": b["key"]}))
    elif store is not None:
        sm.create_secret(Name="postern/byo", SecretString=json.dumps(store))
    handler(_event("Create", BYO), None)
    (r,) = cfn_out.sent
    assert (r["Status"], r["Reason"]) == ("FAILED", reason)
    assert r["PhysicalResourceId"] == "TlsCertificate"


def test_the_schedule_raises_on_a_byo_certificate_that_expired(sm):
    sm.create_secret(Name="postern/byo", SecretString=_pem_doc(
        trustme.CA(), "mail.example.com", not_before=dt.datetime(1999, 1, 1), not_after=dt.datetime(2000, 1, 2)))
    with pytest.raises(renew.EXPECTED, match="expired"):
        handler(BYO, None)  # Lambda retries, the Errors metric counts it


def test_a_certificate_from_s3_is_not_checked(cfn_out):
    handler(_event("Create", {**BYO, "SecretId": ""}), None)
    (r,) = cfn_out.sent
    assert r["Status"] == "SUCCESS" and r["Reason"] == "certificate unchecked: it comes from TlsS3Uri"
    assert r["PhysicalResourceId"] == "TlsS3Uri" and r["Data"]["Action"] == "unchecked"


def test_delete_always_succeeds_and_removes_only_the_account_key(sm, cfn_out):
    """The account key's parameter is the function's own (CloudFormation cannot create a SecureString), so
    it goes with the resource; the certificate secret is the template's and is left to CloudFormation."""
    import boto3

    ssm = boto3.client("ssm", region_name="us-east-1")
    ssm.put_parameter(Name="/postern-acme/a/account", Value="{}", Type="SecureString")
    sm.create_secret(Name="postern/acme", SecretString="{}")
    props = {"Domains": ["mail.example.com"], "SecretId": "postern/acme", "HostedZoneId": "Z1",
             "AccountParameter": "/postern-acme/a/account"}
    for _ in range(2):  # a second Delete (CloudFormation retries) finds nothing and still succeeds
        handler({**_event("Delete", props), "PhysicalResourceId": "postern/acme"}, None)
    handler({**_event("Delete", {"Domains": []}), "PhysicalResourceId": "postern/byo"}, None)
    assert [(r["Status"], r["PhysicalResourceId"]) for r in cfn_out.sent] == \
        [("SUCCESS", "postern/acme")] * 2 + [("SUCCESS", "postern/byo")]
    assert ssm.describe_parameters()["Parameters"] == []
    assert sm.get_secret_value(SecretId="postern/acme")["SecretString"] == "{}"


def test_the_acme_account_key_is_a_securestring_parameter_in_the_free_tier_while_it_fits(sm):
    import boto3

    from postern_cert.vault import Parameters, VaultError

    ssm = boto3.client("ssm", region_name="us-east-1")
    p = Parameters(ssm)
    assert p.read("/postern-acme/a/account") is None  # no account yet: the issuer registers one
    doc = {"accounts": {LETS_ENCRYPT: {"key": {"kty": "RSA", "n": "x" * 342}, "uri": "https://ca/acct/1"}}}
    p.write("/postern-acme/a/account", doc)
    got = ssm.get_parameter(Name="/postern-acme/a/account")["Parameter"]
    assert got["Type"] == "SecureString" and got["Value"] != json.dumps(doc)  # encrypted unless asked
    (meta,) = ssm.describe_parameters()["Parameters"]
    assert meta["Tier"] == "Standard"
    assert p.read("/postern-acme/a/account") == doc
    doc["accounts"]["https://staging.example/dir"] = {"key": {"kty": "RSA", "n": "y" * 4000}, "uri": "u"}
    p.write("/postern-acme/a/account", doc)  # past 4 KB: advanced ($0.05 a month), not a failure
    (meta,) = ssm.describe_parameters()["Parameters"]
    assert meta["Tier"] == "Advanced" and p.read("/postern-acme/a/account") == doc
    ssm.put_parameter(Name="/postern/a/bad", Value="not json", Type="SecureString")
    with pytest.raises(VaultError, match="does not hold JSON"):
        p.read("/postern/a/bad")


def test_an_unexpected_error_still_answers_cloudformation(cfn_out, monkeypatch):
    def boom(*a, **kw):
        raise KeyError("surprise")

    monkeypatch.setattr(renew, "ensure", boom)
    handler(_event("Create", BYO), None)
    (r,) = cfn_out.sent
    assert r["Status"] == "FAILED" and r["Reason"] == "TLS certificate: internal error KeyError: 'surprise'"


def test_the_response_fits_cloudformations_limit_and_is_retried():
    sent, failures = [], [OSError("reset"), OSError("timeout")]

    def put(url, body):
        if failures:
            raise failures.pop(0)
        sent.append(body)

    cfn.respond(_event("Create", BYO), cfn.FAILED, "x" * 10_000, "p", put=put, sleep=lambda s: None)
    (body,) = sent
    assert len(body) < 4096 and json.loads(body)["Reason"].endswith("...")


# --- the template ---------------------------------------------------------------------------
def test_the_schedule_sends_what_the_custom_resource_sends():
    """One request shape from both triggers: the schedule's Input is the custom resource's properties."""
    t = load_template()
    props = dict(t["Resources"]["TlsCertificate"]["Properties"])
    assert props.pop("ServiceToken") == {"Fn::GetAtt": ["CertFunction", "Arn"]}
    props.pop("ServiceTimeout")
    schedule = t["Resources"]["CertFunction"]["Properties"]["Events"]["Renew"]["Properties"]
    text, variables = schedule["Input"]["Fn::Sub"]

    def sub(value):  # the custom resource's value written as the schedule's ${...}
        if isinstance(value, list):
            return [sub(v) for v in value]
        if isinstance(value, dict) and "Ref" in value:
            return "${%s}" % value["Ref"]
        return value

    rendered = {k: sub(v) for k, v in props.items()}
    for name, expr in variables.items():
        assert props[name] == expr, name  # the same Fn::If in both places
        rendered[name] = "${%s}" % name
    assert json.loads(text) == rendered
    CertRequest.from_properties({**json.loads(text), "Domains": ["mail.example.com"],  # keys the function reads
                                 "AccountParameter": "/postern-acme/p/account-1"})
    # the account key's parameter: one name, outside the /postern/ path other roles read (DKIM keys: /postern/dkim/*),
    # as the secret it replaces was outside postern/* (the role's grant: test_rules_iam)
    (fmt, _ids), = props["AccountParameter"]["Fn::If"][1].values()
    assert fmt == "/postern-acme/${AWS::StackName}/account-${Id}" and props["AccountParameter"]["Fn::If"][2] == ""


def test_gateway_services_wait_for_the_certificate_and_read_its_secret():
    t = load_template()
    for name in ("GatewayMailService", "GatewayAccessService"):
        assert "TlsCertificate" in t["Resources"][name]["DependsOn"], name
    tasks = [r for r in t["Resources"].values() if r["Type"] == "AWS::ECS::TaskDefinition"]
    assert len(tasks) == 2  # mail-in, mailbox access
    for task in tasks:
        env = {e["Name"]: e["Value"] for e in task["Properties"]["ContainerDefinitions"][0]["Environment"]}
        assert env["POSTERN_TLS_SECRET_ID"] == t["Resources"]["TlsCertificate"]["Properties"]["SecretId"]


def test_the_expiry_alarm_watches_the_metric_the_gateway_publishes():
    from postern_gateway.trust.certexpiry import DIMENSION, METRIC, NAMESPACE

    a = load_template()["Resources"]["TlsCertificateExpiryAlarm"]["Properties"]
    assert (a["Namespace"], a["MetricName"], a["Dimensions"][0]["Name"]) == (NAMESPACE, METRIC, DIMENSION)
    assert a["Dimensions"][0]["Value"] == {"Ref": "GatewayHostname"}  # what the gateway sends (POSTERN_HOSTNAME)
    assert (a["Threshold"], a["ComparisonOperator"], a["Statistic"]) == (14, "LessThanThreshold", "Minimum")


def test_without_a_hosted_zone_a_certificate_is_required_at_deploy_time():
    rules = load_template()["Rules"]
    r = rules["CertificateRequired"]
    assert r["RuleCondition"] == {"Fn::Equals": [{"Ref": "HostedZoneId"}, ""]}
    (a,) = r["Assertions"]
    text = a["AssertDescription"]
    for param in ("HostedZoneId", "TlsSecretId", "TlsS3Uri", "GatewayHostname"):
        assert param in text
    assert a["Assert"] == {"Fn::Or": [{"Fn::Not": [{"Fn::Equals": [{"Ref": "TlsSecretId"}, ""]}]},
                                      {"Fn::Not": [{"Fn::Equals": [{"Ref": "TlsS3Uri"}, ""]}]}]}


def test_sample_events(sm, cfn_out):
    """events/cert/: what the built-artefact test and `sam local invoke CertFunction -e` can run offline."""
    from pathlib import Path

    events = Path(__file__).parents[2] / "events/cert"
    assert handler(json.loads((events / "schedule-s3.json").read_text()), None) == {"Action": "unchecked"}
    handler(json.loads((events / "delete.json").read_text()), None)
    (r,) = cfn_out.sent
    assert (r["Status"], r["PhysicalResourceId"]) == ("SUCCESS", "postern/postern/tls-00000000")


class FakeIssuer:
    """Stands in for the ACME client: records orders, answers renewal information as told, and "issues" a
    self-signed certificate for the key it is given (the real CA: tests/e2e/test_cert_pebble.py)."""

    issued: list = []
    ari_error = False

    def __init__(self, directory_url, dns, load_account, save_account):
        self.directory_url = directory_url

    def suggested_renewal(self, cert_pem):
        if FakeIssuer.ari_error:
            raise renew.IssueError("cannot reach the ACME server")
        return None

    def issue(self, names, key_pem, deadline):
        FakeIssuer.issued.append((self.directory_url, names))
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization

        key = serialization.load_pem_private_key(key_pem, password=None)
        name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, names[0])])
        now = dt.datetime.now(dt.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(1).not_valid_before(now).not_valid_after(now + 90 * DAY)
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
                .sign(key, hashes.SHA256()))
        return cert.public_bytes(serialization.Encoding.PEM)


def test_a_new_acme_server_means_a_new_certificate_and_an_ari_outage_does_not(sm, monkeypatch):
    monkeypatch.setattr(renew, "AcmeIssuer", FakeIssuer)
    FakeIssuer.issued = []
    sm.create_secret(Name="postern/acme")
    props = {"Domains": ["mail.example.com"], "SecretId": "postern/acme", "HostedZoneId": "Z1",
             "AccountParameter": "/postern-acme/a/account", "DirectoryUrl": "https://staging.example/dir"}
    assert handler(props, None)["Action"] == "issued"
    assert json.loads(sm.get_secret_value(SecretId="postern/acme")["SecretString"])["directory"] == \
        "https://staging.example/dir"
    FakeIssuer.ari_error = True
    try:
        assert handler(props, None)["Action"] == "kept"  # the CA unreachable for ARI: the certificate stays
        assert handler({**props, "DirectoryUrl": LETS_ENCRYPT}, None)["Action"] == "issued"
    finally:
        FakeIssuer.ari_error = False
    assert FakeIssuer.issued == [("https://staging.example/dir", ("mail.example.com",)),
                                 (LETS_ENCRYPT, ("mail.example.com",))]
