"""What the listeners ask the trust layer: the SMTP checks and the per-connection limit.

In:   a Backend whose ``limits`` (:class:`postern.limits.Limits`) and ``trust``
      (:class:`Trust`: resolver, :class:`~.authres.InboundAuth`, DNSBL zones) the gateway
      app sets (:func:`attach`); tests set them the same way over a fake resolver and the
      in-memory counters.
Out:  :func:`smtp_checks(backend, role)` -> the :class:`~postern_gateway.smtp.checks.Check`
      list for ``start_smtp(..., checks=...)``, in order:
        :class:`ConnectionLimit` (every role): ``421 4.7.0`` beyond ``max_conn_per_ip``
            concurrent connections from one IP (released at disconnect);
        :class:`Dnsbl` (MX only, when zones are set): ``554 5.7.1`` instead of the greeting;
        :class:`InboundAuthCheck` (MX only, ``inbound_auth``): SPF/DKIM/DMARC/ARC at end of
            DATA, before spooling; prepends ``Authentication-Results`` to the trace prefix,
            ``550 5.7.1`` for DMARC p=reject failures, ``junk`` for p=quarantine;
        :class:`SendRate` (submission): ``451 4.7.1`` once the authenticated user is over
            ``send_rate_limit`` recipients per window.
      :func:`connection_ticket(backend, ip, protocol)` for the POP3 and IMAP listeners: a
      ticket to release at disconnect, or None (refuse: the listener says why).
Fails: a check that raises becomes ``451 4.3.0`` (the SMTP handler's rule: a broken check
      defers mail, never accepts it unchecked); InboundAuth itself never raises for DNS
      trouble (temperror is accepted with the header saying so).

Every refusal is logged with the client IP (postern.limits / postern.trust loggers).
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass

from postern import status
from postern.status import Reply
from postern.verdicts import AuthFacts

from ..smtp.checks import Check, DataContext
from . import dmarc, dnsbl
from .authres import InboundAuth

log = logging.getLogger("postern.trust")

TOO_MANY_FROM_IP = Reply(421, "4.7.0", "Too many connections from your address, try again later")
DNSBL_LISTED = Reply(554, "5.7.1", "Service unavailable; client host blocked")


@dataclass
class Trust:
    """The DNS-backed checks of one gateway process."""

    resolver: object
    inbound: InboundAuth
    dnsbl_zones: tuple[str, ...] = ()
    enabled: bool = True  # POSTERN_INBOUND_AUTH
    skip: tuple[str, ...] = ()  # POSTERN_INBOUND_AUTH_SKIP: networks whose mail is not checked

    @classmethod
    def from_settings(cls, settings, resolver=None) -> Trust:
        from .dns import resolver_for

        r = resolver or resolver_for(settings)
        return cls(r, InboundAuth.from_settings(settings, r), tuple(settings.dnsbl_zones), settings.inbound_auth,
                   tuple(settings.inbound_auth_skip))

    def skipped(self, ip: str) -> bool:
        """Loopback by default, as pypolicyd-spf's ``skip_addresses``: SPF of 127.0.0.1 means nothing."""
        try:
            a = ipaddress.ip_address(ip)
        except ValueError:
            return False
        for net in self.skip:
            try:
                if a in ipaddress.ip_network(net, strict=False):
                    return True
            except ValueError:
                continue
        return False


def attach(backend, clients=None, resolver=None) -> None:
    """Give a Backend its limits and trust services (the gateway app calls this once)."""
    from postern.limits import limits_for

    from . import redact

    redact.install()  # aiosmtpd's DEBUG lines carry AUTH continuations and message bodies
    if backend.limits is None:
        backend.limits = limits_for(backend.settings, clients)
    if backend.trust is None:
        backend.trust = Trust.from_settings(backend.settings, resolver)


def _ip(session) -> str:
    peer = getattr(session, "peer", None)
    return str(peer[0]) if isinstance(peer, tuple) and peer else ""


def connection_ticket(backend, ip: str, protocol: str):
    """A per-IP connection slot for POP3/IMAP, or None when over the limit; no limits -> a no-op ticket."""
    limits = getattr(backend, "limits", None)
    if limits is None:
        return _NoTicket()
    return limits.connect(ip, protocol)


