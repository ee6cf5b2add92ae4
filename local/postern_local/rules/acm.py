"""ACM certificate-request rules that moto does not enforce.

In:   ACM ``RequestCertificate`` calls (JSON 1.1, ``CertificateManager.RequestCertificate``), as
      ``postern web certificate`` / ``postern domain add`` and ``make deploy`` make them
      (``postern.webcert``).
Out:  :class:`AcmRules` ``before(call)`` raises :class:`~postern_local.rules.wire.AwsError` for a
      request ACM would refuse; anything else passes to moto unchanged.
Fails: as ACM does: ``LimitExceededException`` past the names quota, ``ValidationException`` for a
      first name longer than 64 octets, ``InvalidDomainValidationOptionsException`` for a name that
      is no DNS name.

The rules (ACM User Guide, "Quotas" and "Request a public certificate"; ACM API Reference,
RequestCertificate):
  * At most 10 distinct names per certificate (``DomainName`` plus ``SubjectAlternativeNames``): the
    account's default quota, adjustable to 100 through Service Quotas; moto takes any number.
  * The first name (``DomainName``) becomes the subject's common name, at most 64 octets; the others
    up to 253.
  * Each name is a DNS name: labels of letters, digits and hyphens, 1-63 octets, neither starting nor
    ending with a hyphen, with at most one leading ``*.`` (a wildcard covers one label).
What moto also does differently and is not corrected here (tests/unit/test_webcert.py checks it):
validation records are there at once (ACM needs a few seconds), the same record for every name, and a
certificate turns ISSUED after ``MOTO_ACM_VALIDATION_WAIT`` seconds with no DNS at all.
"""

from __future__ import annotations

import re

from .wire import AwsError, Call

MAX_NAMES = 10
MAX_COMMON_NAME = 64
MAX_NAME = 253
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


class AcmRules:
    def before(self, call: Call):
        if call.operation != "RequestCertificate":
            return None
        first = str(call.params.get("DomainName") or "")
        names = [first, *[str(n) for n in call.params.get("SubjectAlternativeNames") or []]]
        for name in names:
            _check_name(name)
        if len(first) > MAX_COMMON_NAME:
            raise AwsError("ValidationException", "1 validation error detected: Value at 'domainName' failed to "
                                                  f"satisfy constraint: Member must have length less than or equal "
                                                  f"to {MAX_COMMON_NAME}")
        distinct = {n.lower().rstrip(".") for n in names}
        if len(distinct) > MAX_NAMES:
            raise AwsError("LimitExceededException", f"Cannot request a certificate with more than {MAX_NAMES} "
                                                     f"domain names ({len(distinct)} requested)")
        return None


def _check_name(name: str) -> None:
    bare = name[2:] if name.startswith("*.") else name
    labels = bare.rstrip(".").split(".")
    if not bare or len(name) > MAX_NAME or len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        raise AwsError("InvalidDomainValidationOptionsException", f"Domain name {name!r} is invalid")
