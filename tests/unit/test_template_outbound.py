"""template.yaml's outbound resources agree with the code: SES identity, events to the NDR,
smarthost parameters, the VPC option for mx, the retry queue's DLQ counting crashes only."""

from __future__ import annotations

import pytest

from postern_local.lambdas import function_specs
from postern_local.template import load_template


@pytest.fixture(scope="module")
def t():
    return load_template()


def test_ses_identity_dkim_mail_from_and_events_to_the_ndr_function(t):
    r = t["Resources"]
    ident = r["MailDomainIdentity"]["Properties"]
    assert ident["DkimSigningAttributes"]["NextSigningKeyLength"] == "RSA_2048_BIT"
    assert ident["MailFromAttributes"]["MailFromDomain"] == {"Fn::Sub": "${SesMailFromSubdomain}.${MailDomain}"}
    assert ident["FeedbackAttributes"]["EmailForwardingEnabled"] is False
    dest = r["SesEventDestination"]["Properties"]["EventDestination"]
    assert set(dest["MatchingEventTypes"]) == {"bounce", "complaint", "deliveryDelay"}
    assert dest["SnsDestination"]["TopicARN"] == {"Ref": "SesEventsTopic"}
    sub = r["SesEventsSubscription"]["Properties"]
    assert sub["Endpoint"] == {"Fn::GetAtt": ["SesEventsQueue", "Arn"]} and sub["RawMessageDelivery"] is True
    ndr = function_specs(t)["NdrFunction"]
    assert {s.queue for s in ndr["sources"]} == {"NdrQueue", "SesEventsQueue"}
    deliver_env = r["DeliverFunction"]["Properties"]["Environment"]["Variables"]
    assert deliver_env["POSTERN_SES_CONFIGURATION_SET"] == {"Fn::If": ["UseSes", {"Ref": "SesConfigurationSet"}, ""]}
    ses_perm = next(st for st in r["DeliverFunction"]["Properties"]["Policies"][-1]["Statement"]
                    if "ses:SendEmail" in st["Action"])
    assert any("configuration-set/*" in str(x) for x in ses_perm["Resource"])  # SESv2 authorises on the set too


def test_smarthost_parameters_reach_the_deliver_function(t):
    env = t["Resources"]["DeliverFunction"]["Properties"]["Environment"]["Variables"]
    assert env["POSTERN_SMARTHOST"] == {"Fn::If": ["UseSmarthost", {"Fn::Sub": "${SmarthostHost}:${SmarthostPort}"}, ""]}
    assert env["POSTERN_SMARTHOST_TLS"] == {"Ref": "SmarthostTls"}
    assert env["POSTERN_SMARTHOST_SECRET_ID"] == {"Ref": "SmarthostSecretId"}
    assert t["Parameters"]["SmarthostSecretId"]["AllowedPattern"] == "^(postern/.+)?$"  # the function may read postern/*


def test_mx_only_with_the_deliver_vpc(t):
    rule = t["Rules"]["MxNeedsTheDeliverVpc"]
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "OutboundTransport"}, "mx"]}
    assert rule["Assertions"][0]["Assert"] == {"Fn::Equals": [{"Ref": "DeliverVpc"}, "true"]}
    fn = t["Resources"]["DeliverFunction"]["Properties"]
    assert fn["Environment"]["Variables"]["POSTERN_OUTBOUND_VPC"] == {"Fn::If": ["WithDeliverVpc", "true", "false"]}
    assert fn["VpcConfig"]["Fn::If"][0] == "WithDeliverVpc"
    for name in ("PrivateSubnetA", "PrivateSubnetB", "NatAddress", "NatGateway", "PrivateRouteTable",
                 "PrivateDefaultRoute", "DeliverSecurityGroup"):
        assert t["Resources"][name]["Condition"] == "WithDeliverVpc", name
    route = t["Resources"]["PrivateDefaultRoute"]["Properties"]
    assert route["NatGatewayId"] == {"Ref": "NatGateway"}
    egress = {(e["IpProtocol"], e["FromPort"]) for e in
              t["Resources"]["DeliverSecurityGroup"]["Properties"]["SecurityGroupEgress"]}
    assert ("tcp", 25) in egress and ("tcp", 443) in egress


def test_the_outbound_queue_dlq_counts_crashes_not_the_retry_schedule(t):
    q = t["Resources"]["OutboundQueue"]["Properties"]
    assert q["RedrivePolicy"]["maxReceiveCount"] <= 5
    policies = t["Resources"]["DeliverFunction"]["Properties"]["Policies"]
    assert {"SQSSendMessagePolicy": {"QueueName": {"Fn::GetAtt": ["OutboundQueue", "QueueName"]}}} in policies


def test_the_transport_refusal_and_the_template_rule_agree():
    from postern.config import Settings
    from postern.transports import TransportUnavailable, make_transport

    with pytest.raises(TransportUnavailable, match="DeliverVpc=true"):
        make_transport(Settings(outbound_transport="mx"), clients=None)
    assert make_transport(Settings(outbound_transport="mx", outbound_vpc=True, mta_sts=False), clients=None).name == "mx"
