"""What IAM authorizes for one request: the (action, resource ARN) pairs it needs.

In:   a parsed :class:`~postern_local.rules.wire.Call`, the region and account.
Out:  :func:`required` -> list of ``(action, resource)``; every pair must be
      allowed (a batch or a transaction needs each of its parts). Sources: the
      Service Authorization Reference ("Actions, resources, and condition keys"
      per service) and the service guides where the mapping is not one to one:
        * SQS: the batch calls are authorized as their single forms
          (``SendMessageBatch`` needs ``sqs:SendMessage``; SQS Developer Guide,
          "Amazon SQS batch actions").
        * DynamoDB: ``TransactWriteItems`` needs ``PutItem``/``UpdateItem``/
          ``DeleteItem``/``ConditionCheckItem`` per item, ``TransactGetItems``
          ``GetItem`` (DynamoDB Developer Guide, "Using IAM with DynamoDB
          transactions"); Query/Scan on an index name the index ARN.
        * S3: operations map onto the S3 permissions (``HeadObject`` and
          ``GetObject`` need ``s3:GetObject``, ``CopyObject`` ``s3:PutObject``
          on the target and ``s3:GetObject`` on the source, listing a bucket
          ``s3:ListBucket`` on the bucket ARN).
        * SES: sending needs ``ses:SendEmail`` (v2, and v1 ``SendEmail``) or
          ``ses:SendRawEmail`` (v1) on the sending identity, and on the
          configuration set when one is named.
        * SNS: a call on a subscription (``Unsubscribe``) is authorized on its topic.
        * ``sts:GetCallerIdentity`` needs no permission.
      A request this module cannot map yields the action ``<svc>:<Operation>``
      on resource ``*``: resource-scoped grants never match it, so an unmapped
      call by a component is refused with a message saying so (add it here).
Fails: never.
"""

from __future__ import annotations

import base64
import binascii
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from email.utils import parseaddr
from xml.etree import ElementTree

from .wire import Call

IAM_PREFIX = {"monitoring": "cloudwatch", "email": "ses"}
NO_PERMISSION_NEEDED = {"sts:GetCallerIdentity"}

_SQS_BATCH = {"SendMessageBatch": "SendMessage", "DeleteMessageBatch": "DeleteMessage",
              "ChangeMessageVisibilityBatch": "ChangeMessageVisibility"}
_DDB_TRANSACT = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                 "ConditionCheck": "ConditionCheckItem", "Get": "GetItem"}
_S3 = {  # operation -> (permission, object-level?)
    "GetObject": ("GetObject", True), "HeadObject": ("GetObject", True), "PutObject": ("PutObject", True),
    "CreateMultipartUpload": ("PutObject", True), "UploadPart": ("PutObject", True),
    "CompleteMultipartUpload": ("PutObject", True), "AbortMultipartUpload": ("AbortMultipartUpload", True),
    "ListParts": ("ListMultipartUploadParts", True), "DeleteObject": ("DeleteObject", True),
    "GetObjectTagging": ("GetObjectTagging", True), "PutObjectTagging": ("PutObjectTagging", True),
    "DeleteObjectTagging": ("DeleteObjectTagging", True), "GetObjectAcl": ("GetObjectAcl", True),
    "PutObjectAcl": ("PutObjectAcl", True),
    "ListObjects": ("ListBucket", False), "ListObjectsV2": ("ListBucket", False), "HeadBucket": ("ListBucket", False),
    "ListObjectVersions": ("ListBucketVersions", False), "ListMultipartUploads": ("ListBucketMultipartUploads", False),
    "CreateBucket": ("CreateBucket", False), "DeleteBucket": ("DeleteBucket", False),
    "GetBucketLifecycleConfiguration": ("GetLifecycleConfiguration", False),
    "PutBucketLifecycleConfiguration": ("PutLifecycleConfiguration", False),
    "DeleteBucketLifecycleConfiguration": ("PutLifecycleConfiguration", False),
    "GetBucketEncryption": ("GetEncryptionConfiguration", False),
    "PutBucketEncryption": ("PutEncryptionConfiguration", False),
    "DeleteBucketEncryption": ("PutEncryptionConfiguration", False),
    "GetBucketOwnershipControls": ("GetBucketOwnershipControls", False),
    "PutBucketOwnershipControls": ("PutBucketOwnershipControls", False),
    "GetPublicAccessBlock": ("GetBucketPublicAccessBlock", False),
    "PutPublicAccessBlock": ("PutBucketPublicAccessBlock", False),
    "GetBucketNotificationConfiguration": ("GetBucketNotification", False),
    "PutBucketNotificationConfiguration": ("PutBucketNotification", False),
}


