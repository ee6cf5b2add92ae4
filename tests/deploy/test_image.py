"""The gateway image's Python environment, run as the task definition runs it.

No Docker here, so the test does what the image does: the ``pip install`` commands of
gateway/Dockerfile's RUN lines, exactly, into a fresh venv (paths under /app mapped back through
its COPY lines), then ``postern-gateway`` from that venv, outside the repository, with the
environment of template.yaml's task definition (the README's example parameters from
samconfig.toml; resources on moto; the TLS certificate in the Secrets Manager secret the
template names), only the bind address and ports moved to loopback and free ports. Then a client
sees the SMTP banner, STARTTLS, an IMAP login over TLS, /healthz, the OpenSessions metric line,
and a SIGTERM that ends the process after telling an open session BYE.

The venv's third-party packages are cached in .venv-image/ (keyed by the Dockerfile and the pin
files); Postern's own two packages are installed anew every run.
"""

from __future__ import annotations

import hashlib
import http.server
import imaplib
import json
import os
import re
import shlex
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from postern_gateway.app import LISTENERS
from postern_local.stack import PORT_VARS as LISTENER_PORT_VARS

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "gateway/Dockerfile"
VENV = REPO / ".venv-image"
HOST = "127.0.0.1"
USER, PASSWORD = "carol@example.com", "a long enough password"
pytestmark = pytest.mark.timeout(1500)

# Every listener's port variable (the local stack's one list, ManageSieve included) and /healthz's.
PORT_VARS = (*LISTENER_PORT_VARS.values(), "POSTERN_HEALTH_PORT")


def dockerfile_pip_installs(path: Path = DOCKERFILE) -> list[list[str]]:
    """The arguments of every ``pip install`` in the Dockerfile's RUN lines, /app paths mapped to the repo."""
    logical = re.sub(r"\\\n", " ", path.read_text())
    copies: dict[str, str] = {}
    installs: list[list[str]] = []
    for line in (ln.strip() for ln in logical.splitlines()):
        if line.startswith("COPY "):
            *sources, dest = shlex.split(line[5:])
            if len(sources) == 1 and not sources[0].startswith("--"):
                copies[dest.rstrip("/")] = sources[0].rstrip("/")
        elif line.startswith("RUN "):
            for part in line[4:].split("&&"):
                args = shlex.split(part)
                if args[:2] == ["pip", "install"]:
                    installs.append(args[2:])

    def local(arg: str) -> str:
        if not arg.startswith("/app"):
            return arg
        dest = max((d for d in copies if arg == d or arg.startswith(d + "/")), key=len)
        return str(REPO / (copies[dest] + arg[len(dest):]))

    return [[local(a) for a in args] for args in installs]


