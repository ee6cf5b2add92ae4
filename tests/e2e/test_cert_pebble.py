"""The cert function against a real ACME server: Debian's Pebble, moto's Route 53 and Secrets Manager.

The handler is the template's CertFunction, called with the events CloudFormation and the
schedule send. DNS-01 works end to end: the function writes the TXT record to moto's Route 53,
the bridge copies it into pebble-challtestsrv (Pebble's DNS) before Route 53 says INSYNC, and
Pebble validates it. A gateway started on the secret serves the first certificate, then the
renewed one, without a restart; it publishes the served certificate's days left.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import secrets
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from acme_harness import Pebble, Route53Bridge
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

HOST = "127.0.0.1"


@pytest.fixture(scope="module")
def pebble():
    p = Pebble().start()
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture(scope="module")
def bridge(stack, pebble):
    b = Route53Bridge(stack.endpoint, pebble).start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def acme_env(monkeypatch, bridge, pebble):
    """What differs from AWS, in the environment only: Route 53 through the bridge, Pebble's API CA."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_ROUTE_53", bridge.endpoint)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pebble.ca_pem))


@pytest.fixture(scope="module")
def cert_fn():
    """The template's CertFunction handler and its module (loaded as the local stack loads every function)."""
    import sys

    from postern_local.lambdas import load_functions

    fn = load_functions()["CertFunction"]
    return fn.handler, sys.modules[fn.module_name]


class CloudFormation:
    """The pre-signed ResponseURL: records what the custom resource PUTs."""

    def __init__(self):
        self.responses: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_PUT(self):
                outer.responses.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://{HOST}:{self.server.server_address[1]}/response?X-Amz-Signature=x"

    def event(self, kind: str, props: dict, physical: str | None = None) -> dict:
        e = {"RequestType": kind, "ResponseURL": self.url, "StackId": "arn:aws:cloudformation:us-east-1:1:stack/p/1",
             "RequestId": secrets.token_hex(4), "LogicalResourceId": "TlsCertificate",
             "ResourceType": "Custom::TlsCertificate", "ResourceProperties": {"ServiceToken": "arn", **props}}
        if physical:
            e["PhysicalResourceId"] = physical
        return e


@pytest.fixture
def cfn():
    c = CloudFormation()
    try:
        yield c
    finally:
        c.server.shutdown()
        c.server.server_close()


@pytest.fixture
def site(stack, pebble):
    """A fresh public zone, the empty certificate secret the template creates, and the properties (the account
    key's parameter is the function's to create)."""
    zone = f"pebble-{secrets.token_hex(3)}.test"
    r53 = stack.clients.client("route53")
    zone_id = r53.create_hosted_zone(Name=zone, CallerReference=zone)["HostedZone"]["Id"].rsplit("/", 1)[-1]
    sm = stack.clients.secrets
    tls = sm.create_secret(Name=f"postern/{zone}/tls")["ARN"]
    props = {"Domains": [f"mail.{zone}"], "SecretId": tls, "HostedZoneId": zone_id,
             "AccountParameter": f"/postern-acme/{zone}/account", "DirectoryUrl": pebble.directory_url}
    return {"zone": zone, "host": f"mail.{zone}", "zone_id": zone_id, "props": props}


def _secret(stack, secret_id: str) -> tuple[dict, str]:
    r = stack.clients.secrets.get_secret_value(SecretId=secret_id)
    return json.loads(r["SecretString"]), r["VersionId"]


def _fp(der: bytes) -> str:
    h = hashlib.sha256(der).hexdigest().upper()
    return ":".join(h[i:i + 2] for i in range(0, len(h), 2))


def _leaf_fp(pem: str) -> str:
    return _fp(x509.load_pem_x509_certificate(pem.encode()).public_bytes(Encoding.DER))


