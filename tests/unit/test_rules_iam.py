"""The local stack's IAM model (postern_local.rules): roles from template.yaml through
aws-sam-translator, policy evaluation, and the permissions each request needs."""

from __future__ import annotations

import copy
import json

import pytest

from postern_local.resources import LocalResources, physical_name
from postern_local.rules.actions import required
from postern_local.rules.policy import Policy
from postern_local.rules.roles import load_roles, paper_only
from postern_local.rules.wire import Call
from postern_local.template import load_template

R, A = "us-east-1", "123456789012"
PARAMS = {"MailDomain": "example.test", "GatewayHostname": "mail.example.test", "GatewayImage": "x"}


def roles_of(template):
    res = LocalResources(prefix="p")
    return load_roles(template, lambda logical, rtype: physical_name(res, logical, rtype), R, "p", PARAMS)


@pytest.fixture(scope="module")
def roles():
    return roles_of(load_template())


def arn(kind: str, name: str) -> str:
    return {"sqs": f"arn:aws:sqs:{R}:{A}:{name}", "table": f"arn:aws:dynamodb:{R}:{A}:table/{name}",
            "s3": f"arn:aws:s3:::{name}"}[kind]


def call(service: str, op: str, **params) -> Call:
    return Call(service=service, operation=op, protocol="json", access_key="k", region=R, method="POST", path="/",
                query={}, headers={}, body=b"", params=params)


def test_every_component_has_the_role_the_template_gives_it(roles):
    expected = {"RouterFunction": "RouterFunctionRole", "StoreFunction": "StoreFunctionRole",
                "DeliverFunction": "DeliverFunctionRole", "NdrFunction": "NdrFunctionRole", "gateway": "GatewayTaskRole"}
    assert expected.items() <= roles.by_component.items()
    functions = {k for k, r in load_template()["Resources"].items() if r["Type"] == "AWS::Serverless::Function"}
    assert functions <= set(roles.by_component)  # every function, present and future, signs with a role


def test_sam_policy_templates_are_expanded(roles):
    router = roles.for_component("RouterFunction").policy
    assert router.decide("sqs:SendMessage", arn("sqs", "p-storequeue"))  # SQSSendMessagePolicy: SendMessage*
    assert router.decide("dynamodb:Query", arn("table", "p-directorytable"))  # DynamoDBReadPolicy
    assert not router.decide("dynamodb:PutItem", arn("table", "p-directorytable"))
    assert not router.decide("dynamodb:GetItem", arn("table", "p-mailtable"))
    # SAM adds AWSLambdaSQSQueueExecutionRole for the SQS event source: receive/delete on any queue.
    assert router.decide("sqs:DeleteMessage", arn("sqs", "p-ndrqueue"))
    assert not router.decide("sqs:ChangeMessageVisibility", arn("sqs", "p-ndrqueue"))
    store = roles.for_component("StoreFunction").policy
    assert store.decide("s3:PutObject", arn("s3", "p-mailbucket") + "/spool/x")  # S3CrudPolicy
    assert not store.decide("s3:PutObject", arn("s3", "other-bucket") + "/x")


def test_gateway_task_role(roles):
    gw = roles.for_component("gateway").policy
    assert gw.decide("sqs:SendMessage", arn("sqs", "p-inboundqueue"))
    assert not gw.decide("sqs:SendMessage", arn("sqs", "p-storequeue"))
    assert gw.decide("dynamodb:Query", arn("table", "p-mailtable"))  # the change log: no index to grant
    assert gw.decide("dynamodb:BatchWriteItem", arn("table", "p-mailtable"))
    assert not gw.decide("dynamodb:Query", arn("table", "p-mailtable") + "/index/bymodseq")
    assert gw.decide("secretsmanager:GetSecretValue", f"arn:aws:secretsmanager:{R}:{A}:secret:postern/tls-local0")
    assert not gw.decide("secretsmanager:GetSecretValue", f"arn:aws:secretsmanager:{R}:{A}:secret:other-local0")


