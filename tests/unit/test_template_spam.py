"""template.yaml's rspamd sidecar (README "Spam filtering", Deployed): off by default; with RspamdImage
(pinned by digest) a second, non-essential container beside the gateway on the task's loopback, in the
mail-in task definition only (and so in the small profile's one task), the gateway told where it is, the
shared configuration script given Redis/clamd, and an alarm on the gateway's SpamUnchecked metric.
RspamdValkey: an ElastiCache Serverless Valkey only the mail-in tasks can reach."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from postern_gateway.spam.check import METRIC
from postern_local.template import deployed, load_template, resolve, resources_of_type

REPO = Path(__file__).resolve().parents[2]
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/postern-rspamd@sha256:" + "a" * 64


@pytest.fixture(scope="module")
def t():
    return load_template()


def containers(t, task: str = "GatewayMailTaskDefinition") -> dict[str, dict]:
    return {c["Name"]: c for c in t["Resources"][task]["Properties"]["ContainerDefinitions"]}


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


def test_only_the_mail_in_task_runs_rspamd_and_the_small_profiles_task_does(t):
    d = deployed(t, {"RspamdImage": IMAGE})
    services = resources_of_type(d, "AWS::ECS::Service")
    task_of = {name: s["Properties"]["TaskDefinition"]["Ref"] for name, s in services.items()}
    assert task_of == {"GatewayMailService": "GatewayMailTaskDefinition",
                       "GatewayAccessService": "GatewayAccessTaskDefinition"}
    assert list(containers(d, "GatewayAccessTaskDefinition")) == ["gateway"]
    access = env(containers(d, "GatewayAccessTaskDefinition")["gateway"])
    assert access["POSTERN_RSPAMD_URL"] == "" and access["POSTERN_RSPAMD_CONTROLLER_URL"] == ""
    small = deployed(t, {"RspamdImage": IMAGE, "GatewayProfile": "small", "HostedZoneId": "Z0123456789ABC"})
    (solo,) = resources_of_type(small, "AWS::ECS::Service").values()
    assert solo["Properties"]["TaskDefinition"] == {"Ref": "GatewayMailTaskDefinition"}
    assert list(resources_of_type(small, "AWS::ECS::TaskDefinition")) == ["GatewayMailTaskDefinition"]
    assert list(containers(small)) == ["gateway", "rspamd"]
    # memory: the mail-in task's own size behind the NLB, GatewayMemory (IMAP's workers too) when alone
    assert d["Resources"]["GatewayMailTaskDefinition"]["Properties"]["Memory"] == {"Ref": "MailInMemory"}
    assert small["Resources"]["GatewayMailTaskDefinition"]["Properties"]["Memory"] == {"Ref": "GatewayMemory"}
    assert d["Resources"]["GatewayAccessTaskDefinition"]["Properties"]["Memory"] == {"Ref": "GatewayMemory"}


def test_the_two_gateway_containers_differ_only_in_rspamd_the_feed_notices_and_the_ports_they_serve(t):
    d = deployed(t, {"RspamdImage": IMAGE})
    mail = containers(d)["gateway"]
    access = containers(d, "GatewayAccessTaskDefinition")["gateway"]
    apart = {"POSTERN_RSPAMD_URL", "POSTERN_RSPAMD_CONTROLLER_URL", "POSTERN_CHANGE_FEED_MAIL"}
    assert {k: v for k, v in env(mail).items() if k not in apart} == \
        {k: v for k, v in env(access).items() if k not in apart}
    # the mail-in tasks serve no mailbox: credential changes only from the feed, not a notice per change
    assert (env(mail)["POSTERN_CHANGE_FEED_MAIL"], env(access)["POSTERN_CHANGE_FEED_MAIL"]) == ("false", "true")
    small = deployed(t, {"GatewayProfile": "small", "HostedZoneId": "Z0123456789ABC"})
    assert env(containers(small)["gateway"])["POSTERN_CHANGE_FEED_MAIL"] == "true"  # one task serves everything
    assert {k: v for k, v in mail.items() if k not in ("Environment", "PortMappings")} == \
        {k: v for k, v in access.items() if k not in ("Environment", "PortMappings")}
    mail_task, access_task = (d["Resources"][n]["Properties"] for n in ("GatewayMailTaskDefinition",
                                                                          "GatewayAccessTaskDefinition"))
    same = ("Cpu", "RuntimePlatform", "ExecutionRoleArn", "TaskRoleArn", "NetworkMode", "RequiresCompatibilities")
    assert {k: mail_task[k] for k in same} == {k: access_task[k] for k in same}


def test_valkey_is_created_by_parameter_and_reached_by_the_mail_in_tasks_only(t):
    assert "SpamStateCache" not in deployed(t, {"RspamdImage": IMAGE})["Resources"]  # off by default
    d = deployed(t, {"RspamdImage": IMAGE, "RspamdValkey": "true"})
    cache = d["Resources"]["SpamStateCache"]["Properties"]
    assert cache["Engine"] == "valkey" and cache["CacheUsageLimits"]["DataStorage"]["Maximum"] <= 1
    (sg,) = [r["Ref"] for r in cache["SecurityGroupIds"]]
    assert env(containers(d)["rspamd"])["RSPAMD_REDIS"] == {
        "Fn::Sub": "${SpamStateCache.Endpoint.Address}:${SpamStateCache.Endpoint.Port}"}
    groups = resources_of_type(d, "AWS::EC2::SecurityGroup")
    assert "SecurityGroupIngress" not in groups[sg]["Properties"]
    assert groups[sg]["Properties"]["SecurityGroupEgress"] == [
        {"IpProtocol": "-1", "CidrIp": "127.0.0.1/32", "Description": "No egress"}]
    (ingress,) = [r["Properties"] for r in resources_of_type(d, "AWS::EC2::SecurityGroupIngress").values()
                  if r["Properties"]["GroupId"] == {"Ref": sg}]
    assert (ingress["FromPort"], ingress["ToPort"]) == (6379, 6379)
    assert ingress["SourceSecurityGroupId"] == {"Ref": "GatewayMailSecurityGroup"}

    egress = {n: r["Properties"] for n, r in resources_of_type(d, "AWS::EC2::SecurityGroupEgress").items()
              if r["Properties"].get("DestinationSecurityGroupId") == {"Ref": sg}}
    assert [(e["GroupId"], e["FromPort"], e["ToPort"]) for e in egress.values()] == [
        ({"Ref": "GatewayMailSecurityGroup"}, 6379, 6379)]  # the mailbox-access tasks cannot reach it
    for group in ("GatewayMailSecurityGroup", "GatewayAccessSecurityGroup"):
        inline = groups[group]["Properties"]["SecurityGroupEgress"]
        assert {r["FromPort"] for r in inline} == {443, 53}, group
    # the small profile's one task, when asked for it
    small = deployed(t, {"RspamdImage": IMAGE, "RspamdValkey": "true", "GatewayProfile": "small",
                         "HostedZoneId": "Z0123456789ABC"})
    (ingress,) = [r["Properties"] for r in resources_of_type(small, "AWS::EC2::SecurityGroupIngress").values()]
    assert ingress["SourceSecurityGroupId"] == {"Ref": "GatewayPublicSecurityGroup"}


def test_valkey_needs_rspamd_and_excludes_a_redis_of_your_own(t):
    rule = t["Rules"]["ValkeyNeedsRspamd"]
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "RspamdValkey"}, "true"]}
    asserts = [a["Assert"] for a in rule["Assertions"]]
    assert {"Fn::Not": [{"Fn::Equals": [{"Ref": "RspamdImage"}, ""]}]} in asserts
    assert {"Fn::Equals": [{"Ref": "RspamdRedis"}, ""]} in asserts


def test_a_redis_or_clamd_of_your_own_is_reachable_on_its_port_in_the_vpc_only(t):
    def extra_egress(overrides):
        d = deployed(t, overrides)
        return [r["Properties"] for r in resources_of_type(d, "AWS::EC2::SecurityGroupEgress").values()
                if r["Properties"]["GroupId"] != {"Ref": "NlbSecurityGroup"}]

    rules = extra_egress({"RspamdImage": IMAGE, "RspamdRedis": "redis.internal:6379",
                          "RspamdClamd": "clamd.internal:3310"})
    assert len(rules) == 2
    for r in rules:
        assert r["CidrIp"] == {"Ref": "VpcCidr"} and r["FromPort"] == r["ToPort"]
        assert r["GroupId"] == {"Ref": "GatewayMailSecurityGroup"}
    assert extra_egress({"RspamdImage": IMAGE}) == []
    assert extra_egress({"RspamdRedis": "redis.internal:6379"}) == []  # no rspamd, no way out for it


def refused(t, params: dict) -> list[str]:
    """The Rules a deploy with these parameters breaks (CloudFormation refuses it before creating anything)."""
    out = []
    for name, rule in t["Rules"].items():
        if "RuleCondition" not in rule or resolve(t, rule["RuleCondition"], params):
            out += [name for a in rule["Assertions"] if not resolve(t, a["Assert"], params)]
    return out


def test_rspamd_is_refused_without_room_for_it_in_its_task(t):
    zone = {"HostedZoneId": "Z0123456789ABC"}
    assert refused(t, zone) == []  # the defaults: no rspamd, mail-in tasks of 512 MiB
    assert refused(t, {**zone, "RspamdImage": IMAGE}) == ["RspamdNeedsRoom"]
    assert refused(t, {**zone, "RspamdImage": IMAGE, "MailInMemory": "1024"}) == []
    small = {**zone, "GatewayProfile": "small", "RspamdImage": IMAGE}
    assert refused(t, small) == ["RspamdNeedsRoom"]  # GatewayMemory 512 holds the IMAP worker, not rspamd too
    assert refused(t, {**small, "GatewayMemory": "2048"}) == []
    assert refused(t, {**zone, "RspamdValkey": "true"}) == ["ValkeyNeedsRspamd"]
    both = {**zone, "RspamdImage": IMAGE, "MailInMemory": "1024", "RspamdValkey": "true", "RspamdRedis": "r.internal:6379"}
    assert refused(t, both) == ["ValkeyNeedsRspamd"]


def test_the_rspamd_image_is_debians_rspamd_with_our_configuration_and_the_task_checks_it_alike(t):
    text = (REPO / "rspamd/Dockerfile").read_text()
    assert re.search(r"^FROM debian:bookworm-slim$", text, re.M)  # Debian 12: rspamd 3.4, as the tests run
    assert "apt-get install -y --no-install-recommends rspamd" in text
    assert "COPY local.d/ /etc/rspamd/local.d/" in text and "COPY configure.sh " in text
    health = re.search(r"^  CMD (.+)$", text, re.M).group(1)
    task = containers(deployed(t, {"RspamdImage": IMAGE}))["rspamd"]
    assert task["HealthCheck"]["Command"] == ["CMD-SHELL", health]


def test_the_lesson_queue_is_handed_to_whoever_sends_or_reads_lessons_only_with_rspamd(t):
    """LearnQueue always exists (idle it costs nothing); its URL goes to every gateway container and to the
    HttpsFunction (JMAP's moves into / out of Junk, postern/junk.py) only when rspamd runs: with ha the
    mailbox-access tasks send and the mail-in tasks read, with small the one task reads what JMAP sent."""
    ha = deployed(t, {"RspamdImage": IMAGE})
    queue = ha["Resources"]["LearnQueue"]["Properties"]
    assert queue["MessageRetentionPeriod"] <= 86400 and queue["SqsManagedSseEnabled"] is True
    assert "LearnQueueUrl" in ha["Outputs"]
    statements = ha["Resources"]["GatewayTaskRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    (grant,) = [s for s in statements if s["Resource"] == {"Fn::GetAtt": ["LearnQueue", "Arn"]}]
    assert sorted(grant["Action"]) == ["sqs:DeleteMessage", "sqs:ReceiveMessage", "sqs:SendMessage"]
    https = ha["Resources"]["HttpsFunction"]["Properties"]
    assert {"SQSSendMessagePolicy": {"QueueName": {"Fn::GetAtt": ["LearnQueue", "QueueName"]}}} in https["Policies"]
    small = deployed(t, {"RspamdImage": IMAGE, "GatewayProfile": "small", "HostedZoneId": "Z0123456789ABC"})
    for d, task_defs in ((ha, ("GatewayMailTaskDefinition", "GatewayAccessTaskDefinition")),
                         (small, ("GatewayMailTaskDefinition",))):
        for name in task_defs:
            assert env(containers(d, name)["gateway"])["POSTERN_LEARN_QUEUE_URL"] == {"Ref": "LearnQueue"}, name
        assert d["Resources"]["HttpsFunction"]["Properties"]["Environment"]["Variables"][
            "POSTERN_LEARN_QUEUE_URL"] == {"Ref": "LearnQueue"}
    off = deployed(t, {})  # no rspamd: nobody would read a lesson, so nobody sends one
    assert "LearnQueue" in off["Resources"]
    assert env(containers(off)["gateway"])["POSTERN_LEARN_QUEUE_URL"] == ""
    assert off["Resources"]["HttpsFunction"]["Properties"]["Environment"]["Variables"]["POSTERN_LEARN_QUEUE_URL"] == ""