class RunningGateway:
    """A gateway on its own loop thread: submissions (implicit TLS) only, certificate from the secret, signing
    as the template's gateway task role (the rules proxy allows it only what that role allows)."""

    def __init__(self, stack, settings):
        from postern_gateway.app import LISTENERS, Gateway

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.gw = Gateway(settings, stack.gateway_clients)  # the gateway task role's credentials
        only = tuple(lst for lst in LISTENERS if lst.name == "submissions")
        asyncio.run_coroutine_threadsafe(self.gw.start(only), self.loop).result(30)
        self.port = self.gw.ports["submissions"]

    @property
    def store(self):
        return self.gw.ssl_context.postern_store

    def stop(self):
        asyncio.run_coroutine_threadsafe(self.gw.stop(cancel_sessions=True), self.loop).result(15)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def _handshake(port: int, host: str, root: ssl.SSLContext) -> tuple[str, ssl.SSLSocket]:
    """Connect over implicit TLS, verifying the chain and the host name; (served fingerprint, socket)."""
    raw = socket.create_connection((HOST, port), timeout=10)
    tls = root.wrap_socket(raw, server_hostname=host)
    banner = tls.recv(512)
    assert banner.startswith(b"220 "), banner
    return _fp(tls.getpeercert(binary_form=True)), tls


def test_issue_serve_renew_and_reload_without_restart(stack, acme_env, cert_fn, cfn, site, pebble, bridge,
                                                      monkeypatch):
    handler, module = cert_fn
    props = site["props"]

    # 1. CloudFormation creates the custom resource: the first certificate, before any gateway task.
    t0 = time.monotonic()
    handler(cfn.event("Create", props), None)
    issue_seconds = time.monotonic() - t0
    (resp,) = cfn.responses
    assert resp["Status"] == "SUCCESS", resp["Reason"]
    assert resp["PhysicalResourceId"] == props["SecretId"]
    assert resp["Data"]["Action"] == "issued"
    doc, v1 = _secret(stack, props["SecretId"])
    assert resp["Data"]["VersionId"] == v1 and resp["Data"]["Fingerprint"] == _leaf_fp(doc["cert"])
    assert bridge.served == {}, "the challenge TXT record was left behind"
    # the ACME account key: a SecureString parameter the function created on registering (no secret)
    ssm = stack.clients.client("ssm")
    param = ssm.get_parameter(Name=props["AccountParameter"], WithDecryption=True)["Parameter"]
    assert param["Type"] == "SecureString"
    assert set(json.loads(param["Value"])["accounts"]) == {pebble.directory_url}

    root = ssl.create_default_context(cadata=pebble.root_pem().decode())

    # 2. The gateway starts on the secret and serves that certificate, verified to Pebble's root.
    settings = stack.settings.replace(hostname=site["host"], tls_secret_id=props["SecretId"], tls_self_signed=False,
                                      tls_secret_poll_interval=0.2, tls_metric_interval=0.5, submissions_port=0)
    gw = RunningGateway(stack, settings)
    try:
        first, before = _handshake(gw.port, site["host"], root)
        assert first == resp["Data"]["Fingerprint"]

        # 3. The schedule, while the certificate is fresh: nothing to do, no new version.
        assert handler(props, None)["Action"] == "kept"
        assert _secret(stack, props["SecretId"])[1] == v1

        # 4. The schedule, on a clock inside the renewal window: a new key and certificate.
        later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1300)  # Pebble's certificates last 5 years
        monkeypatch.setattr(module, "_now", lambda: later)
        data = handler(props, None)
        assert data["Action"] == "issued"
        doc2, v2 = _secret(stack, props["SecretId"])
        assert v2 != v1 and _leaf_fp(doc2["cert"]) == data["Fingerprint"] != first
        assert ssm.get_parameter(Name=props["AccountParameter"])["Parameter"]["Version"] == param["Version"]  # reused

        # 5. The running gateway notices the new version and serves it; nothing restarted.
        deadline = time.monotonic() + 15
        served = first
        while served == first and time.monotonic() < deadline:
            time.sleep(0.1)
            served, s = _handshake(gw.port, site["host"], root)
            s.close()
        assert served == data["Fingerprint"]
        assert gw.store.reloads == 1 and gw.gw.ports["submissions"] == gw.port
        before.sendall(b"NOOP\r\n")  # the session opened before the reload carries on
        assert before.recv(512).startswith(b"250")
        before.close()

        # 6. The served certificate's days left reach CloudWatch (the expiry alarm's metric).
        from postern_gateway.trust.certexpiry import DIMENSION, METRIC, NAMESPACE

        cw = stack.clients.cloudwatch
        deadline = time.monotonic() + 10
        values: list[float] = []
        while time.monotonic() < deadline and not any(v > 1800 for v in values):
            time.sleep(0.2)
            r = cw.get_metric_statistics(
                Namespace=NAMESPACE, MetricName=METRIC, Dimensions=[{"Name": DIMENSION, "Value": site["host"]}],
                StartTime=dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5),
                EndTime=dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=1), Period=60,
                Statistics=["Minimum", "Maximum"])
            values = [p["Maximum"] for p in r["Datapoints"]]
        assert values and 1800 < max(values) <= 1826, values
    finally:
        gw.stop()
    print(f"\nPebble: first certificate issued in {issue_seconds:.2f} s")


