"""The one decision the cert function makes: keep, check, or (re)issue the gateway's certificate.

In:   a :class:`~postern_cert.request.CertRequest`, boto3 clients for Route 53, Secrets Manager
      and SSM (the ACME account key's parameter), the time now, and a deadline on the monotonic
      clock.
Out:  :func:`ensure` -> :class:`Outcome`:
        ACME mode (HostedZoneId given): "kept" while the certificate in the secret covers the
        names, is outside its renewal window (see ``certificate``) and came from the ACME
        server asked for (staging to production is a new certificate), else "issued": a new
        key and certificate written as a new version of the secret ({"cert", "key",
        "directory"}; the gateway reads cert and key).
        Bring-your-own mode: "checked" when the secret holds a certificate and key that match,
        cover the names and are valid now; nothing is written. "unchecked" without a secret
        (the gateway reads its certificate from TlsS3Uri, which this function may not read).
Fails: :data:`EXPECTED` errors, each a sentence naming what to fix (no such secret, not JSON,
      wrong names, expired, the zone, the CA's refusal). The secret is written only after the
      new certificate parsed and matched its key, so a failure never replaces a working
      certificate.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from .certificate import Certificate, CertificateError, byo_problem, new_key, parse, renewal_reason
from .issuer import AcmeIssuer, IssueError
from .request import CertRequest, RequestError
from .route53 import ChallengeDnsError, DnsChallenges
from .vault import Parameters, Vault, VaultError

log = logging.getLogger("postern.cert")

EXPECTED = (RequestError, VaultError, ChallengeDnsError, IssueError, CertificateError)


@dataclass(frozen=True)
class Outcome:
    action: str  # issued | kept | checked | unchecked
    reason: str
    certificate: Certificate | None
    version_id: str | None

    def data(self, now: dt.datetime) -> dict[str, str]:
        """The custom resource's attributes (Fn::GetAtt)."""
        c = self.certificate
        if c is None:
            return {"Action": self.action}
        return {"Action": self.action, "NotAfter": c.not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "DaysLeft": str(int(c.days_left(now))), "Fingerprint": c.fingerprint,
                "VersionId": self.version_id or ""}


@dataclass(frozen=True)
class _Held:
    """What the secret holds now."""

    certificate: Certificate | None = None
    cert_pem: bytes = b""
    version_id: str | None = None
    unusable: str = ""  # why what it holds cannot be served
    directory: str = ""  # the ACME server that issued it (written beside cert and key)


def _held(vault: Vault, req: CertRequest) -> _Held:
    doc, version = vault.read(req.secret_id)
    if doc is None:
        return _Held()
    try:
        cert_pem = str(doc["cert"]).encode()
        return _Held(parse(cert_pem, str(doc["key"]).encode()), cert_pem, version,
                     directory=str(doc.get("directory") or ""))
    except KeyError:
        return _Held(version_id=version,
                     unusable=f"secret {req.secret_id} must hold JSON with \"cert\" and \"key\" (PEM)")
    except CertificateError as exc:
        return _Held(version_id=version, unusable=f"secret {req.secret_id}: {exc}")


def ensure(req: CertRequest, route53, secrets, ssm, now: dt.datetime, deadline: float) -> Outcome:
    if not req.acme and not req.secret_id:
        return Outcome("unchecked", "it comes from TlsS3Uri", None, None)
    vault = Vault(secrets)
    held = _held(vault, req)
    current = held.certificate
    if not req.acme:
        problem = held.unusable or byo_problem(current, req.domains, now)
        if problem:
            raise CertificateError(f"TlsSecretId {req.secret_id}: {problem}")
        return Outcome("checked", "bring-your-own certificate", current, held.version_id)

    account = Parameters(ssm)
    issuer = AcmeIssuer(
        req.directory_url, DnsChallenges(route53, req.hosted_zone_id),
        load_account=lambda: account.read(req.account_parameter),
        save_account=lambda doc: account.write(req.account_parameter, doc),
    )
    reason = held.unusable or renewal_reason(current, req.domains, now)
    if reason is None and held.directory and held.directory != req.directory_url:
        reason = f"issued by {held.directory}, and the ACME server is now {req.directory_url}"
    if reason is None:
        try:
            suggested = issuer.suggested_renewal(held.cert_pem)
        except IssueError as exc:  # the CA's renewal information is advice: its outage is no renewal failure
            log.warning("no renewal information from the CA: %s", exc)
            suggested = None
        reason = renewal_reason(current, req.domains, now, suggested)
    if reason is None:
        log.info("certificate kept: %.1f days left, renewal from %s", current.days_left(now),
                 current.renew_at().strftime("%Y-%m-%d"))
        return Outcome("kept", "within its validity", current, held.version_id)

    log.info("issuing a certificate for %s: %s", ", ".join(req.domains), reason)
    key = new_key()
    chain = issuer.issue(req.domains, key, deadline)
    issued = parse(chain, key)
    missing = [n for n in req.domains if not issued.covers(n)]
    if missing:
        raise IssueError(f"the CA issued a certificate without {', '.join(missing)}")
    version = vault.write(req.secret_id, {"cert": chain.decode(), "key": key.decode(), "directory": req.directory_url})
    log.info("certificate %s issued by %s, valid until %s, secret version %s", issued.fingerprint,
             issued.issuer, issued.not_after.isoformat(), version)
    return Outcome("issued", reason, issued, version)

