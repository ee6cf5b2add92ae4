"""cert - the gateway's TLS certificate: issued before the gateway starts, renewed on a schedule (certbot's job).

READS
    A CloudFormation custom resource request (``Custom::TlsCertificate``: Create, Update,
    Delete) or the EventBridge schedule's event; both carry the same properties
    (``postern_cert.request``): the names, the certificate secret, the Route 53 hosted zone
    (empty = bring-your-own), the ACME account key's SSM parameter and the ACME directory. The
    secret's current certificate.
WRITES
    With a hosted zone: when the certificate is missing, does not cover the names or is in its
    renewal window, a new key and certificate from the ACME server (DNS-01: TXT records in the
    zone, removed afterwards) as a new version of the secret; the gateway sees the new version
    and reloads without a restart. The ACME account key, once, into its own SecureString
    parameter (created here: CloudFormation cannot create one), deleted with the resource.
    Bring-your-own: nothing; the certificate is only checked.
    Custom resource: SUCCESS with attributes NotAfter, DaysLeft, Fingerprint, VersionId, Action.
FAILURES
    Custom resource: FAILED with a sentence saying what to fix (no such zone, a name outside
    it, the CA's refusal, an expired or mismatched bring-your-own certificate); on Create the
    stack stops before any gateway task starts. Delete removes the account key's parameter and
    always succeeds (the certificate secret is the template's and goes with it; a parameter that
    cannot be removed is logged and left). Schedule: the error is logged and raised, so Lambda retries
    the event twice and the function's Errors metric counts it; the old certificate stays in
    service, and the gateway's certificate-expiry alarm is the backstop.
CODE
    postern_cert.renew (the decision), .issuer (ACME, certbot's ``acme``), .route53 (DNS-01),
    .vault (the secret and the parameter), .certificate (pure), .cfn (custom resource responses).
"""

from __future__ import annotations

import datetime as dt
import logging
import time

import boto3
from botocore.config import Config

from postern_cert import cfn, renew
from postern_cert.request import CertRequest
from postern_cert.vault import Parameters, VaultError

log = logging.getLogger("postern.cert")
log.setLevel(logging.INFO)  # this function's lines (and its modules', postern.cert.*) at INFO in CloudWatch

RESPONSE_MARGIN = 30.0  # seconds kept back from the Lambda timeout to answer CloudFormation
_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=30)


def _clients():
    session = boto3.session.Session()
    return (session.client("route53", config=_CONFIG), session.client("secretsmanager", config=_CONFIG),
            _ssm(session))


def _ssm(session=None):
    return (session or boto3.session.Session()).client("ssm", config=_CONFIG)


def _deadline(context) -> float:
    remaining = context.get_remaining_time_in_millis() / 1000 if context is not None else 600.0
    return time.monotonic() + max(10.0, remaining - RESPONSE_MARGIN)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _custom_resource(event: dict, context) -> None:
    kind = event["RequestType"]
    physical = event.get("PhysicalResourceId") or event["LogicalResourceId"]
    if kind == "Delete":  # nothing of ours outlives the stack: the secret is a template resource,
        _forget_account(event.get("ResourceProperties") or {})  # the parameter is ours
        cfn.respond(event, cfn.SUCCESS, "account key removed", physical)
        return
    try:
        req = CertRequest.from_properties(event.get("ResourceProperties") or {})
        route53, secrets, ssm = _clients()
        now = _now()
        outcome = renew.ensure(req, route53, secrets, ssm, now, _deadline(context))
    except renew.EXPECTED as exc:
        log.error("certificate %s failed: %s", kind, exc)
        cfn.respond(event, cfn.FAILED, f"TLS certificate: {exc}", physical)
        return
    except Exception as exc:  # noqa: BLE001 - CloudFormation must hear back, whatever happened
        log.exception("certificate %s failed", kind)
        cfn.respond(event, cfn.FAILED, f"TLS certificate: internal error {exc.__class__.__name__}: {exc}", physical)
        return
    cfn.respond(event, cfn.SUCCESS, f"certificate {outcome.action}: {outcome.reason}", req.secret_id or "TlsS3Uri",
                outcome.data(now))


def _forget_account(props: dict) -> None:
    """Delete: the ACME account key's parameter goes with the stack (a Delete must succeed, so a
    failure is logged: the key can then only revoke this stack's own certificates)."""
    name = str(props.get("AccountParameter") or "").strip()
    if not name.startswith("/"):
        return
    try:
        Parameters(_ssm()).delete(name)
    except VaultError as exc:
        log.error("ACME account key not removed: %s", exc)


def _scheduled(event: dict, context) -> dict:
    req = CertRequest.from_properties(event)
    route53, secrets, ssm = _clients()
    now = _now()
    try:
        outcome = renew.ensure(req, route53, secrets, ssm, now, _deadline(context))
    except renew.EXPECTED as exc:
        log.error("certificate renewal failed: %s", exc)
        raise
    log.info("certificate %s: %s", outcome.action, outcome.reason)
    return outcome.data(now)


def lambda_handler(event: dict, context):
    if "RequestType" in event:
        return _custom_resource(event, context)
    return _scheduled(event, context)
