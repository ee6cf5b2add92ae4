"""Outbound transports (ses, smarthost, mx) behind one interface; see ``base``.

``make_transport(settings, clients, resolver=None)`` picks one by
``settings.outbound_transport``; it raises :class:`TransportUnavailable` for
an unknown name, and for ``mx`` unless ``settings.outbound_vpc`` says the
deliver function runs in the VPC option (port 25 is blocked otherwise).
"""

from __future__ import annotations

from .base import RecipientResult, SendRequest, Transport


class TransportUnavailable(ValueError):
    """The configured transport cannot work in this deployment (a configuration error)."""


def make_transport(settings, clients, resolver=None, mtasts=None) -> Transport:
    kind = settings.outbound_transport
    if kind == "ses":
        from .ses import SesTransport

        return SesTransport(settings, clients)
    if kind == "smarthost":
        from .smarthost import SmarthostTransport

        return SmarthostTransport(settings, clients)
    if kind == "mx":
        if not settings.outbound_vpc:
            # Lambda outside a VPC cannot open port 25 (AWS blocks it; the restriction is lifted only
            # for a function in a VPC with a NAT gateway and an Elastic IP, on request).
            raise TransportUnavailable(
                "the mx transport needs the deliver function in the VPC option (template parameter "
                "DeliverVpc=true, which sets POSTERN_OUTBOUND_VPC=true) and AWS's port-25 restriction "
                "lifted for its Elastic IP; use ses or smarthost otherwise")
        from .mx import MxTransport

        return MxTransport(settings, resolver=resolver, mtasts=mtasts)
    raise TransportUnavailable(f"POSTERN_OUTBOUND_TRANSPORT must be ses, smarthost or mx, got {kind!r}")


__all__ = ["RecipientResult", "SendRequest", "Transport", "TransportUnavailable", "make_transport"]