def iam_prefix(service: str) -> str:
    return IAM_PREFIX.get(service, service)


def required(call: Call, region: str, account: str) -> list[tuple[str, str]]:
    fn = _BY_SERVICE.get(call.service)
    if fn is not None:
        out = fn(call, region, account)
        if out:
            return out
    return [(f"{iam_prefix(call.service)}:{call.operation}", "*")]


# ---------------------------------------------------------------- per service
def _sqs(call: Call, region: str, account: str) -> list[tuple[str, str]]:
    p = call.params
    op = _SQS_BATCH.get(call.operation, call.operation)
    if "QueueUrl" in p:
        name = str(p["QueueUrl"]).rstrip("/").rsplit("/", 1)[-1]
    elif "QueueName" in p:
        name = str(p["QueueName"])
    else:
        name = "*"
    return [(f"sqs:{op}", f"arn:aws:sqs:{region}:{account}:{name}")]


def _dynamodb(call: Call, region: str, account: str) -> list[tuple[str, str]]:
    p = call.params
    table = f"arn:aws:dynamodb:{region}:{account}:table/"
    op = call.operation
    if op in ("BatchGetItem", "BatchWriteItem"):
        return [(f"dynamodb:{op}", table + t) for t in (p.get("RequestItems") or {})]
    if op in ("TransactWriteItems", "TransactGetItems"):
        out = []
        for item in p.get("TransactItems") or []:
            for kind, spec in item.items():
                out.append((f"dynamodb:{_DDB_TRANSACT.get(kind, kind)}", table + str(spec.get("TableName", "*"))))
        return out
    if "TableName" in p:
        arn = table + str(p["TableName"])
        if p.get("IndexName") and op in ("Query", "Scan"):
            arn += f"/index/{p['IndexName']}"
        return [(f"dynamodb:{op}", arn)]
    return []


def _s3(call: Call, region: str, account: str) -> list[tuple[str, str]]:
    p = call.params
    bucket, key = p.get("Bucket", ""), p.get("Key", "")
    op = call.operation
    versioned = "versionId" in call.query
    if op == "ListBuckets":
        return [("s3:ListAllMyBuckets", "*")]
    if op == "CopyObject" or op == "UploadPartCopy":
        src = p.get("CopySource") or "*"
        return [("s3:PutObject", f"arn:aws:s3:::{bucket}/{key}"), ("s3:GetObject", f"arn:aws:s3:::{src}")]
    if op == "DeleteObjects":
        keys = _s3_delete_keys(call.body) or ["*"]
        return [("s3:DeleteObject", f"arn:aws:s3:::{bucket}/{k}") for k in keys]
    spec = _S3.get(op)
    if spec is None:
        return [(f"s3:{op}", f"arn:aws:s3:::{bucket}")]
    perm, on_object = spec
    if versioned and perm in ("GetObject", "DeleteObject", "GetObjectTagging", "GetObjectAcl"):
        perm = perm.replace("Object", "ObjectVersion", 1)
    return [(f"s3:{perm}", f"arn:aws:s3:::{bucket}/{key}" if on_object else f"arn:aws:s3:::{bucket}")]


