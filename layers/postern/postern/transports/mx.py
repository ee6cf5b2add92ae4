"""Direct delivery to the destination domain's MX hosts (RFC 5321 §5.1).

In:   :class:`~postern.transports.base.SendRequest`; a resolver (``postern.dns``
      seam); an optional :class:`~postern.mtasts.MtaSts`; settings
      ``mx_port`` (25; tests point it at a fake MX), ``outbound_timeout``,
      ``hostname`` (our EHLO name).
Out:  per-recipient results from the first MX host that answered.
Fails (as results, never raised):
      null MX (RFC 7505) -> permanent 5.1.10; NXDOMAIN or ``.invalid`` ->
      permanent 5.1.2; SERVFAIL/DNS timeout -> transient 4.4.3; every host
      unreachable / timing out / 4xx at greeting or MAIL -> transient
      (the last host's answer); MTA-STS enforce with no matching MX or no
      valid TLS -> transient 4.7.5 (RFC 8461 §5: treat as temporary).

Hosts are tried in preference order, each of its addresses in turn; a host
that fails before any recipient was answered makes us try the next one.
STARTTLS is opportunistic (RFC 7435: unverified, and a failed handshake is
retried in clear) unless MTA-STS is enforced for the domain.
"""

from __future__ import annotations

import logging
import random
import smtplib
import ssl

from .. import status
from ..dns import DnsError, Resolver
from .base import (RecipientResult, SendRequest, SessionFailed, Transport, from_reply, permanent_all,
                   smtp_transaction, transient_all)

log = logging.getLogger(__name__)


def _opportunistic_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # RFC 7435 opportunistic security
    return ctx


def _ordered(hosts) -> list[str]:
    """Preference order; hosts of equal preference in random order (RFC 5321 §5.1)."""
    groups: dict[int, list[str]] = {}
    for pref, host in hosts:
        groups.setdefault(pref, []).append(host)
    out: list[str] = []
    for pref in sorted(groups):
        same = groups[pref]
        random.shuffle(same)
        out += same
    return out


class MxTransport(Transport):
    name = "mx"

    def __init__(self, settings, resolver=None, mtasts=None, verified_context: ssl.SSLContext | None = None):
        self.settings = settings
        self.resolver = resolver or Resolver(settings)
        if mtasts is None and settings.mta_sts:
            from ..mtasts import MtaSts

            mtasts = MtaSts(self.resolver)
        self.mtasts = mtasts
        self.verified_context = verified_context or ssl.create_default_context()
        self.port = settings.mx_port

    def send(self, req: SendRequest) -> list[RecipientResult]:
        rcpts = req.recipients
        try:
            answer = self.resolver.mx(req.domain)
        except DnsError as exc:
            if exc.permanent:
                return permanent_all(rcpts, status.NO_SUCH_DOMAIN.enhanced, str(exc))
            return transient_all(rcpts, status.DNS_TEMP.enhanced, str(exc))
        if answer.null:  # RFC 7505 §4.1
            return permanent_all(rcpts, status.NULL_MX.enhanced, f"{req.domain}: {status.NULL_MX.text}")
        policy = None
        if self.mtasts is not None:
            try:
                policy = self.mtasts.policy_for(req.domain)
            except Exception as exc:  # a policy problem never blocks delivery (RFC 8461 §5.1)
                log.warning("mta-sts for %s: %s", req.domain, exc)
        enforce = policy is not None and policy.enforced
        hosts = _ordered(answer.hosts)
        if enforce:
            hosts = [h for h in hosts if policy.matches(h)]
            if not hosts:
                return transient_all(rcpts, "4.7.5", f"{req.domain}: no MX host matches its MTA-STS policy")
        last: list[RecipientResult] | None = None
        any_address = False
        for host in hosts:
            try:
                addrs = self.resolver.addresses(host)
            except DnsError as exc:
                last = transient_all(rcpts, status.DNS_TEMP.enhanced, str(exc)) if not exc.permanent or not answer.implicit \
                    else permanent_all(rcpts, status.NO_SUCH_DOMAIN.enhanced, str(exc))
                continue
            for ip in addrs:
                any_address = True
                try:
                    return self._session(ip, host, req, enforce)
                except SessionFailed as exc:
                    log.info("mx %s [%s] for %s failed: %s", host, ip, req.domain, exc)
                    last = exc.results
        if not any_address and answer.implicit and last is None:
            # RFC 5321 §5.1: no MX and no address records: nowhere to deliver.
            return permanent_all(rcpts, status.NO_SUCH_DOMAIN.enhanced, f"{req.domain}: no MX or address records")
        return last or transient_all(rcpts, "4.4.4", f"{req.domain}: no reachable mail exchanger")

    def _session(self, ip: str, host: str, req: SendRequest, enforce: bool, use_tls: bool = True):
        remote = host
        client = smtplib.SMTP(local_hostname=self.settings.hostname, timeout=self.settings.outbound_timeout)
        try:
            try:
                code, msg = client.connect(ip, self.port)
            except OSError as exc:
                raise SessionFailed(transient_all(req.recipients, "4.4.1", f"{host} [{ip}]: {exc}", remote)) from None
            if code != 220:
                raise SessionFailed([from_reply(r, code if code >= 400 else 421, msg, remote) for r in req.recipients])
            client._host = host  # certificate checks (starttls) are against the MX name, not the IP
            try:
                client.ehlo()
            except (smtplib.SMTPException, OSError) as exc:
                raise SessionFailed(transient_all(req.recipients, "4.4.2", f"{host}: EHLO failed: {exc}", remote)) from None
            if use_tls and client.has_extn("starttls"):
                ctx = self.verified_context if enforce else _opportunistic_context()
                try:
                    client.starttls(context=ctx)
                    client.ehlo()
                except (ssl.SSLError, smtplib.SMTPException, OSError) as exc:
                    if enforce:
                        raise SessionFailed(transient_all(req.recipients, "4.7.5", f"{host}: TLS required by MTA-STS failed: {exc}", remote)) from None
                    client.close()
                    log.info("STARTTLS with %s failed (%s); retrying in clear", host, exc)
                    return self._session(ip, host, req, enforce, use_tls=False)
            elif enforce:
                raise SessionFailed(transient_all(req.recipients, "4.7.5", f"{host}: no STARTTLS but MTA-STS enforce", remote))
            results = smtp_transaction(client, req, remote)
            try:
                client.quit()
            except (smtplib.SMTPException, OSError):
                pass
            return results
        finally:
            client.close()
