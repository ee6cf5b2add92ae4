"""template.yaml: what an operator needs once it runs - alarms, logs kept and bounded, scaling,
health checks that see the event loop, draining, a reachable-only-through-the-NLB gateway,
a bucket a table restore can trust, outputs for every queue and service.

Rules that hold for every resource of a kind (every DLQ alarms, every function has a log group
with a retention), so a resource added later is held to them too.
"""

from __future__ import annotations

import pytest

from postern.config import Settings
from postern_gateway.imap.session import AUTOLOGOUT
from postern_gateway.metrics import DIMENSIONS, METRIC, NAMESPACE
from postern_local.template import deployed, load_template, resources_of_type

PITR_DAYS = 35  # DynamoDB point-in-time recovery keeps 35 days


@pytest.fixture(scope="module")
def t():
    return load_template()


@pytest.fixture(scope="module")
def ha(t):
    return deployed(t)  # the default profile (GatewayProfile=ha), as a stack gets it


@pytest.fixture(scope="module")
def small():
    return deployed(load_template(), {"GatewayProfile": "small", "HostedZoneId": "Z0123456789ABC"})


def refs(node) -> set[str]:
    """Every logical id a value refers to (Ref, GetAtt, Sub ${X})."""
    import re

    out: set[str] = set()
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "Ref" and isinstance(v, str):
                out.add(v)
            elif k == "Fn::GetAtt":
                out.add(v[0] if isinstance(v, list) else v.split(".")[0])
            elif k == "Fn::Sub":
                text = v if isinstance(v, str) else v[0]
                out |= {m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", text)}
                out |= refs(v[1]) if isinstance(v, list) else set()
            else:
                out |= refs(v)
    elif isinstance(node, list):
        for x in node:
            out |= refs(x)
    return out


def alarms(t) -> dict[str, dict]:
    return {k: v["Properties"] for k, v in resources_of_type(t, "AWS::CloudWatch::Alarm").items()}


def alarm_metrics(props) -> list[tuple[str, str, set[str]]]:
    """(namespace, metric name, referenced resources) of an alarm, plain or metric math."""
    if "MetricName" in props:
        return [(props["Namespace"], props["MetricName"], refs(props.get("Dimensions", [])))]
    out = []
    for m in props.get("Metrics", []):
        if "MetricStat" in m:
            metric = m["MetricStat"]["Metric"]
            out.append((metric["Namespace"], metric["MetricName"], refs(metric.get("Dimensions", []))))
    return out


def test_every_alarm_notifies_the_alarm_topic(t):
    assert resources_of_type(t, "AWS::SNS::Topic")["AlarmTopic"]
    for name, props in alarms(t).items():
        # both ways: an alarm that clears says so too (a DLQ emptied, a certificate renewed)
        assert props.get("AlarmActions") == [{"Ref": "AlarmTopic"}], name
        assert props.get("OKActions") == [{"Ref": "AlarmTopic"}], name
    sub = resources_of_type(t, "AWS::SNS::Subscription")["AlarmEmailSubscription"]
    assert sub["Condition"] == "WithAlarmEmail" and sub["Properties"]["Endpoint"] == {"Ref": "AlarmEmail"}


def test_every_dead_letter_queue_raises_an_alarm(t):
    queues = resources_of_type(t, "AWS::SQS::Queue")
    dlqs = {q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
            for q in queues.values() if "RedrivePolicy" in q.get("Properties", {})}
    assert len(dlqs) >= 4
    watched = {res for props in alarms(t).values() for ns, metric, rs in alarm_metrics(props)
               if (ns, metric) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible") for res in rs}
    assert dlqs <= watched, f"no alarm on {sorted(dlqs - watched)}"


def test_every_function_failure_is_watched_once(t):
    """Each failure mode raises one alarm, not two (an alarm metric is $0.10 a month, a metric-math
    alarm billed per metric it reads: docs/cost.md). A function fed by an SQS queue whose age and
    DLQ are alarmed shows its errors and throttles there (its jobs wait, then land in the DLQ); the
    certificate function shows on the expiry alarm (it retries twice a day for two weeks before it);
    every other function alarms on Errors, and on Throttles too when a client calls it (HTTP API,
    WebSocket) - a throttle there is a client's failed request, not a retried batch."""
    def watched(ns, metric):
        return {res for props in alarms(t).values() for n, m, rs in alarm_metrics(props)
                if (n, m) == (ns, metric) for res in rs}

    errors, throttles = watched("AWS/Lambda", "Errors"), watched("AWS/Lambda", "Throttles")
    aged = watched("AWS/SQS", "ApproximateAgeOfOldestMessage")
    dlq_watched = watched("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    queues = resources_of_type(t, "AWS::SQS::Queue")
    integrations = resources_of_type(t, "AWS::ApiGatewayV2::Integration")
    by_queue = []
    for fn, r in resources_of_type(t, "AWS::Serverless::Function").items():
        events = (r["Properties"].get("Events") or {}).values()
        fed = [e["Properties"]["Queue"]["Fn::GetAtt"][0] for e in events if e["Type"] == "SQS"]
        clients = any(e["Type"] in ("HttpApi", "Api") for e in events) or any(fn in refs(i) for i in integrations.values())
        if fed and all(q in aged and queues[q]["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
                       in dlq_watched for q in fed):
            by_queue.append(fn)
            assert fn not in errors and fn not in throttles, f"{fn}: its queue's alarms already say it"
        elif fn == "CertFunction":
            assert "TlsCertificateExpiryAlarm" in alarms(t) and fn not in errors
        else:
            assert fn in errors, fn
            assert (fn in throttles) == clients, fn
    assert sorted(by_queue) == ["DeliverFunction", "RouterFunction", "StoreFunction"]


def test_the_oldest_inbound_and_outbound_message_is_watched(t):
    aged = {res for props in alarms(t).values() for ns, metric, rs in alarm_metrics(props)
            if (ns, metric) == ("AWS/SQS", "ApproximateAgeOfOldestMessage") for res in rs}
    assert {"InboundQueue", "OutboundQueue"} <= aged


def test_each_gateway_service_is_watched_through_one_of_its_target_groups(t, ha):
    """A task failing /healthz (wedged loop, listener down) or fewer healthy tasks than
    GatewayDesiredCount (dead, not starting), per service, from the NLB's free target counts. One
    group per service is enough because all of a service's groups check the same /healthz of the
    same tasks, which covers every listener (postern_gateway/health.py)."""
    groups = resources_of_type(ha, "AWS::ElasticLoadBalancingV2::TargetGroup")
    services = resources_of_type(ha, "AWS::ECS::Service")
    assert set(services) == {"GatewayMailService", "GatewayAccessService"}
    for service, r in services.items():
        mine = {lb["TargetGroupArn"]["Ref"] for lb in r["Properties"]["LoadBalancers"]}
        checks = {(g["Properties"]["HealthCheckProtocol"], g["Properties"]["HealthCheckPort"],
                   g["Properties"]["HealthCheckPath"]) for n, g in groups.items() if n in mine}
        assert checks == {("HTTP", "8081", "/healthz")}, service
        (props,) = [p for p in alarms(ha).values()
                    if {m for ns, m, rs in alarm_metrics(p) if ns == "AWS/NetworkELB" and rs & mine}
                    == {"HealthyHostCount", "UnHealthyHostCount"}]
        assert len(alarm_metrics(props)) == 2 and props["TreatMissingData"] == "breaching"
        (expr,) = [m["Expression"] for m in props["Metrics"] if m.get("ReturnData")]
        assert "GatewayDesiredCount" in refs(expr) and "unhealthy, 0) > 0" in expr["Fn::Sub"]
    # no Container Insights (docs/cost.md: its custom metrics cost more than the NLB)
    for c in resources_of_type(t, "AWS::ECS::Cluster").values():
        assert {"Name": "containerInsights", "Value": "disabled"} in c["Properties"]["ClusterSettings"]


def test_every_log_group_has_a_retention_and_every_function_its_own_group(t):
    groups = resources_of_type(t, "AWS::Logs::LogGroup")
    for name, g in groups.items():
        assert "RetentionInDays" in g["Properties"], name
    used = []
    for fn, r in resources_of_type(t, "AWS::Serverless::Function").items():
        group = r["Properties"].get("LoggingConfig", {}).get("LogGroup", {}).get("Ref")
        assert group in groups, f"{fn}: LoggingConfig.LogGroup must name a log group of the template"
        used.append(group)
    assert len(used) == len(set(used))


def test_both_services_scale_on_sessions_per_task_and_cpu(ha):
    t = ha
    services = resources_of_type(t, "AWS::ECS::Service")
    targets = resources_of_type(t, "AWS::ApplicationAutoScaling::ScalableTarget")
    policies = resources_of_type(t, "AWS::ApplicationAutoScaling::ScalingPolicy")
    for service in services:
        (target,) = [k for k, v in targets.items() if service in refs(v["Properties"]["ResourceId"])]
        mine = [p["Properties"]["TargetTrackingScalingPolicyConfiguration"] for p in policies.values()
                if p["Properties"]["ScalingTargetId"] == {"Ref": target}]
        custom = [c["CustomizedMetricSpecification"] for c in mine if "CustomizedMetricSpecification" in c]
        cpu = [c for c in mine if c.get("PredefinedMetricSpecification", {}).get("PredefinedMetricType")
               == "ECSServiceAverageCPUUtilization"]
        assert len(custom) == 1 and len(cpu) == 1, service
        spec = custom[0]
        # the metric the gateway writes (postern_gateway.metrics), per task: Average over its tasks
        assert (spec["Namespace"], spec["MetricName"], spec["Statistic"]) == (NAMESPACE, METRIC, "Average")
        assert tuple(d["Name"] for d in spec["Dimensions"]) == DIMENSIONS
        assert service in refs(spec["Dimensions"])
        assert targets[target]["Properties"]["MinCapacity"] == {"Ref": "GatewayDesiredCount"}


def test_health_checks_ask_the_gateway_health_endpoint(t):
    tasks = resources_of_type(t, "AWS::ECS::TaskDefinition")
    assert set(tasks) == {"GatewayMailTaskDefinition", "GatewayAccessTaskDefinition"}
    for task in tasks.values():
        (container,) = [c for c in task["Properties"]["ContainerDefinitions"] if c.get("Name") == "gateway"]  # + rspamd
        env = {e["Name"]: e["Value"] for e in container["Environment"]}
        port = int(env["POSTERN_HEALTH_PORT"])
        assert port == Settings().health_port
        assert container["HealthCheck"]["Command"] == ["CMD", "python", "-m", "postern_gateway.health"]
        # SIGTERM -> drain for POSTERN_DRAIN_TIMEOUT -> SIGKILL at StopTimeout (Fargate: at most 120 s)
        assert float(env["POSTERN_DRAIN_TIMEOUT"]) + 15 <= container["StopTimeout"] <= 120
    for name, g in resources_of_type(t, "AWS::ElasticLoadBalancingV2::TargetGroup").items():
        p = g["Properties"]
        assert (p["HealthCheckProtocol"], int(p["HealthCheckPort"]), p["HealthCheckPath"]) == ("HTTP", port, "/healthz"), name
        attrs = {a["Key"]: a["Value"] for a in p["TargetGroupAttributes"]}
        assert attrs["deregistration_delay.timeout_seconds"] == {"Ref": "GatewayDrainSeconds"}, name


def test_imap_and_pop3_outlive_the_nlb_idle_timeout(t):
    listeners = resources_of_type(t, "AWS::ElasticLoadBalancingV2::Listener")
    need = {143: AUTOLOGOUT, 993: AUTOLOGOUT, 110: Settings().pop3_timeout, 995: Settings().pop3_timeout}
    for listener in listeners.values():
        p = listener["Properties"]
        if p["Port"] in need:
            attrs = {a["Key"]: int(a["Value"]) for a in p.get("ListenerAttributes", [])}
            assert attrs.get("tcp.idle_timeout.seconds", 350) >= max(600, need[p["Port"]]), p["Port"]


def test_tasks_are_reached_only_through_the_load_balancer_on_their_own_services_ports(ha):
    t = ha
    (lb,) = resources_of_type(t, "AWS::ElasticLoadBalancingV2::LoadBalancer").values()
    (nlb_sg,) = [r["Ref"] for r in lb["Properties"]["SecurityGroups"]]
    groups = resources_of_type(t, "AWS::EC2::SecurityGroup")
    health = Settings().health_port
    services = resources_of_type(t, "AWS::ECS::Service")
    assert set(services) == {"GatewayMailService", "GatewayAccessService"}
    task_sgs = set()
    for name, service in services.items():
        vpc = service["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]
        assert vpc["AssignPublicIp"] == "ENABLED"  # their way out to ECR and the AWS APIs, no NAT gateway
        (sg,) = [r["Ref"] for r in vpc["SecurityGroups"]]
        task_sgs.add(sg)
        ingress = groups[sg]["Properties"]["SecurityGroupIngress"]
        for rule in ingress:
            assert "CidrIp" not in rule and rule["SourceSecurityGroupId"] == {"Ref": nlb_sg}, rule
        # exactly the ports its target groups send to, and the health checks': no other service's port
        served = {lb_["ContainerPort"] for lb_ in service["Properties"]["LoadBalancers"]}
        assert {r["FromPort"] for r in ingress} == {r["ToPort"] for r in ingress} == served | {health}, name
    assert task_sgs == {"GatewayMailSecurityGroup", "GatewayAccessSecurityGroup"}
    for rule in resources_of_type(t, "AWS::EC2::SecurityGroupIngress").values():
        assert rule["Properties"].get("GroupId") not in [{"Ref": g} for g in task_sgs], "ingress only from the NLB's group"


def test_a_restored_table_finds_the_bodies_it_points_at(t):
    bucket = resources_of_type(t, "AWS::S3::Bucket")["MailBucket"]
    p = bucket["Properties"]
    assert p["VersioningConfiguration"]["Status"] == "Enabled"
    rules = p["LifecycleConfiguration"]["Rules"]
    (noncurrent,) = [r for r in rules if "NoncurrentVersionExpiration" in r]
    days = noncurrent["NoncurrentVersionExpiration"]["NoncurrentDays"]
    assert t["Parameters"][days["Ref"]]["MinValue"] >= PITR_DAYS and "Prefix" not in noncurrent
    assert any(r.get("ExpiredObjectDeleteMarker") is True for r in rules)
    for table in resources_of_type(t, "AWS::DynamoDB::Table").values():
        assert table["Properties"]["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True


def test_retained_data_is_retained_except_on_a_failed_create(t):
    retained = {k: v for k, v in t["Resources"].items() if v.get("UpdateReplacePolicy") == "Retain"}
    assert {"MailBucket", "DirectoryTable", "MailTable"} <= set(retained)
    for name, r in retained.items():
        assert r.get("DeletionPolicy") == "RetainExceptOnCreate", name


def test_outputs_name_every_queue_the_cluster_and_the_services(t):
    outputs = {refs(o["Value"]).pop() for o in t["Outputs"].values() if len(refs(o["Value"])) == 1}
    for kind in ("AWS::SQS::Queue", "AWS::ECS::Service", "AWS::ECS::Cluster", "AWS::SNS::Topic"):
        missing = set(resources_of_type(t, kind)) - outputs - {"SesEventsTopic"}
        assert not missing, f"no output for {sorted(missing)}"


# --- GatewayProfile=small: one task, no load balancer, its address in Route 53 (docs/cost.md) ---
def test_small_profile_is_one_public_task_without_a_load_balancer(small):
    assert not resources_of_type(small, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    assert not resources_of_type(small, "AWS::ElasticLoadBalancingV2::TargetGroup")
    assert not resources_of_type(small, "AWS::ApplicationAutoScaling::ScalableTarget")
    (name, service), = resources_of_type(small, "AWS::ECS::Service").items()
    p = service["Properties"]
    assert p["DesiredCount"] == 1 and "LoadBalancers" not in p and "TlsCertificate" in service["DependsOn"]
    assert p["DeploymentConfiguration"]["MinimumHealthyPercent"] == 100  # the new task is up before the old goes
    vpc = p["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert vpc["AssignPublicIp"] == "ENABLED"
    (sg,) = [r["Ref"] for r in vpc["SecurityGroups"]]
    ingress = resources_of_type(small, "AWS::EC2::SecurityGroup")[sg]["Properties"]["SecurityGroupIngress"]
    assert sorted(r["FromPort"] for r in ingress) == [25, 110, 143, 465, 587, 993, 995, 4190]
    assert any((ns, metric) == (NAMESPACE, METRIC) and name in rs and props["Statistic"] == "SampleCount"
               and props["TreatMissingData"] == "breaching"
               for props in alarms(small).values() for ns, metric, rs in alarm_metrics(props))
    for o in small["Outputs"].values():
        assert not refs(o["Value"]) & {"GatewayLoadBalancer", "GatewayMailService", "GatewayAccessService"}


def test_small_profile_task_listens_on_the_mail_ports_and_publishes_its_address(small):
    from postern_local.stack import PORT_VARS

    (task,) = resources_of_type(small, "AWS::ECS::TaskDefinition").values()
    (c,) = task["Properties"]["ContainerDefinitions"]
    env = {e["Name"]: e["Value"] for e in c["Environment"]}
    ports = {int(env[v]) for v in PORT_VARS.values()}
    assert ports == {25, 587, 465, 143, 993, 110, 995, 4190}
    assert ports | {int(env["POSTERN_HEALTH_PORT"])} == {m["ContainerPort"] for m in c["PortMappings"]}
    # the image's unprivileged user binds 25 and the others: a namespaced sysctl Fargate allows
    assert c["SystemControls"] == [{"Namespace": "net.ipv4.ip_unprivileged_port_start", "Value": "0"}]
    assert env["POSTERN_PUBLISH_ZONE_ID"] == {"Ref": "HostedZoneId"}
    role = resources_of_type(small, "AWS::IAM::Role")["GatewayTaskRole"]["Properties"]["Policies"][0]
    actions = {a for st in role["PolicyDocument"]["Statement"]
               for a in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])}
    assert {"route53:ChangeResourceRecordSets", "ec2:DescribeNetworkInterfaces"} <= actions
    # the task may write its own A record and nothing else in the zone (not the MX, SPF or DKIM records)
    (r53,) = [st for st in role["PolicyDocument"]["Statement"] if st["Action"] == "route53:ChangeResourceRecordSets"]
    assert r53["Condition"] == {"ForAllValues:StringEquals": {
        "route53:ChangeResourceRecordSetsActions": ["UPSERT"], "route53:ChangeResourceRecordSetsRecordTypes": ["A"],
        "route53:ChangeResourceRecordSetsNormalizedRecordNames": [{"Ref": "GatewayHostname"}]}}


def test_default_profile_neither_publishes_nor_opens_low_ports(t, ha):
    tasks = resources_of_type(ha, "AWS::ECS::TaskDefinition")
    assert len(tasks) == 2
    for task in tasks.values():
        (c,) = task["Properties"]["ContainerDefinitions"]
        env = {e["Name"]: e["Value"] for e in c["Environment"]}
        assert env["POSTERN_PUBLISH_ZONE_ID"] == "" and "SystemControls" not in c
    rule = t["Rules"]["SmallProfileNeedsAZone"]
    assert rule["Assertions"][0]["Assert"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "HostedZoneId"}, ""]}]}


# The gateway's peak RSS under the mailbox-access share of `make load` (100 IMAP IDLE, 20 active IMAP,
# 50 POP3 sessions, 4 probes; bench/load.py --quick --smtp 0) with POSTERN_PASSWORD_CHECKS=1, and one
# work-budget worker's peak on a 25 MiB message (parse, section, search); docs/cost.md, "Task sizes".
GATEWAY_PEAK_MIB = 152
ARGON2_MIB = 64  # per password check at once (postern.passwords)
FARGATE_MIN_MEMORY = {"256": 512, "512": 1024, "1024": 2048, "2048": 4096, "4096": 8192}


@pytest.mark.parametrize("memory", ["512", "1024", "2048"])
def test_gateway_tasks_fit_the_gateway_peak_and_their_workers_with_room(t, memory):
    """Each task's memory holds the gateway's measured peak (one more argon2id check per extra slot) plus
    POSTERN_WORK_WORKERS x POSTERN_WORK_MEMORY_MB (RLIMIT_AS, so a worker cannot go past it), with at
    least a quarter of the task left over (sessions beyond the load's, the allocator)."""
    for cpu in t["Parameters"]["GatewayCpu"]["AllowedValues"]:
        checks = int(t["Mappings"]["GatewaySizing"][cpu]["PasswordChecks"])
        assert 1 <= checks <= max(1, int(cpu) * 2 // 1024), cpu  # about two per vCPU: more buys no logins
        d = deployed(t, {"GatewayMemory": memory, "GatewayCpu": cpu})
        for name in ("GatewayAccessTaskDefinition", "GatewayMailTaskDefinition"):
            td = d["Resources"][name]["Properties"]
            env = {e["Name"]: e["Value"] for e in td["ContainerDefinitions"][0]["Environment"]}
            assert env["POSTERN_PASSWORD_CHECKS"] == {"Fn::FindInMap": ["GatewaySizing", {"Ref": "GatewayCpu"},
                                                                        "PasswordChecks"]}
            if name == "GatewayAccessTaskDefinition":
                workers, limit = int(env["POSTERN_WORK_WORKERS"]), int(env["POSTERN_WORK_MEMORY_MB"])
                peak = GATEWAY_PEAK_MIB + (checks - 1) * ARGON2_MIB + workers * limit
                assert limit >= 160  # a 25 MiB message's worst case peaked at 124 MiB (bench/worker_memory.py)
                if FARGATE_MIN_MEMORY[cpu] <= int(memory):  # a pair Fargate runs
                    assert peak <= int(memory) * 0.75, (memory, cpu, peak)
