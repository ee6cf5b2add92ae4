"""The HTTPS front's certificate (postern.webcert) and `postern domain add` / `postern web certificate`,
against moto's ACM in us-east-1.

What moto's ACM does (checked here, so a moto upgrade that changes it shows): RequestCertificate
answers at once; DescribeCertificate's DomainValidationOptions already carry a ResourceRecord for each
name (real ACM adds them seconds later: the not-yet case is a stubbed answer below), with the same
record name and value for every certificate and name (real ACM: one per name and account), and
the certificate turns ISSUED by itself after MOTO_ACM_VALIDATION_WAIT (60 s) with no DNS at all (real
ACM: only once the CNAMEs resolve); it does not enforce the quota of 10 names per certificate
(webcert refuses more itself; the local rules proxy answers as ACM does: tests/e2e/test_aws_rules.py).
"""

from __future__ import annotations

import io
import json

import pytest
from botocore.stub import Stubber

from postern import webcert
from postern.cli import EXIT_OK, EXIT_REFUSED, main

STACK = "mail"


@pytest.fixture
def acm(request):
    """ACM in us-east-1 on moto: inside the ``aws`` fixture's mock when the test has it, else a bare one."""
    import boto3
    from moto import mock_aws

    if "aws" in request.fixturenames:
        request.getfixturevalue("aws")
        yield boto3.client("acm", region_name="us-east-1")
        return
    with mock_aws():
        yield boto3.client("acm", region_name="us-east-1")


@pytest.fixture
def issue(monkeypatch, acm):
    """ACM issuing every pending certificate now (moto does on a describe past ACM_VALIDATION_WAIT);
    otherwise they stay pending, however slow the machine."""
    import moto.settings

    monkeypatch.setattr(moto.settings, "ACM_VALIDATION_WAIT", 10**6)

    def now():
        monkeypatch.setattr(moto.settings, "ACM_VALIDATION_WAIT", -1)
        for s in acm.list_certificates()["CertificateSummaryList"]:
            acm.describe_certificate(CertificateArn=s["CertificateArn"])
        monkeypatch.setattr(moto.settings, "ACM_VALIDATION_WAIT", 10**6)

    return now


def test_moto_acm_answers_validation_records_at_once(acm):
    arn = acm.request_certificate(DomainName="*.a.test", ValidationMethod="DNS")["CertificateArn"]
    (opt,) = acm.describe_certificate(CertificateArn=arn)["Certificate"]["DomainValidationOptions"]
    assert opt["ValidationStatus"] == "PENDING_VALIDATION" and opt["ResourceRecord"]["Type"] == "CNAME"
    assert opt["ResourceRecord"]["Name"].endswith(".a.test.")  # the wildcard's record sits at the domain


def test_one_wildcard_per_domain_and_the_four_exact_aliases():
    assert webcert.names_for(["B.test.", "a.test", "a.test"]) == ["*.a.test", "*.b.test"]
    assert webcert.aliases(["a.test"]) == ["webmail.a.test", "autoconfig.a.test", "autodiscover.a.test",
                                           "mta-sts.a.test"]


def test_ensure_requests_once_then_finds_it_again_by_its_tag(acm, issue):
    cert, requested = webcert.ensure(acm, STACK, ["a.test"])
    assert requested and cert.status == "PENDING_VALIDATION" and cert.names == ("*.a.test",)
    assert cert.records_ready and cert.validations[0].name.endswith(".a.test")
    again, requested = webcert.ensure(acm, STACK, ["A.test"])
    assert (again.arn, requested) == (cert.arn, False)
    assert webcert.ensure(acm, "other-stack", ["a.test"])[0].arn != cert.arn  # another stack's are not ours
    assert webcert.for_distribution(webcert.certificates(acm, STACK)) is None  # nothing issued: no aliases

    issue()
    first = webcert.for_distribution(webcert.certificates(acm, STACK))
    assert first.arn == cert.arn and first.domains == ("a.test",)
    # a domain added later: a new certificate for both (ACM cannot add names); the issued one stays in use
    # until the new one is issued
    both, requested = webcert.ensure(acm, STACK, ["a.test", "b.test"])
    assert requested and both.status == "PENDING_VALIDATION" and both.names == ("*.a.test", "*.b.test")
    assert webcert.for_distribution(webcert.certificates(acm, STACK)).arn == cert.arn
    issue()
    assert webcert.for_distribution(webcert.certificates(acm, STACK)).arn == both.arn