def test_update_keeps_a_valid_certificate_an_extra_name_is_a_new_one_and_delete_leaves_the_secret(
        stack, acme_env, cert_fn, cfn, site):
    handler, _ = cert_fn
    props = site["props"]
    handler(cfn.event("Create", props), None)
    _, v1 = _secret(stack, props["SecretId"])
    handler(cfn.event("Update", props, physical=props["SecretId"]), None)
    assert cfn.responses[-1]["Data"]["Action"] == "kept" and _secret(stack, props["SecretId"])[1] == v1

    wider = {**props, "Domains": [site["host"], f"imap.{site['zone']}"]}
    handler(cfn.event("Update", wider, physical=props["SecretId"]), None)
    assert cfn.responses[-1]["Data"]["Action"] == "issued", cfn.responses[-1]
    doc, v2 = _secret(stack, props["SecretId"])
    san = x509.load_pem_x509_certificate(doc["cert"].encode()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert sorted(san) == sorted(wider["Domains"])

    handler(cfn.event("Delete", wider, physical=props["SecretId"]), None)
    assert [r["Status"] for r in cfn.responses] == ["SUCCESS"] * 4
    assert _secret(stack, props["SecretId"])[1] == v2  # the certificate is the template's secret: left to it
    ssm = stack.clients.client("ssm")  # the account key's parameter is the function's own: gone with it
    assert ssm.describe_parameters(ParameterFilters=[{"Key": "Name", "Values": [props["AccountParameter"]]}]
                                   )["Parameters"] == []


def test_a_record_the_ca_cannot_see_fails_with_the_cas_words(stack, monkeypatch, pebble, cert_fn, cfn, site):
    """Without the bridge the TXT record is in moto only, as with a zone the domain is not delegated to."""
    handler, _ = cert_fn
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pebble.ca_pem))
    monkeypatch.delenv("AWS_ENDPOINT_URL_ROUTE_53", raising=False)
    handler(cfn.event("Create", site["props"]), None)
    (resp,) = cfn.responses
    assert resp["Status"] == "FAILED"
    assert resp["Reason"].startswith("TLS certificate: the CA could not validate the DNS-01 challenge: "
                                     f"{site['host']}: "), resp["Reason"]
    assert "_acme-challenge" in resp["Reason"] or "TXT" in resp["Reason"], resp["Reason"]
    with pytest.raises(stack.clients.secrets.exceptions.ResourceNotFoundException):
        stack.clients.secrets.get_secret_value(SecretId=site["props"]["SecretId"])  # nothing written


def test_a_host_outside_the_zone_is_refused_before_any_order(stack, acme_env, cert_fn, cfn, site, bridge):
    handler, _ = cert_fn
    syncs = bridge.syncs
    props = {**site["props"], "Domains": ["mail.elsewhere.example"]}
    handler(cfn.event("Create", props), None)
    (resp,) = cfn.responses
    assert resp["Status"] == "FAILED"
    assert resp["Reason"] == (f"TLS certificate: mail.elsewhere.example is not in hosted zone {site['zone_id']} "
                              f"({site['zone']}.): give the zone that holds the gateway's host name")
    assert bridge.syncs == syncs  # no record was written
