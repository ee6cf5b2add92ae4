"""The served TLS certificate's days left, as a CloudWatch metric: the input of the expiry alarm.

Let's Encrypt no longer e-mails before a certificate expires, and a renewal that fails quietly
(or a bring-your-own certificate nobody renewed) would otherwise be noticed by the users.
Every gateway task measures what it actually serves, whatever the source.

In:   the :class:`~postern_gateway.trust.tls.CertificateStore` (``not_after``, ``fingerprint``),
      ``Clients.cloudwatch``, ``Settings.hostname`` and ``POSTERN_TLS_METRIC_INTERVAL``.
Out:  ``PutMetricData`` of :data:`METRIC` in :data:`NAMESPACE` with the dimension
      ``Hostname`` = the gateway's host name, value = days left (a float), at start, after
      every reload (checked each few seconds, no AWS call) and every interval. The template's
      ``TlsCertificateExpiryAlarm`` watches its Minimum over all tasks.
Fails: a failed put is logged and retried after a minute; the publisher never stops the
      gateway. The call runs on the gateway's bounded executor, never on the event loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

log = logging.getLogger("postern.tls")

NAMESPACE = "Postern"
METRIC = "TlsCertificateDaysLeft"
DIMENSION = "Hostname"
TICK = 10.0  # seconds between checks for a reloaded certificate
RETRY = 60.0  # seconds before a failed put is tried again


def days_left(not_after: dt.datetime, now: dt.datetime | None = None) -> float:
    now = now or dt.datetime.now(dt.timezone.utc)
    return round((not_after - now).total_seconds() / 86400, 3)


def metric_datum(hostname: str, not_after: dt.datetime, now: dt.datetime | None = None) -> dict:
    return {"MetricName": METRIC, "Dimensions": [{"Name": DIMENSION, "Value": hostname}],
            "Value": days_left(not_after, now), "Unit": "None"}


class ExpiryPublisher:
    def __init__(self, store, clients, hostname: str, interval: float, blocking=None, *, tick: float = TICK):
        self.store = store
        self.clients = clients
        self.hostname = hostname
        self.interval = interval
        self.blocking = blocking
        self.tick = min(tick, interval)
        self.published = 0
        self._task: asyncio.Task | None = None

    def publish(self) -> bool:
        """One PutMetricData (blocking); False when it failed."""
        if self.store.not_after is None:
            return False
        try:
            self.clients.cloudwatch.put_metric_data(
                Namespace=NAMESPACE, MetricData=[metric_datum(self.hostname, self.store.not_after)])
        except Exception as exc:  # botocore errors: the next tick tries again
            log.warning("TLS expiry metric not published: %s", exc.__class__.__name__)
            return False
        self.published += 1
        return True

    async def _publish(self) -> bool:
        if self.blocking is not None:
            return await self.blocking.run(self.publish)
        return await asyncio.get_running_loop().run_in_executor(None, self.publish)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        sent_for, next_at = None, loop.time()
        while True:
            try:
                now, fingerprint = loop.time(), self.store.fingerprint
                if fingerprint != sent_for or now >= next_at:
                    ok = await self._publish()
                    sent_for, next_at = fingerprint, now + (self.interval if ok else min(self.interval, RETRY))
            except Exception:  # the publisher never dies
                log.exception("TLS expiry metric failed")
            await asyncio.sleep(self.tick)

    def start(self) -> None:
        if self.interval > 0 and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run(), name="tls-expiry-metric")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