def _s3_delete_keys(body: bytes) -> list[str]:
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return []
    return [el.text or "" for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Key"]


def _ses(call: Call, region: str, account: str) -> list[tuple[str, str]]:
    p = call.params
    base = f"arn:aws:ses:{region}:{account}:"
    op = call.operation
    if op in ("SendEmail", "SendRawEmail"):
        action = "ses:SendRawEmail" if op == "SendRawEmail" else "ses:SendEmail"
        senders = sending_addresses(call)
        domains = sorted({a.rsplit("@", 1)[-1].lower() for a in senders}) or ["*"]
        out = [(action, f"{base}identity/{d}") for d in domains]
        if p.get("ConfigurationSetName"):
            out.append((action, f"{base}configuration-set/{p['ConfigurationSetName']}"))
        return out
    if "EmailIdentity" in p:
        return [(f"ses:{op}", f"{base}identity/{p['EmailIdentity']}")]
    if "ConfigurationSetName" in p:
        return [(f"ses:{op}", f"{base}configuration-set/{p['ConfigurationSetName']}")]
    return []


def _secretsmanager(call: Call, region: str, account: str) -> list[tuple[str, str]]:
    sid = call.params.get("SecretId") or call.params.get("Name")
    if not sid:
        return []
    arn = sid if str(sid).startswith("arn:") else f"arn:aws:secretsmanager:{region}:{account}:secret:{sid}-local0"
    return [(f"secretsmanager:{call.operation}", arn)]


def _ssm(call: Call, region: str, account: str) -> list[tuple[str, str]]:
    p = call.params
    names = p.get("Names") or ([p["Name"]] if "Name" in p else []) or ([p["Path"]] if "Path" in p else [])
    return [(f"ssm:{call.operation}", f"arn:aws:ssm:{region}:{account}:parameter/{str(n).lstrip('/')}")
            for n in names]


def _sns(call: Call, region: str, account: str) -> list[tuple[str, str]]:
    p = call.params
    arn = p.get("TopicArn") or p.get("TargetArn")
    if not arn and "SubscriptionArn" in p:  # Unsubscribe, Get/SetSubscriptionAttributes: the topic's
        arn = str(p["SubscriptionArn"]).rsplit(":", 1)[0]  # <topic ARN>:<subscription id>
    if not arn and "Name" in p:
        arn = f"arn:aws:sns:{region}:{account}:{p['Name']}"
    return [(f"sns:{call.operation}", arn)] if arn else []


def _route53(call: Call, region: str, account: str) -> list[tuple[str, str]]:
    p = call.params
    if "Id" in p and "Change" in call.operation:
        return [(f"route53:{call.operation}", f"arn:aws:route53:::change/{p['Id']}")]
    if "Id" in p or "HostedZoneId" in p:
        return [(f"route53:{call.operation}", f"arn:aws:route53:::hostedzone/{p.get('Id') or p['HostedZoneId']}")]
    return []


def _kms(call: Call, region: str, account: str) -> list[tuple[str, str]]:
    key = call.params.get("KeyId")
    if not key:
        return []
    arn = key if str(key).startswith("arn:") else f"arn:aws:kms:{region}:{account}:key/{key}"
    return [(f"kms:{call.operation}", arn)]


_BY_SERVICE = {"sqs": _sqs, "dynamodb": _dynamodb, "s3": _s3, "ses": _ses, "secretsmanager": _secretsmanager,
               "ssm": _ssm, "sns": _sns, "route53": _route53, "kms": _kms}


# ---------------------------------------------------------------- SES helpers
def raw_message(call: Call) -> bytes | None:
    """The raw MIME message of an SES send (v2 ``Content.Raw.Data``, v1 ``RawMessage.Data``)."""
    p = call.params
    data = (((p.get("Content") or {}).get("Raw") or {}).get("Data") if isinstance(p.get("Content"), dict)
            else None) or p.get("RawMessage.Data")
    if not data:
        return None
    try:
        return base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError):
        return None


def header_addresses(raw: bytes, *names: str) -> list[str]:
    """Addresses in the named header fields of a raw message (the email package reads them)."""
    msg = BytesHeaderParser(policy=default_policy).parsebytes(raw)
    out = []
    for name in names:
        for value in msg.get_all(name) or []:
            try:
                out += [a.addr_spec for a in value.addresses if a.addr_spec]
            except (AttributeError, IndexError, ValueError):
                continue
    return out


def sending_addresses(call: Call) -> list[str]:
    """Every address SES checks against verified identities for a send: the sending address
    (v2 ``FromEmailAddress``, v1 ``Source``), the ``From:`` and ``Sender:`` fields of a raw
    message, and where bounces go (``FeedbackForwardingEmailAddress``, v1 ``ReturnPath``)."""
    p = call.params
    out = [p[k] for k in ("FromEmailAddress", "Source", "FeedbackForwardingEmailAddress", "ReturnPath") if p.get(k)]
    raw = raw_message(call)
    if raw is not None:
        out += header_addresses(raw, "From", "Sender")
    return [_bare(a) for a in out]


def _bare(address: str) -> str:
    """``"Name" <a@b>`` -> ``a@b`` (SES accepts both forms in FromEmailAddress)."""
    return parseaddr(address)[1] or address.strip()
