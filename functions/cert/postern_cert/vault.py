"""JSON documents in Secrets Manager: the certificate secret and the ACME account secret.

In:   a boto3 Secrets Manager client and a secret id (name or ARN).
Out:  :meth:`Vault.read` -> (document, version id), or (None, None) when the secret exists but
      has no value yet (the template creates it empty); :meth:`Vault.write` -> the new
      version id (AWSCURRENT moves to it; the gateway notices the new version and reloads).
Fails: :class:`VaultError` naming the secret: it does not exist, it is not JSON, access is
      denied, or Secrets Manager cannot be reached.
"""

from __future__ import annotations

import json

from botocore.exceptions import BotoCoreError, ClientError


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
