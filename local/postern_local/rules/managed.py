"""The AWS managed policies Postern's roles attach, as AWS publishes them.

In:   an ARN ``arn:aws:iam::aws:policy/...`` (any partition).
Out:  :func:`document` -> the policy document, for :mod:`postern_local.rules.roles`.
Fails: KeyError naming the policy for one this table does not hold: the local
      stack stops rather than guess what a managed policy grants. Add the
      document from the AWS Managed Policy Reference
      (docs.aws.amazon.com/aws-managed-policy/latest/reference/<name>.html).

SAM attaches the first three to every function (the basic execution role,
X-Ray because ``Tracing: Active``, the SQS poller role for an SQS event
source, the DynamoDB stream role for a stream event source); ECS attaches the fourth to the gateway's execution role (not used by
the gateway's own code, which runs under the task role).
"""

from __future__ import annotations

_LOGS = ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"]

DOCUMENTS: dict[str, dict] = {
    "service-role/AWSLambdaBasicExecutionRole": {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": _LOGS, "Resource": "*"}],
    },
    "AWSXrayWriteOnlyAccess": {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": [
            "xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules",
            "xray:GetSamplingTargets", "xray:GetSamplingStatisticSummaries"], "Resource": ["*"]}],
    },
    "service-role/AWSLambdaSQSQueueExecutionRole": {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": [
            "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", *_LOGS], "Resource": "*"}],
    },
    "service-role/AWSLambdaDynamoDBExecutionRole": {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": [
            "dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:ListStreams",
            *_LOGS], "Resource": "*"}],
    },
    "service-role/AWSLambdaVPCAccessExecutionRole": {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": [
            *_LOGS, "ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets",
            "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses"],
            "Resource": "*"}],
    },
    "service-role/AmazonECSTaskExecutionRolePolicy": {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": [
            "ecr:GetAuthorizationToken", "ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer",
            "ecr:BatchGetImage", "logs:CreateLogStream", "logs:PutLogEvents"], "Resource": "*"}],
    },
}


def is_aws_managed(arn: str) -> bool:
    return ":iam::aws:policy/" in arn


def document(arn: str) -> dict:
    name = arn.split(":iam::aws:policy/", 1)[1]
    try:
        return DOCUMENTS[name]
    except KeyError:
        raise KeyError(f"AWS managed policy {name!r} is not in postern_local/rules/managed.py: add its document "
                       "from the AWS Managed Policy Reference") from None