def test_evaluation_explicit_deny_wins_and_wildcards():
    p = Policy.from_documents([("t", {"Statement": [
        {"Effect": "Allow", "Action": "s3:Get*", "Resource": "arn:aws:s3:::b/*"},
        {"Effect": "Deny", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/secret/*"},
        {"Effect": "Allow", "NotAction": "sqs:*", "Resource": "arn:aws:sns:*:*:t?"},
    ]})])
    assert p.decide("S3:GETOBJECT", "arn:aws:s3:::b/x")  # actions are case-insensitive
    assert not p.decide("s3:GetObject", "arn:aws:s3:::B/x")  # resources are not
    d = p.decide("s3:GetObject", "arn:aws:s3:::b/secret/k")
    assert not d and d.denied_by is not None
    assert p.decide("sns:Publish", "arn:aws:sns:us-east-1:1:t1")
    assert not p.decide("sns:Publish", "arn:aws:sns:us-east-1:1:t12")
    assert not p.decide("sqs:SendMessage", "arn:aws:sns:us-east-1:1:t1")
    with pytest.raises(ValueError):
        Policy.from_documents([("bad", {"Statement": [{"Action": "s3:*"}]})])


def test_required_permissions_per_request():
    q = f"http://127.0.0.1:1/{A}/p-storequeue"
    assert required(call("sqs", "SendMessageBatch", QueueUrl=q), R, A) == [("sqs:SendMessage", arn("sqs", "p-storequeue"))]
    tx = call("dynamodb", "TransactWriteItems", TransactItems=[
        {"Put": {"TableName": "t1"}}, {"Update": {"TableName": "t2"}}, {"ConditionCheck": {"TableName": "t1"}}])
    assert required(tx, R, A) == [("dynamodb:PutItem", arn("table", "t1")), ("dynamodb:UpdateItem", arn("table", "t2")),
                                  ("dynamodb:ConditionCheckItem", arn("table", "t1"))]
    assert required(call("dynamodb", "Query", TableName="t", IndexName="i"), R, A) == [
        ("dynamodb:Query", arn("table", "t") + "/index/i")]
    head = Call("s3", "HeadObject", "rest-xml", "k", R, "HEAD", "/b/k", {}, {}, b"", {"Bucket": "b", "Key": "k"})
    assert required(head, R, A) == [("s3:GetObject", "arn:aws:s3:::b/k")]
    assert required(call("ec2", "DescribeThings"), R, A) == [("ec2:DescribeThings", "*")]


def test_removing_a_policy_from_the_template_removes_the_grant():
    t = copy.deepcopy(load_template())
    policies = t["Resources"]["RouterFunction"]["Properties"]["Policies"]
    t["Resources"]["RouterFunction"]["Properties"]["Policies"] = [
        p for p in policies if "StoreQueue" not in json.dumps(p)]
    router = roles_of(t).for_component("RouterFunction").policy
    assert not router.decide("sqs:SendMessage", arn("sqs", "p-storequeue"))
    assert router.decide("sqs:SendMessage", arn("sqs", "p-outboundqueue"))


def test_paper_only_lists_conditions_and_inactive_grants(roles):
    lines = paper_only(roles)
    assert any("MailKmsPolicy" in line and "WithKms" in line for line in lines)
    assert any(line.startswith("trust policy of GatewayTaskRole") for line in lines)
    # grants an Fn::If leaves out locally (no HostedZoneId: the ACME ones), with their conditions
    acme = [line for line in lines if line.startswith("CertFunctionRole") and "route53:ChangeResourceRecordSets" in line]
    assert len(acme) == 1 and "WithAcme is true" in acme[0] and "_acme-challenge" in acme[0]
    assert any("GatewayTaskRole" in line and "s3:GetObject only when WithTlsS3" in line for line in lines)
    # a role no local component signs with (ECS's own) is on paper only as a whole
    assert any(line.startswith("grants of GatewayExecutionRole") for line in lines)
    assert not any(line.startswith("grants of") and "GatewayTaskRole" in line for line in lines)


def test_cert_function_keeps_its_acme_account_key_in_one_parameter_and_nothing_else():
    """The ACME account key is an SSM SecureString the function creates, reads and deletes (docs/cost.md:
    a secret was $0.40 a month); its role may touch that one parameter, and no secret but the certificate's."""
    roles = load_roles(load_template(), lambda logical, rtype: physical_name(LocalResources(prefix="p"), logical, rtype),
                       R, "p", {**PARAMS, "HostedZoneId": "Z0EXAMPLE"})
    cert = roles.for_component("CertFunction").policy
    name = "/postern-acme/p/account-local"  # the template's /postern-acme/${AWS::StackName}/account-<stack id part>
    for op in ("GetParameter", "PutParameter", "DeleteParameter"):
        ((action, resource),) = required(call("ssm", op, Name=name), R, A)
        assert cert.decide(action, resource), op
        ((action, resource),) = required(call("ssm", op, Name="/postern-acme/other/account-local"), R, A)
        assert not cert.decide(action, resource), op
    assert not cert.decide("ssm:GetParametersByPath", f"arn:aws:ssm:{R}:{A}:parameter/postern-acme/p")
    # and no other role reads it: the DKIM readers' grant is /postern/dkim/*, a stack may be called "dkim"
    for component in roles.by_component:
        if component != "CertFunction":
            assert not roles.for_component(component).policy.decide(
                "ssm:GetParameter", f"arn:aws:ssm:{R}:{A}:parameter/postern-acme/dkim/account-local"), component
    secrets = {r for s in cert.statements for a in s.actions if a.startswith("secretsmanager:") for r in s.resources}
    assert secrets == {f"arn:aws:secretsmanager:{R}:{A}:secret:p-tlscertificatesecret"}
