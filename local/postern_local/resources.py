"""Create, on moto (or any endpoint), the resources template.yaml declares.

In:   the parsed template and boto3 clients pointed at the local endpoint.
Out:  :func:`create_resources` -> :class:`LocalResources` with the physical
      names/URLs, and ``.environment()``: the POSTERN_* variables a deployed
      stack's Globals would set, so handlers and the gateway find them.
Fails: boto3 errors propagate.

Bucket, queues (with their RedrivePolicy pointing at the DLQ by logical
name), DynamoDB tables (keys, GSIs, TTL, stream) and the change-feed topic are read from the template so
the local stack cannot drift from what deploys.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .template import load_template, resources_of_type

# Which template logical IDs feed which environment variables (the Globals block).
QUEUE_ENV = {
    "InboundQueue": "POSTERN_INBOUND_QUEUE_URL",
    "StoreQueue": "POSTERN_STORE_QUEUE_URL",
    "OutboundQueue": "POSTERN_OUTBOUND_QUEUE_URL",
    "NdrQueue": "POSTERN_NDR_QUEUE_URL",
    "ReportsQueue": "POSTERN_REPORTS_QUEUE_URL",
    # deployed only WithRspamd; locally always: the JMAP function's lessons (postern/junk.py) reach a gateway
    # with rspamd (make run) through it, and without rspamd they wait a day unread (nothing reads the queue)
    "LearnQueue": "POSTERN_LEARN_QUEUE_URL",
}
TABLE_ENV = {
    "DirectoryTable": "POSTERN_DIRECTORY_TABLE",
    "MailTable": "POSTERN_MAIL_TABLE",
    "StateTable": "POSTERN_STATE_TABLE",
}
BUCKET_ENV = {"MailBucket": "POSTERN_BUCKET"}


@dataclass
class LocalResources:
    prefix: str
    buckets: dict[str, str] = field(default_factory=dict)  # logical -> name
    queues: dict[str, str] = field(default_factory=dict)  # logical -> url
    queue_arns: dict[str, str] = field(default_factory=dict)
    tables: dict[str, str] = field(default_factory=dict)  # logical -> name
    topics: dict[str, str] = field(default_factory=dict)  # logical -> ARN
    streams: dict[str, str] = field(default_factory=dict)  # table logical -> its stream's ARN

    def environment(self) -> dict[str, str]:
        env: dict[str, str] = {}
        if "ChangeFeedTopic" in self.topics:  # the gateway's change feed (the task definition's variables)
            env["POSTERN_CHANGE_TOPIC_ARN"] = self.topics["ChangeFeedTopic"]
            env["POSTERN_CHANGE_QUEUE_PREFIX"] = f"{self.prefix}-feed-"  # ${AWS::StackName}-feed-
        for logical, var in QUEUE_ENV.items():
            if logical in self.queues:
                env[var] = self.queues[logical]
        for logical, var in TABLE_ENV.items():
            if logical in self.tables:
                env[var] = self.tables[logical]
        for logical, var in BUCKET_ENV.items():
            if logical in self.buckets:
                env[var] = self.buckets[logical]
        return env


def _name(prefix: str, logical: str) -> str:
    return f"{prefix}-{logical}".lower()


def physical_name(res: LocalResources, logical: str, rtype: str) -> str:
    """The local physical name of a template resource (what CloudFormation would generate):
    the created queue/table/bucket's name, else ``<prefix>-<logical id>`` in lower case."""
    if rtype == "AWS::SQS::Queue" and logical in res.queues:
        return res.queues[logical].rstrip("/").rsplit("/", 1)[-1]
    if rtype == "AWS::DynamoDB::Table" and logical in res.tables:
        return res.tables[logical]
    if rtype == "AWS::S3::Bucket" and logical in res.buckets:
        return res.buckets[logical]
    return _name(res.prefix, logical)


def _resolve_arn(value, res: LocalResources):
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        logical, attr = value["Fn::GetAtt"]
        if attr == "Arn":
            return res.queue_arns[logical]
    return value


