"""The OpenSessions metric that scales the gateway services, as CloudWatch embedded metric format.

In:   the gateway's live sessions (:class:`~postern_gateway.sessions.Sessions`), the task's ECS
      metadata (``ECS_CONTAINER_METADATA_URI_V4``/task: its cluster and service) and
      ``settings.metrics_interval`` (``POSTERN_METRICS_INTERVAL``, 60 s; 0 = off).
Out:  once per interval, one JSON line on stdout in the embedded metric format: namespace
      :data:`NAMESPACE`, metric :data:`METRIC` (open sessions of this task, all protocols),
      dimensions ``ClusterName`` and ``ServiceName`` (as AWS/ECS names a service), plus the
      count per protocol as plain properties. The awslogs driver sends the line to CloudWatch
      Logs, which turns it into a metric: no API call, no IAM permission. The template's
      target-tracking policies keep the Average of this metric (sessions per task) near
      ``GatewaySessionsPerTask``.
Fails: no metadata endpoint (not on ECS: the local stack, tests) or no service in it: nothing is
      published, once logged. A failed write is logged and retried next interval.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
import urllib.request

log = logging.getLogger("postern.gateway")

NAMESPACE = "Postern"
METRIC = "OpenSessions"
DIMENSIONS = ("ClusterName", "ServiceName")


def ecs_dimensions(metadata_uri: str, timeout: float = 2.0) -> dict[str, str] | None:
    """{"ClusterName", "ServiceName"} of this task from the ECS task metadata v4, or None (blocking)."""
    if not metadata_uri:
        return None
    try:
        with urllib.request.urlopen(f"{metadata_uri}/task", timeout=timeout) as response:  # noqa: S310
            task = json.load(response)
    except (OSError, ValueError) as exc:
        log.warning("ECS task metadata unreadable (%s): OpenSessions not published", exc)
        return None
    cluster, service = task.get("Cluster", ""), task.get("ServiceName", "")
    if not cluster or not service:
        log.warning("ECS task metadata names no cluster/service: OpenSessions not published")
        return None
    return {"ClusterName": cluster.rsplit("/", 1)[-1], "ServiceName": service}


def emf_line(dimensions: dict[str, str], counts: dict[str, int], now: float | None = None) -> str:
    """One embedded-metric-format record (CloudWatch "Specification: Embedded metric format")."""
    record = {
        "_aws": {
            "Timestamp": int((time.time() if now is None else now) * 1000),
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [list(DIMENSIONS)],
                "Metrics": [{"Name": METRIC, "Unit": "Count"}],
            }],
        },
        **{k: dimensions[k] for k in DIMENSIONS},
        METRIC: sum(counts.values()),
        "sessions": dict(sorted(counts.items())),
    }
    return json.dumps(record, separators=(",", ":"))


class SessionMetrics:
    def __init__(self, sessions, dimensions: dict[str, str], interval: float, out=None):
        self.sessions = sessions
        self.dimensions = dimensions
        self.interval = interval
        self.out = out or sys.stdout

    def publish(self) -> None:
        try:
            self.out.write(emf_line(self.dimensions, self.sessions.count()) + "\n")
            self.out.flush()
        except (OSError, ValueError) as exc:
            log.warning("OpenSessions not written: %s", exc)

    async def run(self) -> None:
        while True:
            self.publish()
            await asyncio.sleep(self.interval)
