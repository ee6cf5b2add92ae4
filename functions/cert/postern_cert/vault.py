"""JSON documents kept secret: the certificate in Secrets Manager, the ACME account key in SSM.

In:   a boto3 Secrets Manager client and a secret id (name or ARN) (:class:`Vault`); a boto3 SSM
      client and a parameter name (:class:`Parameters`).
Out:  :meth:`Vault.read` -> (document, version id), or (None, None) when the secret exists but
      has no value yet (the template creates it empty); :meth:`Vault.write` -> the new
      version id (AWSCURRENT moves to it; the gateway notices the new version and reloads).
      :meth:`Parameters.read` -> the document, or None when there is no such parameter yet;
      :meth:`Parameters.write` stores it as a SecureString (KMS, the account's aws/ssm key), in
      the free standard tier while it fits 4 KB (advanced, $0.05 a month, only past that);
      :meth:`Parameters.delete` removes it (gone already is fine).
Fails: :class:`VaultError` naming the secret or parameter: it does not exist (a secret), it is
      not JSON, access is denied, or the service cannot be reached.

Why the account key is a parameter and the certificate a secret (docs/cost.md, "Monthly idle
floor"): a secret costs $0.40 a month, a standard SecureString nothing, with the same encryption
at rest and per-name IAM. CloudFormation cannot create a SecureString, so the parameter is made
by the one function that makes the value, when it registers the account. The certificate stays
a secret: a bring-your-own one is the operator's secret (TlsSecretId), and the gateway and the
HTTPS function read it by version.
"""

from __future__ import annotations

import json

from botocore.exceptions import BotoCoreError, ClientError


STANDARD_LIMIT = 4096  # bytes a standard-tier SSM parameter holds


class VaultError(RuntimeError):
    """A secret cannot be read or written."""


def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


class Vault:
    def __init__(self, client):
        self.client = client

    def read(self, secret_id: str) -> tuple[dict | None, str | None]:
        try:
            r = self.client.get_secret_value(SecretId=secret_id)
        except ClientError as exc:
            if _code(exc) != "ResourceNotFoundException":
                raise VaultError(f"cannot read secret {secret_id} ({_code(exc)})") from None
            self._exists(secret_id)  # no such secret -> VaultError; an empty one -> no value yet
            return None, None
        except BotoCoreError as exc:
            raise VaultError(f"cannot reach Secrets Manager ({exc})") from None
        try:
            doc = json.loads(r.get("SecretString") or "")
        except ValueError:
            raise VaultError(f"secret {secret_id} does not hold JSON") from None
        if not isinstance(doc, dict):
            raise VaultError(f"secret {secret_id} does not hold a JSON object")
        return doc, r.get("VersionId")

    def _exists(self, secret_id: str) -> None:
        try:
            self.client.describe_secret(SecretId=secret_id)
        except ClientError as exc:
            if _code(exc) == "ResourceNotFoundException":
                raise VaultError(f"there is no secret {secret_id}") from None
            raise VaultError(f"cannot read secret {secret_id} ({_code(exc)})") from None

    def write(self, secret_id: str, doc: dict) -> str:
        try:
            r = self.client.put_secret_value(SecretId=secret_id, SecretString=json.dumps(doc))
        except ClientError as exc:
            raise VaultError(f"cannot write secret {secret_id} ({_code(exc)})") from None
        except BotoCoreError as exc:
            raise VaultError(f"cannot reach Secrets Manager ({exc})") from None
        return r["VersionId"]


class Parameters:
    """JSON documents in SSM Parameter Store, as SecureString parameters this function creates."""

    def __init__(self, client):
        self.client = client

    def read(self, name: str) -> dict | None:
        try:
            r = self.client.get_parameter(Name=name, WithDecryption=True)
        except ClientError as exc:
            if _code(exc) == "ParameterNotFound":
                return None
            raise VaultError(f"cannot read parameter {name} ({_code(exc)})") from None
        except BotoCoreError as exc:
            raise VaultError(f"cannot reach SSM Parameter Store ({exc})") from None
        try:
            doc = json.loads(r["Parameter"]["Value"])
        except ValueError:
            raise VaultError(f"parameter {name} does not hold JSON") from None
        if not isinstance(doc, dict):
            raise VaultError(f"parameter {name} does not hold a JSON object")
        return doc

    def write(self, name: str, doc: dict) -> None:
        value = json.dumps(doc, separators=(",", ":"))
        # Standard (free) holds 4 KB; one account (an RSA-2048 JWK and its URL) is ~1.7 KB, so two ACME
        # servers fit and a third moves the parameter to Advanced. Past Advanced there is no way back
        # (AWS refuses the downgrade), hence the retry at Advanced when Standard is refused.
        tiers = ["Standard", "Advanced"] if len(value.encode()) <= STANDARD_LIMIT else ["Advanced"]
        for tier in tiers:
            try:
                self.client.put_parameter(Name=name, Value=value, Type="SecureString", Overwrite=True, Tier=tier,
                                          Description="Postern CertFunction's ACME account key (nothing else reads it)")
                return
            except ClientError as exc:
                if tier == tiers[-1] or _code(exc) != "ValidationException":
                    raise VaultError(f"cannot write parameter {name} ({_code(exc)})") from None
            except BotoCoreError as exc:
                raise VaultError(f"cannot reach SSM Parameter Store ({exc})") from None

    def delete(self, name: str) -> None:
        try:
            self.client.delete_parameter(Name=name)
        except ClientError as exc:
            if _code(exc) != "ParameterNotFound":
                raise VaultError(f"cannot delete parameter {name} ({_code(exc)})") from None
        except BotoCoreError as exc:
            raise VaultError(f"cannot reach SSM Parameter Store ({exc})") from None
