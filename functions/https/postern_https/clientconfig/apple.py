"""An Apple configuration profile (``.mobileconfig``) that sets up one mail account.

In:   the address, the offer, and optionally a signing certificate and key (PEM; the
      Secrets Manager secret ``POSTERN_PROFILE_SIGNING_SECRET_ID``, ``{"cert", "key"}``: the
      TLS certificate of the mail host does, as it is what Apple devices already trust).
Out:  :func:`render` -> the profile as a property list (``plistlib``, XML): one
      ``com.apple.mail.managed`` payload. A profile holds one incoming and one outgoing server,
      so it names the offer's first of each, which is its preferred one (IMAP, then POP3;
      implicit TLS before STARTTLS, RFC 8314): ``UseSSL`` true in either mode, the full address
      as the user name, password authentication (the device asks for the password: a profile
      never carries it). Payload UUIDs are derived from the address, so installing the profile
      again replaces the account instead of adding a second one. :func:`sign` -> the CMS
      SignedData (DER, content attached: what ``openssl smime -sign -nodetach -outform der``
      makes), which devices show as "Verified" when the chain is trusted.
Fails: :func:`sign` raises ValueError for a certificate or key that does not load.

The format: Apple's "Configuration Profile Reference" / device-management "Mail" payload;
checked in tests against tests/schemas/mobileconfig-mail.xsd after plist parsing.
"""

from __future__ import annotations

import plistlib
import uuid

_NS = uuid.UUID("5d9a1f0e-6b7c-4d2e-9f3a-0c1b2d3e4f50")  # Postern's namespace for profile UUIDs


def _uuid(*parts: str) -> str:
    return str(uuid.uuid5(_NS, "\0".join(parts))).upper()


def render(address: str, offer) -> bytes:
    domain = address.rsplit("@", 1)[-1]
    incoming = next(iter(offer.of("imap") + offer.of("pop3")), None)
    outgoing = next(iter(offer.of("smtp")), None)
    if incoming is None or outgoing is None:
        raise ValueError("the stack offers no incoming or no outgoing mail service")
    ident = ".".join(reversed(domain.split("."))) + ".postern"
    mail = {
        "PayloadType": "com.apple.mail.managed",
        "PayloadVersion": 1,
        "PayloadIdentifier": f"{ident}.mail.{_uuid('mail', address)}",
        "PayloadUUID": _uuid("mail", address),
        "PayloadDisplayName": f"Mail: {address}",
        "EmailAccountDescription": address,
        "EmailAccountType": "EmailTypeIMAP" if incoming.protocol == "imap" else "EmailTypePOP",
        "EmailAddress": address,
        "IncomingMailServerAuthentication": "EmailAuthPassword",
        "IncomingMailServerHostName": incoming.host,
        "IncomingMailServerPortNumber": incoming.port,
        "IncomingMailServerUseSSL": True,
        "IncomingMailServerUsername": address,
        "OutgoingMailServerAuthentication": "EmailAuthPassword",
        "OutgoingMailServerHostName": outgoing.host,
        "OutgoingMailServerPortNumber": outgoing.port,
        "OutgoingMailServerUseSSL": True,
        "OutgoingMailServerUsername": address,
        "OutgoingPasswordSameAsIncomingPassword": True,
    }
    profile = {
        "PayloadType": "Configuration",
        "PayloadVersion": 1,
        "PayloadIdentifier": f"{ident}.{_uuid('profile', address)}",
        "PayloadUUID": _uuid("profile", address),
        "PayloadDisplayName": f"{domain} mail",
        "PayloadDescription": f"Sets up {address} (IMAP/POP3 and submission over TLS). The password is asked "
                              "for on installation.",
        "PayloadOrganization": domain,
        "PayloadRemovalDisallowed": False,
        "PayloadContent": [mail],
    }
    return plistlib.dumps(profile, fmt=plistlib.FMT_XML)


def sign(data: bytes, cert_pem: str, key_pem: str) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.serialization import pkcs7

    certs = x509.load_pem_x509_certificates(cert_pem.encode())
    key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    builder = pkcs7.PKCS7SignatureBuilder().set_data(data).add_signer(certs[0], key, hashes.SHA256())
    for extra in certs[1:]:  # the chain, so a device can build the path to a root it trusts
        builder = builder.add_certificate(extra)
    return builder.sign(serialization.Encoding.DER, [])
