"""A local ACME CA for the cert function's tests: Debian's Pebble, its challenge test server, a Route 53 bridge.

In:   nothing but loopback ports (each picked free, then handed to the Go programs) and a
      moto endpoint.
Out:  :func:`ensure_pebble` installs Debian's ``pebble`` package (``apt-get update`` first)
      when ``pebble``/``pebble-challtestsrv`` are missing. :class:`Pebble` runs
      ``pebble-challtestsrv`` (the CA's DNS: it answers the TXT queries of DNS-01 validation,
      fed through its management API) and ``pebble`` (the ACME server, HTTPS with a
      ``trustme`` certificate whose CA is ``ca_pem``, validating against that DNS).
      :class:`Route53Bridge` is an HTTP proxy in front of moto's Route 53: after each
      ChangeResourceRecordSets it copies every TXT record moto's zones hold into
      challtestsrv, before the caller sees the reply, so "INSYNC" means what it means on
      AWS (the record is served where the CA looks). The cert function reaches it through
      ``AWS_ENDPOINT_URL_ROUTE_53``; it has no idea it is not AWS.
Fails: a program that does not start within its bound raises RuntimeError with its output.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest
import trustme

HOST = "127.0.0.1"


def ensure_pebble() -> None:
    """Debian's pebble (it ships pebble-challtestsrv) on PATH; install it with apt-get if missing."""
    if shutil.which("pebble") and shutil.which("pebble-challtestsrv"):
        return
    if shutil.which("apt-get") is None:
        if os.environ.get("CI"):
            pytest.fail("pebble is missing and there is no apt-get to install it (Debian package: pebble)")
        pytest.skip("pebble missing and no apt-get: install Debian's pebble package")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "pebble"]):
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            pytest.fail(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr[-2000:]}")
    assert shutil.which("pebble") and shutil.which("pebble-challtestsrv"), "apt-get installed no pebble"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, name: str, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited ({proc.returncode}): {proc.stdout.read()[-2000:]}")
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{name} did not listen on {port} within {timeout} s")


class Pebble:
    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="postern-pebble-"))
        self.ca = trustme.CA()
        self.ca_pem = self.dir / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_pem))
        self.dns_port = free_port()
        self.challtest_port = free_port()
        self.acme_port = free_port()
        self.management_port = free_port()
        self.procs: list[subprocess.Popen] = []

    @property
    def directory_url(self) -> str:
        return f"https://{HOST}:{self.acme_port}/dir"

    def start(self) -> Pebble:
        ensure_pebble()
        challtest = subprocess.Popen(
            ["pebble-challtestsrv", "-dns01", f"{HOST}:{self.dns_port}", "-management",
             f"{HOST}:{self.challtest_port}", "-http01", "", "-https01", "", "-tlsalpn01", "",
             "-defaultIPv4", HOST, "-defaultIPv6", ""],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.procs.append(challtest)
        _wait_port(self.challtest_port, challtest, "pebble-challtestsrv")

        leaf = self.ca.issue_cert(HOST, "localhost")
        leaf.cert_chain_pems[0].write_to_path(str(self.dir / "cert.pem"))
        leaf.private_key_pem.write_to_path(str(self.dir / "key.pem"))
        config = {"pebble": {
            "listenAddress": f"{HOST}:{self.acme_port}",
            "managementListenAddress": f"{HOST}:{self.management_port}",
            "certificate": str(self.dir / "cert.pem"), "privateKey": str(self.dir / "key.pem"),
            "httpPort": free_port(), "tlsPort": free_port(),  # HTTP-01/TLS-ALPN-01 targets: never used
            "ocspResponderURL": "", "externalAccountBindingRequired": False,
        }}
        (self.dir / "pebble.json").write_text(json.dumps(config))
        env = {**os.environ,
               "PEBBLE_VA_NOSLEEP": "1",  # validate at once, not after a random 0-15 s
               "PEBBLE_WFE_NONCEREJECT": "0",  # no random badNonce
               "PEBBLE_AUTHZREUSE": "0"}  # every order is validated through DNS
        pebble = subprocess.Popen(["pebble", "-config", str(self.dir / "pebble.json"),
                                   "-dnsserver", f"{HOST}:{self.dns_port}"],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.procs.append(pebble)
        _wait_port(self.acme_port, pebble, "pebble")
        _wait_port(self.management_port, pebble, "pebble (management)")
        return self

    def _tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_pem))

    def root_pem(self) -> bytes:
        """The root of the chains Pebble issues (a new one each run)."""
        url = f"https://{HOST}:{self.management_port}/roots/0"
        with urllib.request.urlopen(url, context=self._tls(), timeout=10) as r:
            return r.read()

    def challtest(self, path: str, doc: dict) -> None:
        req = urllib.request.Request(f"http://{HOST}:{self.challtest_port}{path}", data=json.dumps(doc).encode(),
                                     method="POST")
        with urllib.request.urlopen(req, timeout=5) as r:
            r.read()

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
            if p.stdout is not None:
                p.stdout.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Route53Bridge:
    """Route 53 API proxy to moto that mirrors the zones' TXT records into challtestsrv."""

    def __init__(self, moto_endpoint: str, pebble: Pebble):
        self.moto = urllib.parse.urlsplit(moto_endpoint)
        self.pebble = pebble
        self.route53 = boto3.client("route53", endpoint_url=moto_endpoint, region_name="us-east-1")
        self.served: dict[str, tuple[str, ...]] = {}
        self.syncs = 0
        self._lock = threading.Lock()
        bridge = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                conn = http.client.HTTPConnection(bridge.moto.hostname, bridge.moto.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                if self.command == "POST" and self.path.rstrip("/").endswith("/rrset") and resp.status == 200:
                    bridge.sync()  # before the caller hears back: its next GetChange says INSYNC
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("content-length", "connection", "transfer-encoding", "server", "date"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PUT = _forward

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.endpoint = f"http://{HOST}:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="route53-bridge", daemon=True)

    def start(self) -> Route53Bridge:
        self._thread.start()
        return self

    def txt_records(self) -> dict[str, tuple[str, ...]]:
        out: dict[str, tuple[str, ...]] = {}
        for zone in self.route53.list_hosted_zones()["HostedZones"]:
            pages = self.route53.get_paginator("list_resource_record_sets").paginate(HostedZoneId=zone["Id"])
            for page in pages:
                for rrset in page["ResourceRecordSets"]:
                    if rrset["Type"] == "TXT":
                        out[rrset["Name"].lower()] = tuple(r["Value"].strip('"') for r in rrset["ResourceRecords"])
        return out

    def sync(self) -> None:
        with self._lock:
            want = self.txt_records()
            for host, values in self.served.items():
                if want.get(host) != values:
                    self.pebble.challtest("/clear-txt", {"host": host})
            for host, values in want.items():
                if self.served.get(host) != values:
                    for v in values:
                        self.pebble.challtest("/set-txt", {"host": host, "value": v})
            self.served = want
            self.syncs += 1

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
