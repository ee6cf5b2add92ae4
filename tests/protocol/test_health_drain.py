"""GET /healthz answers only while the event loop does; SIGTERM drains sessions with a goodbye.

A whole gateway (every plaintext listener, in-memory backend) on a loop thread, driven by the
stdlib clients; the health check by urllib, as the NLB and the ECS health check ask.
"""

from __future__ import annotations

import asyncio
import base64
import imaplib
import json
import poplib
import smtplib
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

from fakes import MemoryClients
from helpers import HOST, memory_backend
from postern_gateway.app import Gateway
from postern_gateway.health import Health
from postern_gateway.metrics import DIMENSIONS, METRIC, NAMESPACE, emf_line, ecs_dimensions
from postern_gateway.smtp.spool import Spooler

USER, PASSWORD = "alice@example.test", "pw-alice"


class Running:
    """A Gateway and its Health on a background loop."""

    def __init__(self):
        b = memory_backend(bind=HOST, smtp_port=0, submission_port=-1, submissions_port=-1, imap_port=0,
                           imaps_port=-1, pop3_port=0, pop3s_port=-1, managesieve_port=0, inbound_auth=False,
                           limits_backend="memory")
        b.directory.add_domain("example.test")
        b.directory.add_user(USER, PASSWORD)
        self.clients = MemoryClients()
        b.spooler = Spooler(b.settings, self.clients)
        self.backend = b
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.gw = Gateway(b.settings, clients=object(), backend=b)
        self.ports = self.call(self.gw.start())
        self.health = Health(self.gw)
        self.ports["health"] = self.call(self.health.start(HOST, 0))

    def call(self, coro, timeout=30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def get(self, path="/healthz", timeout=5.0):
        try:
            with urllib.request.urlopen(f"http://{HOST}:{self.ports['health']}{path}", timeout=timeout) as r:
                return r.status, json.load(r)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)

    def close(self):
        try:
            self.call(self.health.stop())
            self.call(self.gw.stop(cancel_sessions=False))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


@pytest.fixture
def gateway():
    g = Running()
    yield g
    g.close()


def test_healthz_reports_listeners_and_sessions(gateway):
    code, body = gateway.get()
    assert code == 200 and body["status"] == "ok"
    assert body["listeners"] == {"smtp": True, "imap": True, "pop3": True, "managesieve": True}
    with smtplib.SMTP(HOST, gateway.ports["smtp"], timeout=10) as s:
        s.ehlo("client.example.org")
        assert gateway.get()[1]["sessions"] == {"smtp": 1}
    assert gateway.get("/other")[0] == 404


def test_a_wedged_event_loop_fails_the_check(gateway, monkeypatch):
    import postern_gateway.health as health

    monkeypatch.setattr(health, "MAX_LAG", 1.0)
    monkeypatch.setattr(health, "STALL_MEMORY", 3.0)
    gateway.loop.call_soon_threadsafe(time.sleep, 3.0)  # something blocks the loop for 3 s
    time.sleep(0.2)
    with pytest.raises((TimeoutError, socket.timeout, urllib.error.URLError)):
        gateway.get(timeout=1.0)  # no answer at all while it is wedged
    patient = gateway.get(timeout=10.0)  # asked during the stall, answered right after it
    assert patient[0] == 503 and patient[1]["status"].startswith("event loop stalled for")
    deadline = time.monotonic() + 10
    while gateway.get()[0] != 200:  # the heartbeat has run on time for STALL_MEMORY seconds again
        assert time.monotonic() < deadline
        time.sleep(0.5)


def test_a_stopped_listener_fails_the_check(gateway):
    gateway.loop.call_soon_threadsafe(asyncio.Server.close, gateway.gw.servers["pop3"])
    time.sleep(0.2)
    code, body = gateway.get()
    assert code == 503 and body["status"] == "not serving: pop3"