def create_resources(session_clients, prefix: str = "postern", template: dict | None = None) -> LocalResources:
    """``session_clients``: object with ``s3``, ``sqs``, ``dynamodb`` boto3 clients."""
    t = template or load_template()
    res = LocalResources(prefix=prefix)
    s3, sqs, ddb = session_clients.s3, session_clients.sqs, session_clients.dynamodb

    for logical, r in resources_of_type(t, "AWS::S3::Bucket").items():
        name = _name(prefix, logical)
        s3.create_bucket(Bucket=name)
        props = r.get("Properties", {})
        if "LifecycleConfiguration" in props:
            rules = []
            for rule in props["LifecycleConfiguration"].get("Rules", []):
                out = {"ID": rule["Id"], "Status": rule["Status"], "Filter": {"Prefix": rule.get("Prefix", "")}}
                if "ExpirationInDays" in rule:
                    days = rule["ExpirationInDays"]
                    if isinstance(days, dict):  # !Ref parameter: use its default
                        days = t["Parameters"][days["Ref"]].get("Default", 14)
                    out["Expiration"] = {"Days": int(days)}
                if "AbortIncompleteMultipartUpload" in rule:
                    out["AbortIncompleteMultipartUpload"] = rule["AbortIncompleteMultipartUpload"]
                if "NoncurrentVersionExpiration" in rule:
                    days = rule["NoncurrentVersionExpiration"]["NoncurrentDays"]
                    if isinstance(days, dict):
                        days = t["Parameters"][days["Ref"]].get("Default", 35)
                    out["NoncurrentVersionExpiration"] = {"NoncurrentDays": int(days)}
                if rule.get("ExpiredObjectDeleteMarker"):
                    out["Expiration"] = {"ExpiredObjectDeleteMarker": True}
                rules.append(out)
            s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={"Rules": rules})
        if props.get("VersioningConfiguration", {}).get("Status") == "Enabled":
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        res.buckets[logical] = name

    queues = resources_of_type(t, "AWS::SQS::Queue")
    # DLQs (queues without a RedrivePolicy) first, so redrive targets exist.
    for logical in sorted(queues, key=lambda k: "RedrivePolicy" in queues[k].get("Properties", {})):
        props = queues[logical].get("Properties", {})
        attrs = {}
        for key in ("VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds", "ReceiveMessageWaitTimeSeconds"):
            if key in props:
                attrs[key] = str(props[key])
        if "RedrivePolicy" in props:
            rp = props["RedrivePolicy"]
            attrs["RedrivePolicy"] = json.dumps(
                {"deadLetterTargetArn": _resolve_arn(rp["deadLetterTargetArn"], res), "maxReceiveCount": int(rp["maxReceiveCount"])}
            )
        url = sqs.create_queue(QueueName=_name(prefix, logical), Attributes=attrs)["QueueUrl"]
        res.queues[logical] = url
        res.queue_arns[logical] = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    for logical, r in resources_of_type(t, "AWS::DynamoDB::Table").items():
        props = r["Properties"]
        name = _name(prefix, logical)
        kwargs = {
            "TableName": name,
            "AttributeDefinitions": props["AttributeDefinitions"],
            "KeySchema": props["KeySchema"],
            "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
        }
        if props.get("GlobalSecondaryIndexes"):
            kwargs["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
        if props.get("StreamSpecification"):
            kwargs["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
        ddb.create_table(**kwargs)
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            ddb.update_time_to_live(
                TableName=name, TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True}
            )
        res.tables[logical] = name
        if props.get("StreamSpecification"):
            res.streams[logical] = ddb.describe_table(TableName=name)["Table"]["LatestStreamArn"]

    sns = getattr(session_clients, "sns", None)
    for logical in resources_of_type(t, "AWS::SNS::Topic"):
        if sns is not None and logical == "ChangeFeedTopic":  # the one topic local code publishes to
            res.topics[logical] = sns.create_topic(Name=_name(prefix, logical))["TopicArn"]
    return res
