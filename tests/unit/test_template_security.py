"""template.yaml security: encryption at rest, least-privilege IAM, no secrets in parameters, no plaintext auth."""

from __future__ import annotations

import re

import pytest

from postern.config import Settings
from postern_local.template import load_template, resources_of_type

# SAM policy templates Postern uses: each is scoped to one named queue/table/bucket.
SCOPED_SAM_TEMPLATES = {"SQSPollerPolicy", "SQSSendMessagePolicy", "DynamoDBCrudPolicy", "DynamoDBReadPolicy",
                        "SNSPublishMessagePolicy",
                        "S3ReadPolicy", "S3CrudPolicy", "S3WritePolicy", "SESCrudPolicy"}
# Actions IAM gives no resource type: "*" is their only Resource, so this condition key must scope them.
RESOURCELESS = {"cloudwatch:PutMetricData": "cloudwatch:namespace",
                "ec2:DescribeNetworkInterfaces": "ec2:Region"}  # the small profile's task finding its own address


@pytest.fixture(scope="module")
def t():
    return load_template()


def _statements(doc):
    """Every IAM statement in a (possibly Fn::If-wrapped) policy document or statement list."""
    if isinstance(doc, dict) and "Fn::If" in doc:
        for branch in doc["Fn::If"][1:]:
            yield from _statements(branch)
        return
    if isinstance(doc, dict) and "Statement" in doc:
        yield from _statements(doc["Statement"])
        return
    if isinstance(doc, list):
        for s in doc:
            yield from _statements(s)
        return
    if isinstance(doc, dict) and "Effect" in doc:
        yield doc


def _all_statements(t):
    for name, r in t["Resources"].items():
        props = r.get("Properties", {})
        if r["Type"] == "AWS::IAM::Role":
            yield from ((name, s) for p in props.get("Policies", []) for s in _statements(p["PolicyDocument"]))
            yield from ((name, s) for s in _statements(props.get("AssumeRolePolicyDocument", {})))
        elif r["Type"] == "AWS::IAM::ManagedPolicy":
            yield from ((name, s) for s in _statements(props["PolicyDocument"]))
        elif r["Type"] == "AWS::Serverless::Function":
            for p in props.get("Policies", []):
                if isinstance(p, dict) and "Statement" in p:
                    yield from ((name, s) for s in _statements(p))


def test_no_wildcard_actions(t):
    seen = 0
    for name, st in _all_statements(t):
        actions = st.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        for a in actions:
            seen += 1
            assert "*" not in a, f"{name}: wildcard action {a!r}"
        assert st.get("Effect") == "Allow"
        assert "NotAction" not in st and "NotResource" not in st, name
        res = st.get("Resource")
        if res == "*" or res == ["*"]:
            keys = {k for op in (st.get("Condition") or {}).values() for k in op}
            assert actions and all(a in RESOURCELESS and RESOURCELESS[a] in keys for a in actions), \
                f"{name}: statement on every resource"
    assert seen > 10


def test_functions_use_only_scoped_policy_templates(t):
    for name, fn in resources_of_type(t, "AWS::Serverless::Function").items():
        for p in fn["Properties"].get("Policies", []):
            if isinstance(p, dict) and "Fn::If" in p:
                assert p["Fn::If"][1] == {"Ref": "MailKmsPolicy"}, name
                continue
            if isinstance(p, dict) and "Statement" in p:
                continue  # checked by test_no_wildcard_actions
            assert isinstance(p, dict) and len(p) == 1, f"{name}: unexpected policy {p!r}"
            (tmpl,) = p
            assert tmpl in SCOPED_SAM_TEMPLATES, f"{name}: policy template {tmpl} is not in the scoped list"
            assert all(v not in ("*", "") for v in p[tmpl].values()), f"{name}: {tmpl} not scoped"


def test_bucket_encrypted_sse_kms_by_parameter(t):
    assert set(resources_of_type(t, "AWS::S3::Bucket")) == {"MailBucket", "WebAppBucket"}  # the app's: test_template_webmail
    bucket = t["Resources"]["MailBucket"]
    rule = bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    sse = rule["ServerSideEncryptionByDefault"]
    assert sse["SSEAlgorithm"] == {"Fn::If": ["WithKms", "aws:kms", "AES256"]}
    assert sse["KMSMasterKeyID"]["Fn::If"][:2] == ["WithKms", {"Ref": "MailKmsKeyArn"}]
    assert t["Parameters"]["MailKmsKeyArn"]["Default"] == ""
    block = bucket["Properties"]["PublicAccessBlockConfiguration"]
    assert all(block[k] is True for k in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls",
                                          "RestrictPublicBuckets"))
    kms = t["Resources"]["MailKmsPolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    assert kms["Resource"] == {"Ref": "MailKmsKeyArn"} and "kms:ViaService" in kms["Condition"]["StringEquals"]


def test_tables_encrypted_at_rest(t):
    tables = resources_of_type(t, "AWS::DynamoDB::Table")
    assert tables
    for name, tbl in tables.items():
        assert tbl["Properties"]["SSESpecification"]["SSEEnabled"] is True, name


def test_no_secrets_in_parameters(t):
    for name, p in t["Parameters"].items():
        assert not re.search(r"password|passwd|token|privatekey|secret$|secretkey|credential", name, re.I), name
        assert "Default" not in p or not re.search(r"BEGIN .*PRIVATE KEY", str(p["Default"])), name


def test_deployed_gateway_never_allows_plaintext_auth(t):
    assert Settings().allow_plaintext_auth is False
    tasks = resources_of_type(t, "AWS::ECS::TaskDefinition").values()
    assert len(tasks) == 2  # mail-in, mailbox access
    for td in tasks:
        env = {e["Name"]: e["Value"] for e in td["Properties"]["ContainerDefinitions"][0]["Environment"]}
        assert env["POSTERN_ALLOW_PLAINTEXT_AUTH"] == "false"
        assert "POSTERN_TLS_SELF_SIGNED" not in env
    for fn in resources_of_type(t, "AWS::Serverless::Function").values():
        assert "POSTERN_ALLOW_PLAINTEXT_AUTH" not in fn["Properties"].get("Environment", {}).get("Variables", {})