def test_more_domains_than_acms_quota_is_refused_with_what_to_do(acm):
    with pytest.raises(webcert.WebCertError) as e:
        webcert.ensure(acm, STACK, [f"d{i}.test" for i in range(11)])
    assert "11 names" in e.value.text and "quota of 10" in e.value.text and "Service Quotas" in e.value.text
    assert webcert.certificates(acm, STACK) == []


def test_validation_records_not_made_yet_are_waited_for_within_a_bound(acm):
    """Real ACM: DomainValidationOptions without ResourceRecord for a few seconds after the request."""
    arn = "arn:aws:acm:us-east-1:123456789012:certificate/0f0f0f0f-0000-4000-8000-000000000001"
    pending = {"Certificate": {"CertificateArn": arn, "Status": "PENDING_VALIDATION",
                               "SubjectAlternativeNames": ["*.a.test"],
                               "DomainValidationOptions": [{"DomainName": "*.a.test", "ValidationDomain": "a.test",
                                                            "ValidationStatus": "PENDING_VALIDATION"}]}}
    ready = json.loads(json.dumps(pending))
    ready["Certificate"]["DomainValidationOptions"][0]["ResourceRecord"] = {
        "Name": "_x1.a.test.", "Type": "CNAME", "Value": "_y1.acm-validations.aws."}
    t = [0.0]
    with Stubber(acm) as stub:
        for answer in (pending, pending, ready):
            stub.add_response("describe_certificate", answer, {"CertificateArn": arn})
        cert = webcert.describe(acm, arn)
        assert not cert.records_ready and webcert.zone_lines(cert) == []
        cert = webcert.with_records(acm, cert, 30, sleep=lambda s: t.__setitem__(0, t[0] + s), clock=lambda: t[0])
        assert cert.records_ready and t[0] == 4.0
        assert webcert.zone_lines(cert) == [f"{'_x1.a.test.':<40} 3600 IN CNAME _y1.acm-validations.aws."]
        stub.add_response("describe_certificate", pending, {"CertificateArn": arn})
        stub.add_response("describe_certificate", pending, {"CertificateArn": arn})
        cert = webcert.with_records(acm, webcert.describe(acm, arn), 1, sleep=lambda s: t.__setitem__(0, t[0] + s),
                                    clock=lambda: t[0])
        assert not cert.records_ready  # gave up after the bound: the caller says to run it again


# --- the CLI ----------------------------------------------------------------------------------------
@pytest.fixture
def run(aws, capsys):
    settings, clients, res = aws
    settings = settings.replace(outbound_transport="smarthost")
    outputs = {"DirectoryTableName": res.tables["DirectoryTable"], "MailTableName": res.tables["MailTable"],
               "MailBucketName": res.buckets["MailBucket"], "StateTableName": res.tables["StateTable"],
               "WebDistributionDomain": "d111111abcdef8.cloudfront.net"}
    template = {"Resources": {"Q": {"Type": "AWS::SQS::Queue"}}, "Outputs": {k: {"Value": v} for k, v in outputs.items()}}
    clients.client("cloudformation").create_stack(StackName=STACK, TemplateBody=json.dumps(template))

    def go(*argv):
        out = io.StringIO()
        rc = main(list(argv), settings=settings, clients=clients, out=out)
        cap = capsys.readouterr()  # `postern dns` prints to stdout itself
        return rc, out.getvalue() + cap.out, cap.err

    return go