class _NoTicket:
    def release(self) -> None:
        pass


class ConnectionLimit(Check):
    def __init__(self, backend, protocol: str):
        self.backend = backend
        self.protocol = protocol

    async def on_connect(self, server, session) -> Reply | None:
        limits = self.backend.limits
        if limits is None:
            return None
        ticket = limits.connect(_ip(session), self.protocol)
        if ticket is None:
            return TOO_MANY_FROM_IP
        server.postern_ticket = ticket  # released by on_disconnect
        return None

    def on_disconnect(self, server) -> None:
        ticket = getattr(server, "postern_ticket", None)
        if ticket is not None:
            ticket.release()
            server.postern_ticket = None


class Dnsbl(Check):
    def __init__(self, backend):
        self.backend = backend

    async def on_connect(self, server, session) -> Reply | None:
        trust = self.backend.trust
        if trust is None or not trust.dnsbl_zones:
            return None
        hit = await self.backend.run(dnsbl.listed, trust.resolver, _ip(session), trust.dnsbl_zones)
        if hit is None:
            return None
        text = f"Service unavailable; client host [{_ip(session)}] blocked using {hit.zone}"
        return DNSBL_LISTED.with_text(text)


def auth_facts(verdict) -> AuthFacts:
    """What delivery needs of the verdict (postern.verdicts): SPF for MAIL FROM, a passing DKIM
    signature aligned (relaxed, RFC 7489 §3.1.1) with the From: domain - with or without a DMARC
    record - the DMARC result and the quarantine disposition."""
    from_domain = verdict.dmarc.from_domain if verdict.dmarc else ""
    dkim_aligned = bool(from_domain) and any(
        r.result == "pass" and dmarc.aligned(r.domain, from_domain, "r") for r in verdict.dkim)
    return AuthFacts(spf=verdict.spf.result if verdict.spf else "none", dkim_aligned=dkim_aligned,
                     dmarc=verdict.dmarc.result if verdict.dmarc else "none", quarantine=verdict.junk)


class InboundAuthCheck(Check):
    def __init__(self, backend):
        self.backend = backend

    async def on_data(self, server, session, envelope, ctx: DataContext) -> Reply | None:
        trust = self.backend.trust
        if trust is None or not trust.enabled:
            return None
        if trust.skipped(ctx.client_ip):
            # RFC 8601 §2.2 "none": we checked nothing for this client (POSTERN_INBOUND_AUTH_SKIP).
            ctx.trace.insert(0, f"Authentication-Results: {trust.inbound.hostname}; none\r\n")
            return None
        verdict = await self.backend.run(trust.inbound.check, ctx.raw, client_ip=ctx.client_ip, helo=ctx.helo,
                                         mail_from=ctx.sender)
        if verdict.action == "reject":
            log.warning("refused queue_id=%s ip=%s: %s", ctx.queue_id, ctx.client_ip, verdict.reply)
            return verdict.reply
        # RFC 8601 §4: our field above everything else in the trace prefix (above Received too:
        # the store prepends the prefix, so the topmost field is ours).
        ctx.trace.insert(0, verdict.header.decode("ascii"))
        ctx.auth = auth_facts(verdict).to_dict()
        if verdict.junk:
            ctx.junk = True
            log.info("quarantine queue_id=%s ip=%s from_domain=%s", ctx.queue_id, ctx.client_ip,
                     verdict.dmarc.from_domain if verdict.dmarc else "")
        return None


class SendRate(Check):
    def __init__(self, backend):
        self.backend = backend

    async def on_data(self, server, session, envelope, ctx: DataContext) -> Reply | None:
        limits = self.backend.limits
        if limits is None or not ctx.auth_user:
            return None
        refusal = await self.backend.run(limits.send_allowed, ctx.auth_user, len(ctx.recipients), ctx.client_ip)
        if refusal is not None:
            return status.RATE_LIMITED.with_text(refusal.text)
        return None


def smtp_checks(backend, role: str) -> list[Check]:
    checks: list[Check] = [ConnectionLimit(backend, "smtp" if role == "mx" else role)]
    if role == "mx":
        checks += [Dnsbl(backend), InboundAuthCheck(backend)]
    else:
        checks.append(SendRate(backend))
    return checks
