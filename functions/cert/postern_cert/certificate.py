"""The certificate a secret holds: what names it covers, when it expires, when to renew it.

In:   PEM bytes (``cert``: the leaf first, then its chain; ``key``: the private key), the
      names the gateway needs, and the time now.
Out:  :func:`parse` -> :class:`Certificate`; :func:`renewal_reason` -> why a new certificate
      is needed, or None; :func:`byo_problem` -> why a bring-your-own certificate cannot be
      served, or None; :func:`new_key` -> a fresh private key in PEM.
Fails: :class:`CertificateError` for PEM that does not parse or a key that does not belong
      to the certificate. Pure: no I/O, no clock of its own.

Renewal window: a certificate is renewed once less than ``min(lifetime / 2, max(lifetime / 3,
30 days))`` is left: 30 days for Let's Encrypt's 90-day certificates, 22.5 days for 45-day
ones, half the lifetime of a 6-day one. That leaves two weeks of twice-daily retries before
the 14-day alarm, and never renews so often that the CA's duplicate-certificate limit
(5 a week for the same names) bites. An ACME server's renewal information (RFC 9773, ARI),
when it offers one, can only bring the date forward.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

RENEW_AT_MOST_DAYS_LEFT = dt.timedelta(days=30)
BEGIN = b"-----BEGIN CERTIFICATE-----"


class CertificateError(ValueError):
    """The PEM material is not a usable certificate and key."""


@dataclass(frozen=True)
class Certificate:
    names: tuple[str, ...]  # subjectAltName DNS names, lower case
    not_before: dt.datetime  # aware, UTC
    not_after: dt.datetime
    issuer: str
    fingerprint: str  # SHA-256 of the leaf's DER, colon-separated hex

    @property
    def lifetime(self) -> dt.timedelta:
        return self.not_after - self.not_before

    def renew_window(self) -> dt.timedelta:
        return min(self.lifetime / 2, max(self.lifetime / 3, RENEW_AT_MOST_DAYS_LEFT))

    def renew_at(self) -> dt.datetime:
        return self.not_after - self.renew_window()

    def days_left(self, now: dt.datetime) -> float:
        return (self.not_after - now).total_seconds() / 86400

    def covers(self, name: str) -> bool:
        """RFC 6125 §6.4.3: exact match, or a wildcard in the left-most label only."""
        name = name.lower().rstrip(".")
        for san in self.names:
            if san == name:
                return True
            if san.startswith("*.") and "." in name and name.split(".", 1)[1] == san[2:]:
                return True
        return False


def _leaf(pem: bytes) -> x509.Certificate:
    start = pem.find(BEGIN)
    if start < 0:
        raise CertificateError("no certificate in the PEM data")
    try:
        return x509.load_pem_x509_certificate(pem[start:])
    except ValueError as exc:
        raise CertificateError(f"the certificate does not parse ({exc})") from None


def parse(cert_pem: bytes, key_pem: bytes | None = None) -> Certificate:
    """The leaf certificate (the first in ``cert_pem``); with ``key_pem``, check that it matches."""
    leaf = _leaf(cert_pem)
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(n.lower() for n in san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = ()
    if key_pem is not None:
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError) as exc:
            raise CertificateError(f"the private key does not parse ({exc.__class__.__name__})") from None
        pub = serialization.PublicFormat.SubjectPublicKeyInfo
        if key.public_key().public_bytes(serialization.Encoding.DER, pub) != \
                leaf.public_key().public_bytes(serialization.Encoding.DER, pub):
            raise CertificateError("the private key does not belong to the certificate")
    digest = hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    return Certificate(
        names=names,
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        issuer=leaf.issuer.rfc4514_string(),
        fingerprint=":".join(digest[i:i + 2] for i in range(0, len(digest), 2)),
    )


def renewal_reason(current: Certificate | None, names: tuple[str, ...], now: dt.datetime,
                   suggested: dt.datetime | None = None) -> str | None:
    """Why a new certificate is needed now, or None. ``suggested``: the CA's ARI renewal time."""
    if current is None:
        return "no certificate yet"
    missing = [n for n in names if not current.covers(n)]
    if missing:
        return f"the certificate does not cover {', '.join(missing)}"
    if now >= current.not_after:
        return f"the certificate expired on {current.not_after:%Y-%m-%d %H:%M} UTC"
    if now >= current.renew_at():
        return f"{current.days_left(now):.1f} days left (renewal window opened {current.renew_at():%Y-%m-%d})"
    if suggested is not None and now >= suggested:
        return f"the CA suggests renewal from {suggested:%Y-%m-%d %H:%M} UTC (ARI)"
    return None


def byo_problem(current: Certificate | None, names: tuple[str, ...], now: dt.datetime) -> str | None:
    """Why a bring-your-own certificate cannot be served, or None (it is not ours to renew)."""
    if current is None:
        return "the secret holds no certificate"
    missing = [n for n in names if not current.covers(n)]
    if missing:
        return (f"the certificate covers {', '.join(current.names) or 'no DNS name'}, "
                f"not {', '.join(missing)}")
    if now < current.not_before:
        return f"the certificate is not valid before {current.not_before:%Y-%m-%d %H:%M} UTC"
    if now >= current.not_after:
        return f"the certificate expired on {current.not_after:%Y-%m-%d %H:%M} UTC"
    return None


def new_key() -> bytes:
    """An RSA-2048 key, PKCS#8 PEM. RSA, not ECDSA: scanners and old phones submit mail too."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
