"""What the cert function is asked to do: one typed request from either trigger.

In:   the custom resource's ``ResourceProperties`` or the schedule rule's ``Input`` (the
      template gives both the same keys):
        Domains          names the certificate must cover (the gateway's host name)
        SecretId         the secret that holds {"cert": PEM chain, "key": PEM key}; empty only
                         without a hosted zone (the certificate then comes from TlsS3Uri)
        HostedZoneId     Route 53 zone for DNS-01; empty = bring-your-own (only checked)
        AccountParameter the SSM parameter (SecureString) that holds the ACME account key (ACME
                         mode); the function creates it when it registers the account
        DirectoryUrl     the ACME server's directory (Let's Encrypt unless told otherwise)
Out:  :class:`CertRequest`.
Fails: :class:`RequestError` naming the missing or malformed property.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
_NAME = re.compile(r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$")


class RequestError(ValueError):
    """The request's properties are incomplete or malformed."""


@dataclass(frozen=True)
class CertRequest:
    domains: tuple[str, ...]
    secret_id: str
    hosted_zone_id: str = ""
    account_parameter: str = ""
    directory_url: str = LETS_ENCRYPT

    @property
    def acme(self) -> bool:
        """ACME mode (issue and renew) rather than bring-your-own (check only)."""
        return bool(self.hosted_zone_id)

    @classmethod
    def from_properties(cls, props: dict) -> CertRequest:
        raw = props.get("Domains")
        if isinstance(raw, str):
            raw = [raw]
        domains = tuple(d.strip().lower().rstrip(".") for d in raw or () if d and d.strip())
        if not domains:
            raise RequestError("Domains is empty: give the gateway's host name")
        bad = [d for d in domains if not _NAME.match(d)]
        if bad:
            raise RequestError(f"not a DNS name: {', '.join(bad)}")
        secret_id = str(props.get("SecretId") or "").strip()
        zone = str(props.get("HostedZoneId") or "").strip()
        zone = zone.rsplit("/", 1)[-1]  # "/hostedzone/Z123" as Route 53 itself prints it
        if zone and not secret_id:
            raise RequestError("SecretId is empty: no secret to keep the certificate in")
        account = str(props.get("AccountParameter") or "").strip()
        if zone and not account:
            raise RequestError("AccountParameter is empty: the ACME account key needs a parameter")
        if account and not account.startswith("/"):
            raise RequestError(f"AccountParameter {account} is not a parameter path (/...)")
        return cls(domains=domains, secret_id=secret_id, hosted_zone_id=zone, account_parameter=account,
                   directory_url=str(props.get("DirectoryUrl") or LETS_ENCRYPT).strip())
