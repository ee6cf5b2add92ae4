"""DNS-01 challenge records in a Route 53 hosted zone (RFC 8555 §8.4).

In:   a boto3 Route 53 client, the hosted zone id, and the records an ACME order asks for:
      {"_acme-challenge.mail.example.com": ["<key authorization digest>", ...]}.
Out:  :meth:`DnsChallenges.check_zone` confirms every name lies in that public zone;
      :meth:`publish` UPSERTs the TXT records (TTL 60) and returns once Route 53 reports the
      change INSYNC (propagated to all its authoritative servers, which is all a CA queries);
      :meth:`remove` DELETEs exactly what was published.
Fails: :class:`ChallengeDnsError` with a sentence an operator can act on (no such zone, a
      private zone, a name outside the zone, access denied, INSYNC not reached by the
      deadline). ``remove`` never raises: a leftover TXT record is harmless and the next
      UPSERT replaces it.
"""

from __future__ import annotations

import logging
import time

from botocore.exceptions import BotoCoreError, ClientError

log = logging.getLogger("postern.cert.route53")

TTL = 60


class ChallengeDnsError(RuntimeError):
    """The challenge records cannot be published."""


def _fqdn(name: str) -> str:
    return name.rstrip(".").lower() + "."


def _quoted(value: str) -> str:
    return '"' + value + '"'  # Route 53 TXT values are quoted strings; a key authorization digest needs no escaping


def _why(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return f"{err.get('Code', 'Error')}: {err.get('Message', '')}".rstrip(": ")
    return str(exc)


class DnsChallenges:
    def __init__(self, client, zone_id: str, *, poll: float = 2.0, sleep=time.sleep, clock=time.monotonic):
        self.client = client
        self.zone_id = zone_id
        self.poll = poll
        self._sleep = sleep
        self._clock = clock
        self._zone_name: str | None = None

    def zone_name(self) -> str:
        if self._zone_name is None:
            try:
                zone = self.client.get_hosted_zone(Id=self.zone_id)["HostedZone"]
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "NoSuchHostedZone":
                    raise ChallengeDnsError(f"there is no Route 53 hosted zone {self.zone_id}: check the "
                                            "HostedZoneId parameter") from None
                raise ChallengeDnsError(f"cannot read hosted zone {self.zone_id} ({_why(exc)})") from None
            except BotoCoreError as exc:
                raise ChallengeDnsError(f"cannot reach Route 53 ({exc})") from None
            if zone.get("Config", {}).get("PrivateZone"):
                raise ChallengeDnsError(f"hosted zone {self.zone_id} ({zone['Name']}) is private: the CA "
                                        "cannot see its records; give the public zone's id")
            self._zone_name = _fqdn(zone["Name"])
        return self._zone_name

    def check_zone(self, names) -> None:
        zone = self.zone_name()
        outside = [n for n in names if not (_fqdn(n) == zone or _fqdn(n).endswith("." + zone))]
        if outside:
            raise ChallengeDnsError(f"{', '.join(outside)} is not in hosted zone {self.zone_id} "
                                    f"({zone}): give the zone that holds the gateway's host name")

    def _change(self, action: str, records: dict[str, list[str]]) -> str:
        changes = [{
            "Action": action,
            "ResourceRecordSet": {
                "Name": _fqdn(name), "Type": "TXT", "TTL": TTL,
                "ResourceRecords": [{"Value": _quoted(v)} for v in values],
            },
        } for name, values in sorted(records.items())]
        r = self.client.change_resource_record_sets(
            HostedZoneId=self.zone_id,
            ChangeBatch={"Comment": "postern ACME DNS-01 challenge", "Changes": changes},
        )
        return r["ChangeInfo"]["Id"]

    def publish(self, records: dict[str, list[str]], deadline: float) -> None:
        """UPSERT the TXT records and wait for INSYNC; ``deadline`` is on ``clock`` (monotonic)."""
        self.check_zone([n.split("_acme-challenge.", 1)[-1] for n in records])
        try:
            change = self._change("UPSERT", records)
            while True:
                status = self.client.get_change(Id=change)["ChangeInfo"]["Status"]
                if status == "INSYNC":
                    log.info("challenge records in sync: %s", ", ".join(sorted(records)))
                    return
                if self._clock() + self.poll > deadline:
                    raise ChallengeDnsError(f"Route 53 change {change} still {status} at the deadline")
                self._sleep(self.poll)
        except (ClientError, BotoCoreError) as exc:
            raise ChallengeDnsError(f"cannot write the challenge records to zone {self.zone_id} "
                                    f"({_why(exc)})") from None

    def remove(self, records: dict[str, list[str]]) -> None:
        if not records:
            return
        try:
            self._change("DELETE", records)
        except (ClientError, BotoCoreError) as exc:  # already gone, or changed since: the next UPSERT wins
            log.warning("challenge records not removed (%s)", _why(exc))
