"""``make deploy``'s AWS preflight: what would otherwise fail half-way through a deployment, said first.

In:   a boto3 session (the deploying account and region) and the stack parameters the deploy
      will pass (samconfig.toml's parameter_overrides, merged by tools/deploy.py).
Out:  :func:`check` -> (problems, warnings): sentences naming the parameter and what to do.
      Problems stop the deploy before ``sam deploy`` (nothing is created, nothing rolls back);
      warnings are printed and the deploy goes on:
        certificate  HostedZoneId: the zone exists, is public and holds GatewayHostname (else the
                     TlsCertificate custom resource fails the stack). Bring-your-own: TlsSecretId
                     exists in this region and has a value (the custom resource then checks the
                     certificate itself). Neither: the template's rule would refuse the stack.
        SES          OutboundTransport=ses: the account still in the SES sandbox (mail only to
                     verified addresses, 200 a day), and MailDomain's identity not verified yet
                     (SES refuses to send as it) - warnings, each with what to do.
Fails: AWS errors other than "not found" become problems quoting AWS (e.g. no permission to
      read Route 53): the deploy would hit them too.
Runs with boto3 only (the aws-sam-cli tool venv's Python), no Postern package. As a command
(``python tools/preflight.py [--config-env default]``) it reads samconfig.toml's deploy
parameters itself and exits 1 on a problem.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tomllib
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError


def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def _zone(route53, zone_id: str, host: str) -> list[str]:
    try:
        zone = route53.get_hosted_zone(Id=zone_id)["HostedZone"]
    except ClientError as exc:
        if _code(exc) == "NoSuchHostedZone":
            return [f"HostedZoneId {zone_id}: there is no such Route 53 hosted zone in this account. Give the id "
                    "of the public zone that holds GatewayHostname (`aws route53 list-hosted-zones`), or leave "
                    "HostedZoneId empty and bring your own certificate with TlsSecretId."]
        return [f"HostedZoneId {zone_id}: cannot read it ({_code(exc)}: {exc.response['Error'].get('Message', '')})."]
    name = zone["Name"].rstrip(".").lower()
    out = []
    if zone.get("Config", {}).get("PrivateZone"):
        out.append(f"HostedZoneId {zone_id} ({name}) is a private zone: Let's Encrypt cannot see its records. "
                   "Give the public zone's id.")
    h = host.lower().rstrip(".")
    if not (h == name or h.endswith("." + name)):
        out.append(f"GatewayHostname {host} is not in hosted zone {zone_id} ({name}): the certificate's DNS-01 "
                   "challenge must be written in the zone that holds the host name.")
    return out


def _byo_secret(secrets, secret_id: str) -> list[str]:
    try:
        secrets.describe_secret(SecretId=secret_id)
    except ClientError as exc:
        if _code(exc) == "ResourceNotFoundException":
            return [f"TlsSecretId {secret_id}: no such secret in this region. Create it with your certificate: "
                    f"aws secretsmanager create-secret --name {secret_id} --secret-string "
                    "'{\"cert\": \"<PEM chain>\", \"key\": \"<PEM key>\"}'"]
        return [f"TlsSecretId {secret_id}: cannot read it ({_code(exc)})."]
    try:
        secrets.get_secret_value(SecretId=secret_id)
    except ClientError as exc:
        if _code(exc) == "ResourceNotFoundException":
            return [f"TlsSecretId {secret_id} holds no value yet: put {{\"cert\": ..., \"key\": ...}} in it "
                    "(aws secretsmanager put-secret-value)."]
        return [f"TlsSecretId {secret_id}: cannot read its value ({_code(exc)})."]
    return []


def _ses_sandbox(sesv2) -> list[str]:
    try:
        account = sesv2.get_account()
    except (ClientError, BotoCoreError):
        return ["could not ask SES whether this account is in the sandbox (sesv2 get-account)."]
    if account.get("ProductionAccessEnabled"):
        return []
    return ["SES is in the sandbox in this region: it sends only to verified addresses, at most 200 a day. "
            "Until AWS grants production access (SES console > Account dashboard > Request production access, "
            "or `aws sesv2 put-account-details`), verify each test recipient "
            "(`aws sesv2 create-email-identity --email-identity you@example.net`); other recipients get a "
            "failure notice."]


def _ses_domain(sesv2, domain: str) -> list[str]:
    try:
        identity = sesv2.get_email_identity(EmailIdentity=domain)
    except ClientError as exc:
        if _code(exc) == "NotFoundException":
            return []  # the first deploy creates it
        return [f"could not read SES identity {domain} ({_code(exc)})."]
    except BotoCoreError:
        return [f"could not read SES identity {domain}."]
    if identity.get("VerifiedForSendingStatus"):
        return []
    return [f"SES has not verified {domain} yet, so it refuses to send as it (senders get a failure notice): "
            f"publish its DKIM CNAMEs (`postern dns {domain} --stack <stack>` prints them) and wait for SES."]


def check(session, params: dict[str, str]) -> tuple[list[str], list[str]]:
    problems: list[str] = []
    warnings: list[str] = []
    host = params.get("GatewayHostname", "")
    zone = params.get("HostedZoneId", "")
    secret = params.get("TlsSecretId", "")
    try:
        if zone:
            problems += _zone(session.client("route53"), zone, host)
        elif secret:
            problems += _byo_secret(session.client("secretsmanager"), secret)
        elif not params.get("TlsS3Uri"):
            problems.append("the gateway needs a TLS certificate: set HostedZoneId (the Route 53 zone that holds "
                            "GatewayHostname; Postern gets a Let's Encrypt certificate) or TlsSecretId in "
                            "samconfig.toml's parameter_overrides.")
        if params.get("OutboundTransport", "ses") == "ses":
            sesv2 = session.client("sesv2")
            warnings += _ses_sandbox(sesv2)
            if params.get("MailDomain"):
                warnings += _ses_domain(sesv2, params["MailDomain"])
    except BotoCoreError as exc:
        problems.append(f"cannot reach AWS for the preflight checks: {exc}")
    return problems, warnings


def report(problems: list[str], warnings: list[str], out=None) -> bool:
    """Print what was found (stderr); True when the deploy may go on."""
    out = out or sys.stderr
    for w in warnings:
        print(f"preflight warning: {w}", file=out)
    for p in problems:
        print(f"preflight: {p}", file=out)
    return not problems


def samconfig_parameters(path: Path, env: str = "default") -> tuple[dict[str, str], str]:
    """(parameter_overrides as a dict, region) from samconfig.toml's deploy section."""
    with path.open("rb") as fh:
        deploy = tomllib.load(fh).get(env, {}).get("deploy", {}).get("parameters", {})
    raw = deploy.get("parameter_overrides", "")
    tokens = shlex.split(raw) if isinstance(raw, str) else [t for item in raw for t in shlex.split(item)]
    return dict(t.split("=", 1) for t in tokens if "=" in t), deploy.get("region", "")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="AWS checks before `sam deploy` (make deploy runs them).")
    ap.add_argument("--config-env", default=os.environ.get("SAM_CONFIG_ENV", "default"))
    ap.add_argument("--samconfig", type=Path, default=Path(__file__).resolve().parents[1] / "samconfig.toml")
    args = ap.parse_args(argv)
    import boto3

    params, region = samconfig_parameters(args.samconfig, args.config_env)
    session = boto3.Session(region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
                            or region or None)
    return 0 if report(*check(session, params)) else 1


if __name__ == "__main__":
    sys.exit(main())
