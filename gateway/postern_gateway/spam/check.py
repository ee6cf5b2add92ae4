"""The MX port's spam check at the end of DATA, before the 250: rspamd scans, postern.spam decides.

In:   the DATA context (the received bytes, the trace fields the earlier checks added - our
      Authentication-Results first - client IP, HELO, MAIL FROM, recipients), the SMTP session
      (TLS), the directory (each recipient's thresholds), the backend's
      :class:`~.rspamd.Rspamd` client (``backend.spam``, built by :func:`client_for` from
      ``POSTERN_RSPAMD_URL``; None: filtering off, every message ``unchecked``, no metric).
Out:  a refusal - ``550 5.7.1`` when the score reaches every recipient's reject threshold (one
      DATA reply serves them all; RFC 5321 §3.3) or clamd found a virus (rspamd's antivirus
      module forces the reject), ``451 4.7.1`` when rspamd asks for greylisting
      or a soft reject - or None, with the verdict recorded: ``ctx.spam`` (action, score,
      symbols: the envelope carries it, the router gives each recipient their thresholds, the
      store function's Junk rule and Sieve's spamtest read it) and the ``X-Spam-*`` fields added
      to the trace prefix (below our Authentication-Results), prepended to the stored message.
Fails: never refuses because the filter is ill: rspamd down, slow (``POSTERN_RSPAMD_TIMEOUT``)
      or answering nonsense -> the message goes on ``unchecked``, logged, and counted
      (:data:`UNCHECKED`, and the ``SpamUnchecked`` metric as an EMF line).
      A directory fault while reading thresholds propagates (the handler answers 451 4.3.0).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import Counter

from postern import spam, status
from postern.routing import route
from postern.status import Reply

from ..metrics import NAMESPACE
from ..smtp.checks import Check, DataContext
from .rspamd import FilterUnavailable, Rspamd, ScanFacts

log = logging.getLogger("postern.spam")

UNCHECKED: Counter = Counter()  # "unchecked" messages of this process, by reason (tests, health)
METRIC = "SpamUnchecked"


def emit_unchecked(out=None) -> None:
    """One CloudWatch embedded-metric-format line: the awslogs driver turns it into the
    ``Postern/SpamUnchecked`` metric (no API call). The same form as the gateway's other metrics."""
    record = {"_aws": {"Timestamp": int(time.time() * 1000),
                       "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": [[]],
                                              "Metrics": [{"Name": METRIC, "Unit": "Count"}]}]},
              METRIC: 1}
    try:
        stream = out or sys.stdout
        stream.write(json.dumps(record, separators=(",", ":")) + "\n")
        stream.flush()
    except (OSError, ValueError):
        pass


def recipient_thresholds(directory, recipients: tuple[str, ...]) -> list[spam.Thresholds]:
    """The thresholds of every mailbox the message would reach (blocking: one BatchGetItem): an
    alias's local targets' own, a forward out the alias's domain defaults (the router's resolution,
    so the session refuses only what every final recipient would refuse)."""
    view = directory.prefetched(recipients) if hasattr(directory, "prefetched") else directory
    decision = route(recipients, view, allow_remote=False)
    owners = [d.user for d in decision.local]
    owners += [r.original_recipient for rs in decision.remote.values() for r in rs]
    return [view.spam_thresholds(a) for a in owners or recipients]


class SpamCheck(Check):
    def __init__(self, backend):
        self.backend = backend

    async def on_data(self, server, session, envelope, ctx: DataContext) -> Reply | None:
        client: Rspamd | None = self.backend.spam
        if client is None:
            return None  # filtering off (POSTERN_RSPAMD_URL empty): the envelope says unchecked
        prefix = "".join(ctx.trace).encode("utf-8", "surrogateescape")
        tls = getattr(session, "tls", False)
        tls_version = getattr(session, "tls_version", "") if tls else ""
        tls_cipher = getattr(session, "tls_cipher", "") if tls else ""
        facts = ScanFacts(client_ip=ctx.client_ip, helo=ctx.helo, mail_from=ctx.sender, recipients=ctx.recipients,
                          queue_id=ctx.queue_id, user=ctx.auth_user or "", tls_version=tls_version,
                          tls_cipher=tls_cipher)
        try:
            result = await client.check(prefix, ctx.raw, facts)
        except FilterUnavailable as exc:
            reason = exc.reason
            UNCHECKED[reason] += 1
            emit_unchecked()
            log.warning("spam filter %s, accepting unchecked queue_id=%s: %s", reason, ctx.queue_id, exc)
            ctx.spam = spam.envelope_spam(None)
            return None
        thresholds = await self.backend.run(recipient_thresholds, self.backend.directory, ctx.recipients)
        decision = spam.session_decision(result, thresholds)
        log.info("spam queue_id=%s ip=%s action=%s score=%.2f decision=%s", ctx.queue_id, ctx.client_ip,
                 result.action, result.score, decision.value)
        if decision is spam.REJECT:
            return status.VIRUS_REJECTED if result.virus else status.SPAM_REJECTED
        if decision is spam.TEMPFAIL:
            return status.SPAM_TEMPFAIL
        ctx.spam = spam.envelope_spam(result)
        ctx.trace.append(spam.header_block(result))  # below Authentication-Results (RFC 8601 §4: ours on top)
        return None


def client_for(settings) -> Rspamd | None:
    """The rspamd client when ``POSTERN_RSPAMD_URL`` is set, else None (filtering off)."""
    if not settings.rspamd_url:
        log.warning("spam filtering off: POSTERN_RSPAMD_URL is not set (every message is accepted unchecked)")
        return None
    return Rspamd(settings.rspamd_url, settings.rspamd_controller_url, settings.rspamd_timeout, settings.hostname)
