"""tools/preflight.py: missing deploy prerequisites are sentences before `sam deploy`, not a rolled-back stack."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

_spec = importlib.util.spec_from_file_location("postern_preflight", Path(__file__).parents[2] / "tools/preflight.py")
preflight = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(preflight)


class Session:
    """A boto3 session on moto, with an SES answer of our choosing (moto has no sesv2 GetAccount)."""

    def __init__(self, production: bool | None = True, verified: bool | None = None):
        self.production = production
        self.verified = verified  # None: no identity yet

    def client(self, name):
        if name == "sesv2":
            prod, verified = self.production, self.verified

            class Ses:
                def get_email_identity(self, EmailIdentity):
                    if verified is None:
                        from botocore.exceptions import ClientError

                        raise ClientError({"Error": {"Code": "NotFoundException", "Message": "no"}},
                                          "GetEmailIdentity")
                    return {"VerifiedForSendingStatus": verified}

                def get_account(self):
                    if prod is None:
                        from botocore.exceptions import EndpointConnectionError

                        raise EndpointConnectionError(endpoint_url="https://email.example")
                    return {"ProductionAccessEnabled": prod}

            return Ses()
        return boto3.client(name, region_name="us-east-1")


@pytest.fixture
def aws():
    with mock_aws():
        yield


def _zone(name: str, private: bool = False) -> str:
    kw = {"HostedZoneConfig": {"PrivateZone": True}, "VPC": {"VPCRegion": "us-east-1", "VPCId": "vpc-1"}} \
        if private else {}
    return boto3.client("route53").create_hosted_zone(Name=name, CallerReference=name, **kw)["HostedZone"]["Id"] \
        .rsplit("/", 1)[-1]


def test_a_zone_that_holds_the_host_passes(aws):
    zone = _zone("example.com")
    assert preflight.check(Session(), {"GatewayHostname": "mail.example.com", "HostedZoneId": zone}) == ([], [])


def test_zone_problems_are_named(aws):
    other = _zone("example.org")
    problems, _ = preflight.check(Session(), {"GatewayHostname": "mail.example.com", "HostedZoneId": other})
    assert problems == [f"GatewayHostname mail.example.com is not in hosted zone {other} (example.org): the "
                        "certificate's DNS-01 challenge must be written in the zone that holds the host name."]
    problems, _ = preflight.check(Session(), {"GatewayHostname": "mail.example.com", "HostedZoneId": "ZNOSUCH1"})
    assert problems[0].startswith("HostedZoneId ZNOSUCH1: there is no such Route 53 hosted zone")


def test_bring_your_own_secret_must_exist_and_hold_a_value(aws):
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    params = {"GatewayHostname": "mail.example.com", "TlsSecretId": "postern/mine"}
    (p,) = preflight.check(Session(), params)[0]
    assert p.startswith("TlsSecretId postern/mine: no such secret in this region. Create it")
    sm.create_secret(Name="postern/mine")
    (p,) = preflight.check(Session(), params)[0]
    assert p.startswith("TlsSecretId postern/mine holds no value yet")
    sm.put_secret_value(SecretId="postern/mine", SecretString='{"cert": "x", "key": "y"}')
    assert preflight.check(Session(), params) == ([], [])


def test_no_certificate_at_all_is_refused_first(aws):
    (p,) = preflight.check(Session(), {"GatewayHostname": "mail.example.com"})[0]
    assert "needs a TLS certificate: set HostedZoneId" in p and "TlsSecretId" in p


def test_the_ses_sandbox_is_a_warning_with_the_way_out(aws):
    zone = _zone("example.com")
    params = {"GatewayHostname": "mail.example.com", "HostedZoneId": zone, "OutboundTransport": "ses"}
    problems, (w,) = preflight.check(Session(production=False), params)
    assert problems == [] and w.startswith("SES is in the sandbox in this region") and "production access" in w
    assert preflight.check(Session(production=False), {**params, "OutboundTransport": "smarthost"}) == ([], [])
    params["MailDomain"] = "example.com"
    assert preflight.check(Session(), params) == ([], [])  # no identity yet: the deploy creates it
    assert preflight.check(Session(verified=True), params) == ([], [])
    (w,) = preflight.check(Session(verified=False), params)[1]
    assert w.startswith("SES has not verified example.com yet") and "postern dns example.com" in w
    out = io.StringIO()
    assert preflight.report([], [w], out) is True and out.getvalue().startswith("preflight warning: SES")
    assert preflight.report(["x"], [], out) is False


def test_the_command_reads_samconfig(aws, tmp_path, capsys):
    cfg = tmp_path / "samconfig.toml"
    cfg.write_text('[default.deploy.parameters]\nregion = "us-east-1"\nparameter_overrides = '
                   '"MailDomain=\\"example.com\\" GatewayHostname=\\"mail.example.com\\" HostedZoneId=\\"ZNOSUCH1\\" '
                   'OutboundTransport=\\"smarthost\\""\n')
    params, region = preflight.samconfig_parameters(cfg)
    assert params["HostedZoneId"] == "ZNOSUCH1" and region == "us-east-1"
    assert preflight.main(["--samconfig", str(cfg)]) == 1
    assert "preflight: HostedZoneId ZNOSUCH1: there is no such Route 53 hosted zone" in capsys.readouterr().err
