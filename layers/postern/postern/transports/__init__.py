"""Outbound transports (ses, smarthost, mx) behind one interface; see ``base``.

``make_transport(settings, clients, resolver=None)`` picks one by
``settings.outbound_transport``.
"""

from __future__ import annotations

from .base import RecipientResult, SendRequest, Transport


def make_transport(settings, clients, resolver=None, mtasts=None) -> Transport:
    kind = settings.outbound_transport
    if kind == "ses":
        from .ses import SesTransport

        return SesTransport(settings, clients)
    if kind == "smarthost":
        from .smarthost import SmarthostTransport

        return SmarthostTransport(settings, clients)
    if kind == "mx":
        from .mx import MxTransport

        return MxTransport(settings, resolver=resolver, mtasts=mtasts)
    raise ValueError(f"POSTERN_OUTBOUND_TRANSPORT must be ses, smarthost or mx, got {kind!r}")


__all__ = ["RecipientResult", "SendRequest", "Transport", "make_transport"]
