"""template.yaml's rspamd sidecar (README "Spam filtering", Deployed): off by default; with RspamdImage
(pinned by digest) a second, non-essential container beside the gateway on the task's loopback, the
gateway told where it is, the shared configuration script given Redis/clamd, and an alarm on the
gateway's SpamUnchecked metric."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from postern_gateway.spam.check import METRIC
from postern_local.template import deployed, load_template, resources_of_type

REPO = Path(__file__).resolve().parents[2]
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/postern-rspamd@sha256:" + "a" * 64


@pytest.fixture(scope="module")
def t():
    return load_template()


def containers(t) -> dict[str, dict]:
    (task,) = resources_of_type(t, "AWS::ECS::TaskDefinition").values()
    return {c["Name"]: c for c in task["Properties"]["ContainerDefinitions"]}


def env(c) -> dict:
    return {e["Name"]: e["Value"] for e in c["Environment"]}


def test_off_by_default(t):
    d = deployed(t)
    assert list(containers(d)) == ["gateway"]
    g = env(containers(d)["gateway"])
    assert g["POSTERN_RSPAMD_URL"] == "" and g["POSTERN_RSPAMD_CONTROLLER_URL"] == ""
    assert "SpamUncheckedAlarm" not in d["Resources"]


def test_sidecar_with_an_image(t):
    d = deployed(t, {"RspamdImage": IMAGE})
    cs = containers(d)
    assert list(cs) == ["gateway", "rspamd"]
    gateway, rspamd = cs["gateway"], cs["rspamd"]
    assert env(gateway)["POSTERN_RSPAMD_URL"] == "http://127.0.0.1:11333"
    assert env(gateway)["POSTERN_RSPAMD_CONTROLLER_URL"] == "http://127.0.0.1:11334"
    assert rspamd["Essential"] is False and "PortMappings" not in rspamd  # loopback only
    assert rspamd["Image"] == {"Ref": "RspamdImage"} and rspamd["MemoryReservation"] == 256
    e = env(rspamd)
    assert e["RSPAMD_NORMAL"] == "127.0.0.1:11333" and e["RSPAMD_CONTROLLER"] == "127.0.0.1:11334"
    assert e["RSPAMD_REDIS"] == {"Ref": "RspamdRedis"} and e["RSPAMD_CLAMD"] == {"Ref": "RspamdClamd"}
    assert e["RSPAMD_REDIS_TLS"] == "true"  # ElastiCache Serverless speaks TLS only
    configure = (REPO / "rspamd/configure.sh").read_text()
    assert all(f"${{{name}" in configure for name in e)  # every variable given is one the script reads
    alarm = d["Resources"]["SpamUncheckedAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("Postern", METRIC)


def test_the_image_is_pinned_by_digest(t):
    pattern = t["Parameters"]["RspamdImage"]["AllowedPattern"]
    assert re.fullmatch(pattern, IMAGE) and re.fullmatch(pattern, "")
    assert not re.fullmatch(pattern, "123456789012.dkr.ecr.us-east-1.amazonaws.com/postern-rspamd:latest")