def test_domain_add_prints_every_record_with_the_certificates_validation_cname(run, acm, issue):
    rc, out, err = run("--stack", STACK, "domain", "add", "a.test")
    assert rc == EXIT_OK, err
    (cert,) = webcert.certificates(acm, STACK)
    assert f"; HTTPS certificate (us-east-1) requested now: {cert.arn}" in out
    (v,) = cert.validations
    (line,) = [ln for ln in out.splitlines() if ln.startswith(v.name + ".")]
    assert line.split() == [v.name + ".", "3600", "IN", "CNAME", v.value + "."]
    for name in webcert.aliases(["a.test"]):  # the names the distribution answers for, CNAMEs of it
        assert any(ln.startswith(name + ".") and ln.endswith("CNAME d111111abcdef8.cloudfront.net.")
                   for ln in out.splitlines()), name
    for must in ("IN MX ", "_dmarc.a.test.", "_mta-sts.a.test.", "_jmap._tcp.a.test."):
        assert must in out, must
    assert "no certificate is issued yet" in out and "cloudfront.net name only" in out

    # re-runnable: the same records, no second certificate
    rc, again, _ = run("--stack", STACK, "domain", "add", "a.test")
    assert rc == EXIT_OK and "existing: " + cert.arn in again and len(webcert.certificates(acm, STACK)) == 1

    issue()
    rc, out, _ = run("--stack", STACK, "domain", "add", "b.test")  # a domain added later
    assert rc == EXIT_OK
    # moto's CreatedAt is whole seconds: both certificates may share one, so "newest first" cannot tell them apart
    live = webcert.certificates(acm, STACK)
    assert sorted(c.names for c in live) == [("*.a.test",), ("*.a.test", "*.b.test")]
    (both,) = [c for c in live if c.names == ("*.a.test", "*.b.test")]
    assert f"requested now: {both.arn}" in out
    assert f"make deploy passes WebCertificateArn={cert.arn}" in out and "not covered by it yet" in out
    assert ";   WebAliases=webmail.a.test,autoconfig.a.test,autodiscover.a.test,mta-sts.a.test" in out
    issue()
    rc, out, _ = run("--stack", STACK, "web", "certificate")
    assert rc == EXIT_OK and f"make deploy passes WebCertificateArn={both.arn}" in out
    assert "webmail.b.test" in out and "not covered" not in out
    assert [ln for ln in out.splitlines() if not ln.startswith(";")] == webcert.zone_lines(both)  # both CNAMEs
    rc, out, _ = run("--stack", STACK, "dns", "b.test", "--format", "zone")
    assert rc == EXIT_OK and "_d930b28be6c5927595552b219965053e.b.test." in out and f"certificate {both.arn}" in out


def test_web_certificate_needs_a_stack(run):
    rc, out, err = run("web", "certificate")
    assert rc == EXIT_REFUSED and "local front (make run) is plain HTTP" in err


def test_domain_add_past_the_quota_keeps_the_domain_and_says_what_to_do(run, acm, directory):
    for i in range(10):
        directory.add_domain(f"d{i}.test")
    rc, _, err = run("--stack", STACK, "domain", "add", "d10.test")
    assert rc == EXIT_REFUSED
    assert "added domain d10.test, but not to the HTTPS certificate" in err and "quota of 10" in err
    assert webcert.certificates(acm, STACK) == []


def test_postern_dns_still_prints_the_records_when_acm_cannot_be_read(run, monkeypatch):
    from postern.errors import StoreUnavailable

    def refused(acm, stack):
        raise StoreUnavailable("ACM (us-east-1) could not list certificates: AccessDeniedException: not allowed")

    monkeypatch.setattr(webcert, "certificates", refused)
    rc, out, _ = run("--stack", STACK, "dns", "a.test", "--format", "zone")
    assert rc == EXIT_OK and "IN MX " in out and "_dmarc.a.test." in out
    assert "; CERTIFICATE: the HTTPS certificate could not be read (ACM (us-east-1) could not list" in out
