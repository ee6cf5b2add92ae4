"""Client auto-configuration routes: Thunderbird, Outlook, Apple.

GET  /mail/config-v1.1.xml                          Thunderbird, on autoconfig.<domain>
GET  /.well-known/autoconfig/mail/config-v1.1.xml   the same (what the apex redirect in the README points at)
POST /autodiscover/autodiscover.xml                 Outlook POX (and GET ?Email=...); also /Autodiscover/Autodiscover.xml
GET  /apple/mobileconfig?emailaddress=ADDRESS       an Apple configuration profile (signed when a key is configured)

No authentication: what they return is public (host names, ports, TLS modes) and names only
the address the client gave. The domain is the address's (``emailaddress``) or, for autoconfig,
the host's (``autoconfig.<domain>``); it must be a domain Postern serves (404 otherwise). Whether
the address is a user is never revealed.
"""

from __future__ import annotations

import json

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from botocore.exceptions import BotoCoreError, ClientError

from postern.address import parse_address
from postern.clientoffer import offer
from postern.errors import InvalidAddress, StoreUnavailable

from ..body import body_bytes
from ..clientconfig import apple, outlook, thunderbird
from ..errors import bad_request, not_found

router = Router()
XML = "application/xml; charset=utf-8"


def _address(text: str):
    try:
        return parse_address(text)
    except InvalidAddress:
        return None


def _served(svc, domain: str | None) -> str:
    if not domain or not svc.directory.is_local_domain(domain):
        raise not_found("No such mail domain here")
    return domain


def _param(*names: str) -> str:
    qs = router.current_event.query_string_parameters or {}
    lowered = {k.lower(): v for k, v in qs.items()}
    return next((lowered[n] for n in names if lowered.get(n)), "")


@router.get("/mail/config-v1.1.xml")
@router.get("/.well-known/autoconfig/mail/config-v1.1.xml")
def thunderbird_config():
    svc, viewer = router.context["services"], router.context["viewer"]
    given = _param("emailaddress")
    addr = _address(given) if given else None
    if given and addr is None:
        raise bad_request("emailaddress is not an address")
    domain = _served(svc, addr.domain if addr else viewer.domain_under("autoconfig"))
    return Response(200, XML, thunderbird.render(domain, offer(svc.settings)).decode())


def _outlook(body: bytes) -> Response:
    svc = router.context["services"]
    if body:
        try:
            given, schema = outlook.requested_address(body)
        except ValueError:
            return Response(200, XML, outlook.render_error().decode())
    else:
        given, schema = _param("email", "emailaddress"), ""
    if schema and schema != outlook.OUTLOOK_NS:
        return Response(200, XML, outlook.render_error("Provider is not available: only the Outlook schema").decode())
    addr = _address(given)
    if addr is None:
        return Response(200, XML, outlook.render_error().decode())
    _served(svc, addr.domain)
    return Response(200, XML, outlook.render(addr.canonical, offer(svc.settings)).decode())


@router.post("/autodiscover/autodiscover.xml")
@router.post("/Autodiscover/Autodiscover.xml")
def outlook_post():
    return _outlook(body_bytes(router.current_event))


@router.get("/autodiscover/autodiscover.xml")
@router.get("/Autodiscover/Autodiscover.xml")
def outlook_get():
    return _outlook(b"")


def _signer(svc) -> tuple[str, str] | None:
    sid = svc.settings.profile_signing_secret_id
    if not sid:
        return None
    try:
        secret = json.loads(svc.clients.secrets.get_secret_value(SecretId=sid)["SecretString"])
    except (ClientError, BotoCoreError) as exc:
        raise StoreUnavailable(f"profile signing secret unreadable: {exc.__class__.__name__}") from exc
    return secret["cert"], secret["key"]


@router.get("/apple/mobileconfig")
def apple_profile():
    svc = router.context["services"]
    addr = _address(_param("emailaddress", "email"))
    if addr is None:
        raise bad_request("Give the address: /apple/mobileconfig?emailaddress=you@example.com")
    _served(svc, addr.domain)
    body = apple.render(addr.canonical, offer(svc.settings))
    signer = _signer(svc)
    if signer is not None:
        body = apple.sign(body, *signer)
    return Response(200, "application/x-apple-aspen-config", body,
                    headers={"Content-Disposition": f'attachment; filename="{addr.domain}.mobileconfig"'})
