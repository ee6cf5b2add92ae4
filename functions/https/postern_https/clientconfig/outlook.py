"""Outlook's POX autodiscover (``/autodiscover/autodiscover.xml``): request in, settings out.

In:   the request body Outlook POSTs (``<Autodiscover><Request><EMailAddress>`` in the
      ``.../outlook/requestschema/2006`` namespace), or the address a GET names; the offer.
Out:  :func:`requested_address` -> (address, acceptable response schema) from the request XML,
      parsed with defusedxml (no DTD, no entities) and at most MAX_REQUEST bytes;
      :func:`render` -> the ``.../outlook/responseschema/2006a`` response: one ``Account`` of type
      ``email`` with one ``Protocol`` per endpoint the stack offers (IMAP, POP3, SMTP; ``SSL on``
      with ``Encryption`` ``SSL`` for implicit TLS or ``TLS`` for STARTTLS, the login name the
      full address, ``SPA off``, ``AuthRequired on``); :func:`render_error` -> an ``Error``
      response (code 600, "Invalid Request") for a request that names no address or asks for
      another schema (ActiveSync's mobilesync, which Postern does not speak).
Fails: :class:`ValueError` from :func:`requested_address` for a body that is too large, has a
      DTD or does not parse (the route answers with :func:`render_error`).

The format: Microsoft's "[MS-OXDSCLI]: Autodiscover Publishing and Lookup Protocol" POX schema,
checked in tests against tests/schemas/autodiscover-response-2006a.xsd.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET

import defusedxml
import defusedxml.ElementTree as SafeET

RESPONSE_NS = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
OUTLOOK_NS = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
MAX_REQUEST = 16 * 1024
TYPES = {"imap": "IMAP", "pop3": "POP3", "smtp": "SMTP"}
ENCRYPTION = {"tls": "SSL", "starttls": "TLS"}


def requested_address(body: bytes) -> tuple[str, str]:
    if len(body) > MAX_REQUEST:
        raise ValueError("request too large")
    try:
        root = SafeET.fromstring(body, forbid_dtd=True)
    except (ET.ParseError, defusedxml.DefusedXmlException, ValueError) as exc:
        raise ValueError(f"request does not parse: {exc.__class__.__name__}") from None
    address = schema = ""
    for elem in root.iter():
        name = elem.tag.rsplit("}", 1)[-1] if isinstance(elem.tag, str) else ""
        if name == "EMailAddress" and not address:
            address = (elem.text or "").strip()
        elif name == "AcceptableResponseSchema" and not schema:
            schema = (elem.text or "").strip()
    return address, schema


def _t(parent, tag: str, text: str):
    e = ET.SubElement(parent, tag)
    e.text = text
    return e


def render(address: str, offer) -> bytes:
    ET.register_namespace("", RESPONSE_NS)
    root = ET.Element(f"{{{RESPONSE_NS}}}Autodiscover")
    response = ET.SubElement(root, f"{{{OUTLOOK_NS}}}Response")
    account = ET.SubElement(response, f"{{{OUTLOOK_NS}}}Account")
    _t(account, f"{{{OUTLOOK_NS}}}AccountType", "email")
    _t(account, f"{{{OUTLOOK_NS}}}Action", "settings")
    for svc in offer.services:
        p = ET.SubElement(account, f"{{{OUTLOOK_NS}}}Protocol")
        for tag, text in (("Type", TYPES[svc.protocol]), ("Server", svc.host), ("Port", str(svc.port)),
                          ("DomainRequired", "off"), ("LoginName", address), ("SPA", "off"), ("SSL", "on"),
                          ("Encryption", ENCRYPTION[svc.tls]), ("AuthRequired", "on")):
            _t(p, f"{{{OUTLOOK_NS}}}{tag}", text)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def render_error(message: str = "Invalid Request", code: str = "600") -> bytes:
    ET.register_namespace("", RESPONSE_NS)
    root = ET.Element(f"{{{RESPONSE_NS}}}Autodiscover")
    response = ET.SubElement(root, f"{{{RESPONSE_NS}}}Response")
    error = ET.SubElement(response, f"{{{RESPONSE_NS}}}Error",
                          {"Time": time.strftime("%H:%M:%S", time.gmtime()), "Id": "1"})
    _t(error, f"{{{RESPONSE_NS}}}ErrorCode", code)
    _t(error, f"{{{RESPONSE_NS}}}Message", message)
    ET.SubElement(error, f"{{{RESPONSE_NS}}}DebugData")
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"
