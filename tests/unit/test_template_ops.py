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


def test_every_function_alarms_on_errors_and_throttles(t):
    for fn in resources_of_type(t, "AWS::Serverless::Function"):
        seen = {metric for props in alarms(t).values() for ns, metric, rs in alarm_metrics(props)
                if ns == "AWS/Lambda" and fn in rs}
        assert {"Errors", "Throttles"} <= seen, fn


def test_the_oldest_inbound_and_outbound_message_is_watched(t):
    aged = {res for props in alarms(t).values() for ns, metric, rs in alarm_metrics(props)
            if (ns, metric) == ("AWS/SQS", "ApproximateAgeOfOldestMessage") for res in rs}
    assert {"InboundQueue", "OutboundQueue"} <= aged


def test_unhealthy_targets_and_running_tasks_are_watched(t):
    groups = set(resources_of_type(t, "AWS::ElasticLoadBalancingV2::TargetGroup"))
    unhealthy = {res for props in alarms(t).values() for ns, metric, rs in alarm_metrics(props)
                 if (ns, metric) == ("AWS/NetworkELB", "UnHealthyHostCount") for res in rs}
    assert groups <= unhealthy
    # live tasks: each task's once-a-minute OpenSessions line (its event loop's heartbeat), counted;
    # no Container Insights (docs/cost.md: its custom metrics cost more than the NLB)
    for service in resources_of_type(t, "AWS::ECS::Service"):
        assert any((ns, metric) == (NAMESPACE, METRIC) and service in rs and props["Statistic"] == "SampleCount"
                   and props["TreatMissingData"] == "breaching"
                   for props in alarms(t).values() for ns, metric, rs in alarm_metrics(props)), service
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
