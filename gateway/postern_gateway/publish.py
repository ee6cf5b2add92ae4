"""Publish this task's public address in Route 53: the small profile's stand-in for a load balancer.

In:   ``settings.publish_zone_id`` (POSTERN_PUBLISH_ZONE_ID: the hosted zone holding the
      gateway's name; empty = off, as in the default profile, where the NLB has the
      address), ``settings.hostname`` (the record's name: the MX target), the ECS task
      metadata v4 (``/task``: this task's private address), EC2 (the public address
      associated with that network interface) and Route 53.
Out:  :func:`publish` (blocking): an UPSERT of the A record ``hostname`` -> this task's
      public IPv4 address, TTL :data:`TTL`, made once the listeners are up. A replacement
      task (a deployment starts the new task before it stops the old one; a crashed task is
      restarted) publishes its own address when it is ready to serve, so the record follows
      the task and clients reach the new one within the TTL. The small profile gives that
      up for the $16.43 of the NLB: a restart changes the address for up to one TTL.
Fails: nothing raised. Not on ECS (no metadata), no public address yet (a just-attached
      interface can take a moment to show it) or an AWS error: retried up to
      :data:`ATTEMPTS` times with back-off, then logged as an error (the running-task alarm
      and the health checks still watch the task; the record keeps the last address).
"""

from __future__ import annotations

import json
import logging
import time
import urllib.request

log = logging.getLogger("postern.gateway")

TTL = 60  # seconds: how long a resolver may keep the old address after a task is replaced
ATTEMPTS = 8


def task_private_ip(metadata_uri: str, timeout: float = 2.0) -> str | None:
    """This task's private IPv4 address from the ECS task metadata v4 (awsvpc: one interface)."""
    with urllib.request.urlopen(f"{metadata_uri}/task", timeout=timeout) as response:  # noqa: S310
        task = json.load(response)
    for container in task.get("Containers", []):
        for net in container.get("Networks", []):
            for ip in net.get("IPv4Addresses", []):
                return ip
    return None


def public_ip(ec2, private_ip: str) -> str | None:
    """The public IPv4 address associated with the interface that holds ``private_ip``."""
    r = ec2.describe_network_interfaces(Filters=[{"Name": "addresses.private-ip-address", "Values": [private_ip]}])
    for eni in r.get("NetworkInterfaces", []):
        ip = (eni.get("Association") or {}).get("PublicIp")
        if ip:
            return ip
    return None


def change_batch(hostname: str, address: str) -> dict:
    return {
        "Comment": "postern gateway task (small profile)",
        "Changes": [{"Action": "UPSERT", "ResourceRecordSet": {
            "Name": hostname.rstrip(".") + ".", "Type": "A", "TTL": TTL, "ResourceRecords": [{"Value": address}]}}],
    }


def publish(settings, clients, sleep=time.sleep) -> str | None:
    """Point ``settings.hostname`` at this task; the address published, or None (logged why)."""
    if not settings.publish_zone_id:
        return None
    if not settings.ecs_metadata_uri:
        log.error("POSTERN_PUBLISH_ZONE_ID is set but this is not an ECS task: address not published")
        return None
    delay = 1.0
    for attempt in range(1, ATTEMPTS + 1):
        try:
            private = task_private_ip(settings.ecs_metadata_uri)
            address = public_ip(clients.client("ec2"), private) if private else None
            if address:
                clients.client("route53").change_resource_record_sets(
                    HostedZoneId=settings.publish_zone_id, ChangeBatch=change_batch(settings.hostname, address))
                log.info("published %s A %s (TTL %d) in zone %s", settings.hostname, address, TTL,
                         settings.publish_zone_id)
                return address
            why = "no public address on the task's interface yet"
        except Exception as exc:  # noqa: BLE001 - any failure: retry, then log; never stop the gateway
            why = f"{exc.__class__.__name__}: {exc}"
        if attempt < ATTEMPTS:
            sleep(delay)
            delay = min(delay * 2, 30.0)
    log.error("address of this task not published in Route 53 after %d attempts: %s", ATTEMPTS, why)
    return None