def _key(installs: list[list[str]]) -> str:
    h = hashlib.sha256(DOCKERFILE.read_bytes())
    for args in installs:
        for a in args:
            if a.endswith(".txt"):
                h.update(Path(a).read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def image_venv() -> Path:
    installs = dockerfile_pip_installs()
    assert len(installs) >= 2, installs  # the pinned dependencies, then Postern's own packages
    key = _key(installs)
    pip = [str(VENV / "bin/python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    current = (VENV / ".key").read_text() if (VENV / ".key").exists() else ""
    if current != key:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True, timeout=300)
        for args in installs:
            if "--no-deps" not in args:
                r = subprocess.run(pip + args, capture_output=True, text=True, timeout=900)
                assert r.returncode == 0, r.stderr[-4000:]
        (VENV / ".key").write_text(key)
    for args in installs:  # our own packages, as they are in this checkout
        if "--no-deps" in args:
            r = subprocess.run(pip + ["--force-reinstall"] + args, capture_output=True, text=True, timeout=300)
            assert r.returncode == 0, r.stderr[-4000:]
    return VENV


def test_the_image_installs_only_pinned_versions(image_venv):
    r = subprocess.run([str(image_venv / "bin/python"), "-m", "pip", "freeze", "--all"], capture_output=True,
                       text=True, check=True)
    constraints = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line.strip())
        if m:
            constraints[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    for line in r.stdout.splitlines():
        if "==" not in line:
            continue
        name, version = line.split("==")
        name = re.sub(r"[-_.]+", "-", name).lower()
        if name in ("pip", "postern", "postern-gateway"):
            continue
        assert constraints.get(name) == version, f"the image would install {line}, constraints.txt pins {constraints.get(name)}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Metadata(http.server.BaseHTTPRequestHandler):
    """The ECS task metadata endpoint v4 (GET /task): a task of the access service."""

    task = {"Cluster": "arn:aws:ecs:us-east-1:123456789012:cluster/postern-GatewayCluster-abc",
            "ServiceName": "postern-GatewayAccessService-def"}

    def do_GET(self):  # noqa: N802
        body = json.dumps(self.task).encode()
        self.send_response(200 if self.path.endswith("/task") else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_gateway_runs_from_the_image_environment_with_the_task_definition(image_venv, moto_stack, tmp_path):
    import trustme

    from postern.directory import dynamo_directory

    resolver, boto = moto_stack.resolver, moto_stack.boto
    env = resolver.container_environment("GatewayMailTaskDefinition")
    hostname = resolver.params["GatewayHostname"]
    assert env["POSTERN_HOSTNAME"] == hostname and env["POSTERN_ALLOW_PLAINTEXT_AUTH"] == "false"
    # the certificate where the task definition says the gateway finds it
    ca = trustme.CA()
    leaf = ca.issue_cert(hostname, HOST)
    boto.secretsmanager.put_secret_value(SecretId=env["POSTERN_TLS_SECRET_ID"], SecretString=json.dumps(
        {"cert": "".join(b.bytes().decode() for b in leaf.cert_chain_pems), "key": leaf.private_key_pem.bytes().decode()}))
    directory = dynamo_directory(moto_stack.settings, moto_stack.clients)
    directory.add_domain("example.com")
    directory.add_user(USER, PASSWORD)

    metadata = http.server.HTTPServer((HOST, 0), Metadata)
    threading.Thread(target=metadata.serve_forever, daemon=True).start()
    ports = {var: _free_port() for var in PORT_VARS}
    env.update({var: str(port) for var, port in ports.items()})
    env.update({
        "POSTERN_BIND": HOST,  # the container binds 0.0.0.0; tests bind loopback only
        "PATH": f"{image_venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8",
        "AWS_ENDPOINT_URL": moto_stack.endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": env["AWS_REGION"],
        "ECS_CONTAINER_METADATA_URI_V4": f"http://{HOST}:{metadata.server_port}/v4/abc",
    })
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen([str(image_venv / "bin/postern-gateway")], cwd=tmp_path, env=env, stdout=o, stderr=e)
    try:
        health = f"http://{HOST}:{ports['POSTERN_HEALTH_PORT']}/healthz"
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, err.read_text()[-4000:]
            try:
                with urllib.request.urlopen(health, timeout=2) as r:
                    body = json.load(r)
                    break
            except OSError:
                assert time.monotonic() < deadline, err.read_text()[-4000:]
                time.sleep(0.5)
        assert body["listeners"] == dict.fromkeys([listener.name for listener in LISTENERS], True)
        assert {"smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s", "managesieve"} <= set(body["listeners"])
        client = ssl.create_default_context()
        ca.configure_trust(client)

        with socket.create_connection((HOST, ports["POSTERN_SMTP_PORT"]), timeout=20) as raw:  # the MX port
            banner = raw.makefile("rb").readline()
            assert banner.startswith(f"220 {hostname} ESMTP Postern".encode()), banner
        with smtplib.SMTP(HOST, ports["POSTERN_SMTP_PORT"], timeout=20) as s:
            assert s.ehlo("client.example.org")[0] == 250 and s.has_extn("starttls")
            assert s.starttls(context=client)[0] == 220
            assert s.sock.version() in ("TLSv1.2", "TLSv1.3")
            assert s.ehlo("client.example.org")[0] == 250

        plain = imaplib.IMAP4(HOST, ports["POSTERN_IMAP_PORT"], timeout=20)
        assert "LOGINDISABLED" in plain.capabilities  # no password in clear on a deployed stack
        plain.logout()
        imap = imaplib.IMAP4_SSL(HOST, ports["POSTERN_IMAPS_PORT"], ssl_context=client, timeout=20)
        assert imap.login(USER, PASSWORD)[0] == "OK"
        assert imap.select("INBOX")[0] == "OK"

        emf = [json.loads(line) for line in out.read_text().splitlines() if line.startswith('{"_aws"')]
        assert emf and emf[0]["ServiceName"] == "postern-GatewayAccessService-def"
        assert emf[0]["ClusterName"] == "postern-GatewayCluster-abc" and "OpenSessions" in emf[0]

        proc.send_signal(signal.SIGTERM)  # as ECS stops a task
        assert imap.readline() == b"* BYE [UNAVAILABLE] Server shutting down, reconnect later\r\n"
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        metadata.shutdown()
