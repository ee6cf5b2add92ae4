"""Thunderbird's autoconfig file (``config-v1.1.xml``), from the stack's :class:`~postern.clientoffer.Offer`.

In:   the mail domain and the offer (host, ports, TLS modes).
Out:  :func:`render` -> UTF-8 XML bytes: one ``emailProvider`` for the domain with one
      ``incomingServer`` per IMAP/POP3 endpoint and one ``outgoingServer`` per submission
      endpoint, in the offer's preference order (implicit TLS first, RFC 8314); socket types
      ``SSL`` (implicit TLS) and ``STARTTLS``; ``password-cleartext`` (over TLS: the stack
      refuses it before); the user name is the full address (``%EMAILADDRESS%``, which
      Thunderbird substitutes).
Fails: never.

The format: Mozilla's "Autoconfiguration in Thunderbird" (config file format version 1.1),
checked in tests against tests/schemas/thunderbird-autoconfig-1.1.xsd.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

SOCKET = {"tls": "SSL", "starttls": "STARTTLS"}


def _server(parent, tag: str, type_: str, svc) -> None:
    s = ET.SubElement(parent, tag, {"type": type_})
    ET.SubElement(s, "hostname").text = svc.host
    ET.SubElement(s, "port").text = str(svc.port)
    ET.SubElement(s, "socketType").text = SOCKET[svc.tls]
    ET.SubElement(s, "authentication").text = "password-cleartext"
    ET.SubElement(s, "username").text = "%EMAILADDRESS%"


def render(domain: str, offer) -> bytes:
    root = ET.Element("clientConfig", {"version": "1.1"})
    provider = ET.SubElement(root, "emailProvider", {"id": domain})
    ET.SubElement(provider, "domain").text = domain
    ET.SubElement(provider, "displayName").text = f"{domain} (Postern)"
    ET.SubElement(provider, "displayShortName").text = domain
    for svc in offer.services:
        if svc.incoming:
            _server(provider, "incomingServer", svc.protocol, svc)
    for svc in offer.of("smtp"):
        _server(provider, "outgoingServer", "smtp", svc)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"