def test_drain_says_goodbye_to_idle_sessions_and_lets_a_busy_one_finish(gateway):
    smtp = smtplib.SMTP(HOST, gateway.ports["smtp"], timeout=10)
    smtp.ehlo("client.example.org")
    imap = imaplib.IMAP4(HOST, gateway.ports["imap"], timeout=10)
    imap.login(USER, PASSWORD)
    imap.select("INBOX")
    pop = poplib.POP3(HOST, gateway.ports["pop3"], timeout=10)
    pop.user(USER)
    pop.pass_(PASSWORD)
    sieve = socket.create_connection((HOST, gateway.ports["managesieve"]), timeout=10).makefile("rwb")
    while not sieve.readline().startswith(b"OK"):  # the capabilities, then OK
        pass
    sieve.write(b'AUTHENTICATE "PLAIN" "' + base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()) + b'"\r\n')
    sieve.flush()
    assert sieve.readline().startswith(b"OK")
    busy = smtplib.SMTP(HOST, gateway.ports["smtp"], timeout=10)
    busy.ehlo("sender.example.org")
    busy.mail("bob@example.org")
    busy.rcpt(USER)
    busy.putcmd("data")
    assert busy.getreply()[0] == 354
    busy.send(b"Subject: in flight\r\n\r\nhalf of it")  # the DATA is being received when SIGTERM comes
    time.sleep(0.3)
    assert gateway.get()[1]["sessions"] == {"smtp": 2, "imap": 1, "pop3": 1, "managesieve": 1}

    done = asyncio.run_coroutine_threadsafe(gateway.gw.drain(10.0), gateway.loop)
    gateway.health.draining = True
    assert smtp.getreply() == (421, b"4.3.2 Service shutting down, try again later")
    assert imap.readline() == b"* BYE [UNAVAILABLE] Server shutting down, reconnect later\r\n"
    assert pop.file.readline() == b"-ERR [SYS/TEMP] Server shutting down, try again later\r\n"
    assert sieve.readline() == b'BYE (TRYLATER) "Server shutting down, reconnect later"\r\n'  # RFC 5804 §1.3
    assert gateway.get()[0] == 503
    with pytest.raises(OSError):  # no new sessions: the listening socket is closed
        socket.create_connection((HOST, gateway.ports["smtp"]), timeout=2)

    busy.send(b" and the rest\r\n.\r\n")  # the message ends after the drain began: accepted, then 421
    code, text = busy.getreply()
    assert code == 250 and b"queued as" in text
    assert busy.getreply() == (421, b"4.3.2 Service shutting down, try again later")
    assert done.result(15) is True  # every session had gone
    assert len(gateway.clients.messages) == 1  # the accepted message was spooled before its 250
    for c in (smtp, busy):
        c.close()


def test_open_sessions_metric_is_embedded_metric_format():
    line = json.loads(emf_line({"ClusterName": "c", "ServiceName": "s"}, {"imap": 3, "pop3": 1}, now=1.0))
    (directive,) = line["_aws"]["CloudWatchMetrics"]
    assert (directive["Namespace"], directive["Metrics"]) == (NAMESPACE, [{"Name": METRIC, "Unit": "Count"}])
    assert directive["Dimensions"] == [list(DIMENSIONS)] and line["_aws"]["Timestamp"] == 1000
    assert (line[METRIC], line["ClusterName"], line["ServiceName"]) == (4, "c", "s")


def test_ecs_dimensions_come_from_the_task_metadata(tmp_path):
    import http.server

    task = {"Cluster": "arn:aws:ecs:us-east-1:123456789012:cluster/postern-GatewayCluster-x",
            "ServiceName": "postern-GatewayAccessService-y", "TaskARN": "arn:aws:ecs:...:task/z"}

    class Metadata(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = json.dumps(task).encode() if self.path == "/v4/abc/task" else b"{}"
            self.send_response(200 if self.path == "/v4/abc/task" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer((HOST, 0), Metadata)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        uri = f"http://{HOST}:{server.server_port}/v4/abc"
        assert ecs_dimensions(uri) == {"ClusterName": "postern-GatewayCluster-x",
                                       "ServiceName": "postern-GatewayAccessService-y"}
        assert ecs_dimensions("") is None  # not on ECS: nothing published
        task.pop("ServiceName")
        assert ecs_dimensions(uri) is None  # a task outside a service: nothing to scale
    finally:
        server.shutdown()
