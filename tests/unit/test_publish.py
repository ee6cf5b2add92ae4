"""The small profile's address publisher (postern_gateway.publish): the task's public IPv4 as
GatewayHostname's A record, from the ECS task metadata (a loopback server), EC2 and Route 53 (moto),
and what it does when there is no address yet or no ECS."""

from __future__ import annotations

import dataclasses
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from postern_gateway.publish import ATTEMPTS, TTL, publish


class _Metadata(BaseHTTPRequestHandler):
    private_ip = ""

    def do_GET(self):  # noqa: N802 - http.server's name
        body = json.dumps({"Cluster": "c", "Containers": [{"Name": "gateway", "Networks": [
            {"NetworkMode": "awsvpc", "IPv4Addresses": [self.private_ip]}]}]}).encode()
        self.send_response(200 if self.path.endswith("/task") else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def metadata():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Metadata)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server, f"http://127.0.0.1:{server.server_address[1]}/v4/abc"
    server.shutdown()


class _Ec2:
    """DescribeNetworkInterfaces as EC2 answers it for a Fargate task's interface (moto's EC2 backend
    costs 15 s to load; Route 53 below is moto's)."""

    def __init__(self):
        self.interfaces: list[dict] = []

    def add(self, private_ip: str, public_ip: str | None) -> str:
        eni = {"NetworkInterfaceId": f"eni-{len(self.interfaces):08x}", "PrivateIpAddress": private_ip,
               "PrivateIpAddresses": [{"Primary": True, "PrivateIpAddress": private_ip}]}
        if public_ip:
            eni["Association"] = {"PublicIp": public_ip, "IpOwnerId": "amazon"}
        self.interfaces.append(eni)
        return private_ip

    def describe_network_interfaces(self, Filters):  # noqa: N803 - boto3's parameter name
        (f,) = Filters
        assert f["Name"] == "addresses.private-ip-address"
        return {"NetworkInterfaces": [e for e in self.interfaces if e["PrivateIpAddress"] in f["Values"]]}


class _Clients:
    def __init__(self, route53, ec2):
        self._route53, self._ec2 = route53, ec2

    def client(self, name):
        return {"ec2": self._ec2, "route53": self._route53}[name]


@pytest.fixture
def route53():
    import boto3
    from moto import mock_aws

    with mock_aws():
        yield boto3.client("route53", region_name="us-east-1", aws_access_key_id="testing",
                           aws_secret_access_key="testing")


def _a_records(clients, zone: str, name: str):
    rrs = clients.client("route53").list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
    return [r for r in rrs if r["Type"] == "A" and r["Name"] == name]


def test_publishes_the_tasks_public_address_and_waits_for_one(route53, metadata, caplog):
    from postern.config import Settings

    settings = Settings()
    server, uri = metadata
    ec2 = _Ec2()
    clients = _Clients(route53, ec2)
    zone = clients.client("route53").create_hosted_zone(Name="example.test", CallerReference="t")["HostedZone"]["Id"]
    s = dataclasses.replace(settings, publish_zone_id=zone.split("/")[-1], ecs_metadata_uri=uri,
                            hostname="mx.example.test")
    # no public address on the interface (yet): retried with back-off, then logged, nothing raised or written
    _Metadata.private_ip = ec2.add("10.9.1.5", None)
    slept = []
    assert publish(s, clients, sleep=slept.append) is None
    assert len(slept) == ATTEMPTS - 1 and max(slept) <= 30
    assert "not published" in caplog.text and not _a_records(clients, zone, "mx.example.test.")
    # the task's interface with its public address: the A record, TTL 60
    _Metadata.private_ip = ec2.add("10.9.1.6", "198.51.100.25")
    address = publish(s, clients, sleep=lambda _s: None)
    public = "198.51.100.25"
    assert address == public
    (rec,) = _a_records(clients, zone, "mx.example.test.")
    assert rec["TTL"] == TTL and rec["ResourceRecords"] == [{"Value": public}]
    assert publish(s, clients, sleep=lambda _s: None) == public  # a replacement task: UPSERT, no error


def test_off_unless_asked_and_never_outside_ecs(caplog):
    from postern.config import Settings

    never = object()  # no AWS call is made: no clients needed
    assert publish(Settings(publish_zone_id=""), never) is None
    assert publish(Settings(publish_zone_id="Z1", ecs_metadata_uri=""), never) is None
    assert "not an ECS task" in caplog.text
