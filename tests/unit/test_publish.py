"""The small profile's address publisher (postern_gateway.publish): the task's public IPv4 as
GatewayHostname's A record, from the ECS task metadata, EC2 and Route 53 (moto), and what it
does when there is no address yet or no ECS."""

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


def _task_interface(ec2, public: bool) -> str:
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24")["Subnet"]["SubnetId"]
    eni = ec2.create_network_interface(SubnetId=subnet)["NetworkInterface"]
    if public:
        alloc = ec2.allocate_address(Domain="vpc")
        ec2.associate_address(AllocationId=alloc["AllocationId"], NetworkInterfaceId=eni["NetworkInterfaceId"])
    return eni["PrivateIpAddress"]


def _a_records(clients, zone: str, name: str):
    rrs = clients.client("route53").list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
    return [r for r in rrs if r["Type"] == "A" and r["Name"] == name]


def test_publishes_the_tasks_public_address(aws, metadata):
    settings, clients, _ = aws
    server, uri = metadata
    ec2 = clients.client("ec2")
    _Metadata.private_ip = _task_interface(ec2, public=True)
    zone = clients.client("route53").create_hosted_zone(Name="example.test", CallerReference="t")["HostedZone"]["Id"]
    s = dataclasses.replace(settings, publish_zone_id=zone.split("/")[-1], ecs_metadata_uri=uri,
                            hostname="mx.example.test")
    address = publish(s, clients, sleep=lambda _s: None)
    public = ec2.describe_addresses()["Addresses"][0]["PublicIp"]
    assert address == public
    (rec,) = _a_records(clients, zone, "mx.example.test.")
    assert rec["TTL"] == TTL and rec["ResourceRecords"] == [{"Value": public}]
    assert publish(s, clients, sleep=lambda _s: None) == public  # a replacement task: UPSERT, no error


def test_no_public_address_retries_then_gives_up_without_raising(aws, metadata, caplog):
    settings, clients, _ = aws
    server, uri = metadata
    _Metadata.private_ip = _task_interface(clients.client("ec2"), public=False)
    zone = clients.client("route53").create_hosted_zone(Name="example.test", CallerReference="u")["HostedZone"]["Id"]
    slept = []
    s = dataclasses.replace(settings, publish_zone_id=zone.split("/")[-1], ecs_metadata_uri=uri)
    assert publish(s, clients, sleep=slept.append) is None
    assert len(slept) == ATTEMPTS - 1 and max(slept) <= 30
    assert "not published" in caplog.text and not _a_records(clients, zone, settings.hostname + ".")


def test_off_unless_asked_and_never_outside_ecs(aws, caplog):
    settings, clients, _ = aws
    assert publish(dataclasses.replace(settings, publish_zone_id=""), clients) is None
    assert publish(dataclasses.replace(settings, publish_zone_id="Z1", ecs_metadata_uri=""), clients) is None
    assert "not an ECS task" in caplog.text
