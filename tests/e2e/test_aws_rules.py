"""The AWS rules moto skips, refused by the local stack as AWS refuses them (postern_local.rules).

Each test makes the call AWS would refuse through the stack's endpoint (the
rules proxy in front of moto) and expects the error code AWS gives, so code
that handles that error is exercised locally. Where moto alone would have
accepted the call, the test says so: that is the gap the proxy closes.
"""

from __future__ import annotations

import secrets
import uuid

import pytest
from botocore.exceptions import ClientError

HOUR = 3600


def code_of(exc: pytest.ExceptionInfo) -> str:
    return exc.value.response["Error"]["Code"]


@pytest.fixture
def rules(stack):
    return stack.proxy.app


@pytest.fixture
def as_component(stack):
    """``as_component("gateway", "sqs")`` -> a boto3 client signed with that component's role."""

    def make(component: str, service: str):
        return stack.identities.for_component(component).session(stack.settings.region).client(
            service, config=stack.clients.config)

    return make


@pytest.fixture
def small_queue(stack):
    url = stack.clients.sqs.create_queue(QueueName=f"rules-{uuid.uuid4().hex[:8]}",
                                         Attributes={"MaximumMessageSize": "1024"})["QueueUrl"]
    yield url
    stack.clients.sqs.delete_queue(QueueUrl=url)


# ---------------------------------------------------------------- SQS
class FakeMonotonic:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_visibility_is_capped_at_12_hours_from_the_receive(stack, rules, small_queue):
    sqs = stack.clients.sqs
    clock, saved = FakeMonotonic(), rules.sqs.clock
    rules.sqs.clock = clock
    try:
        sqs.send_message(QueueUrl=small_queue, MessageBody="retry me")
        (m,) = sqs.receive_message(QueueUrl=small_queue, VisibilityTimeout=60)["Messages"]
        rh = m["ReceiptHandle"]
        clock.t += 11 * HOUR  # 11 h after the receive: 1 h left
        sqs.change_message_visibility(QueueUrl=small_queue, ReceiptHandle=rh, VisibilityTimeout=HOUR)
        with pytest.raises(ClientError) as exc:
            sqs.change_message_visibility(QueueUrl=small_queue, ReceiptHandle=rh, VisibilityTimeout=HOUR + 1)
        assert code_of(exc) == "InvalidParameterValue"
        assert "Total VisibilityTimeout for the message is beyond the limit [43200 seconds]" in str(exc.value)
        r = sqs.change_message_visibility_batch(QueueUrl=small_queue, Entries=[
            {"Id": "ok", "ReceiptHandle": rh, "VisibilityTimeout": 60},
            {"Id": "late", "ReceiptHandle": rh, "VisibilityTimeout": 2 * HOUR}])
        assert [s["Id"] for s in r["Successful"]] == ["ok"]
        assert [(f["Id"], f["Code"]) for f in r["Failed"]] == [("late", "InvalidParameterValue")]
    finally:
        rules.sqs.clock = saved


def test_visibility_over_12_hours_is_refused_at_once(stack, small_queue):
    sqs = stack.clients.sqs
    sqs.send_message(QueueUrl=small_queue, MessageBody="x")
    (m,) = sqs.receive_message(QueueUrl=small_queue)["Messages"]
    with pytest.raises(ClientError) as exc:
        sqs.change_message_visibility(QueueUrl=small_queue, ReceiptHandle=m["ReceiptHandle"],
                                      VisibilityTimeout=12 * HOUR + 1)
    assert code_of(exc) == "InvalidParameterValue"


def test_message_size_counts_attributes_against_the_queues_maximum(stack, rules, small_queue):
    sqs = stack.clients.sqs
    attrs = {"kind": {"DataType": "String", "StringValue": "x" * 100}}
    sqs.send_message(QueueUrl=small_queue, MessageBody="b" * 900)  # 900 bytes: fits
    with pytest.raises(ClientError) as exc:  # 950 + 4 + 6 + 100 > 1024 (moto counts only the body)
        sqs.send_message(QueueUrl=small_queue, MessageBody="b" * 950, MessageAttributes=attrs)
    assert code_of(exc) == "InvalidParameterValue"
    assert "Message must be shorter than 1024 bytes" in str(exc.value)
    with pytest.raises(ClientError):  # UTF-8 bytes, not characters: 600 x 2 bytes
        sqs.send_message(QueueUrl=small_queue, MessageBody="é" * 600)
    assert rules.refusals[-1].target == "sqs:SendMessage"
    # Binary attributes count decoded (what SQS counts), not as their base64 text: 400 + 1 + 6 + 600 fits.
    sqs.send_message(QueueUrl=small_queue, MessageBody="y" * 400,
                     MessageAttributes={"b": {"DataType": "Binary", "BinaryValue": b"\x00" * 600}})
    with pytest.raises(ClientError):
        sqs.send_message(QueueUrl=small_queue, MessageBody="y" * 400,
                         MessageAttributes={"b": {"DataType": "Binary", "BinaryValue": b"\x00" * 620}})


def test_template_queues_take_at_most_1_mib(stack):
    with pytest.raises(ClientError) as exc:
        stack.clients.sqs.send_message(QueueUrl=stack.queue_url("InboundQueue"), MessageBody="x" * (1024 * 1024 + 1))
    assert code_of(exc) == "InvalidParameterValue"


def test_delay_seconds_at_most_900(stack, small_queue):
    sqs = stack.clients.sqs
    with pytest.raises(ClientError) as exc:
        sqs.send_message(QueueUrl=small_queue, MessageBody="later", DelaySeconds=901)
    assert code_of(exc) == "InvalidParameterValue"
    r = sqs.send_message_batch(QueueUrl=small_queue, Entries=[
        {"Id": "a", "MessageBody": "in 15 min", "DelaySeconds": 900},
        {"Id": "b", "MessageBody": "in 16 min", "DelaySeconds": 960}])
    assert [s["Id"] for s in r["Successful"]] == ["a"]
    assert [(f["Id"], f["Code"], f["SenderFault"]) for f in r["Failed"]] == [("b", "InvalidParameterValue", True)]
    with pytest.raises(ClientError) as exc:
        sqs.set_queue_attributes(QueueUrl=small_queue, Attributes={"DelaySeconds": "1800"})
    assert code_of(exc) == "InvalidAttributeValue"


def test_a_batch_is_at_most_1_mib_in_total(stack):
    entries = [{"Id": str(i), "MessageBody": "x" * (300 * 1024)} for i in range(4)]
    with pytest.raises(ClientError) as exc:
        stack.clients.sqs.send_message_batch(QueueUrl=stack.queue_url("NdrDLQ"), Entries=entries)
    assert code_of(exc) == "BatchRequestTooLong"


def test_the_receive_ledger_forgets_deleted_messages(stack, rules, small_queue):
    sqs = stack.clients.sqs
    sqs.send_message(QueueUrl=small_queue, MessageBody="x")
    before = rules.sqs.ledger_size
    (m,) = sqs.receive_message(QueueUrl=small_queue)["Messages"]
    assert rules.sqs.ledger_size == before + 1
    sqs.delete_message(QueueUrl=small_queue, ReceiptHandle=m["ReceiptHandle"])
    assert rules.sqs.ledger_size == before


# ---------------------------------------------------------------- SES
def _raw(sender: str, rcpts: list[str], extra: str = "") -> bytes:
    return (f"From: {sender}\r\nTo: {', '.join(rcpts)}\r\nSubject: rules\r\n{extra}\r\nhello\r\n").encode()


@pytest.fixture
def ses_domain(stack):
    d = f"ses-{secrets.token_hex(3)}.test"
    stack.clients.sesv2.create_email_identity(EmailIdentity=d)
    return d


def _send(stack, sender, rcpts, raw=None, **kw):
    return stack.clients.sesv2.send_email(FromEmailAddress=sender, Destination={"ToAddresses": rcpts},
                                          Content={"Raw": {"Data": raw or _raw(sender, rcpts)}}, **kw)


def test_ses_sends_from_a_verified_domain_and_its_subdomains(stack, ses_domain):
    assert _send(stack, f"a@{ses_domain}", ["x@remote.test"])["MessageId"]
    assert _send(stack, f"bounces@mail.{ses_domain}", ["x@remote.test"])["MessageId"]


def test_ses_checks_the_from_field_not_only_the_sending_address(stack, rules, ses_domain):
    # moto accepts this: FromEmailAddress is verified, the From: field (the forwarded author) is not.
    raw = _raw("author@elsewhere.test", ["x@remote.test"])
    with pytest.raises(ClientError) as exc:
        _send(stack, f"fwd@{ses_domain}", ["x@remote.test"], raw=raw)
    assert code_of(exc) == "MessageRejected"
    assert "author@elsewhere.test" in str(exc.value) and "Email address is not verified" in str(exc.value)
    with pytest.raises(ClientError) as exc:
        _send(stack, "someone@unverified.test", ["x@remote.test"])
    assert code_of(exc) == "MessageRejected"


def test_ses_at_most_50_recipients(stack, ses_domain):
    rcpts = [f"r{i}@remote.test" for i in range(51)]
    assert _send(stack, f"a@{ses_domain}", rcpts[:50])["MessageId"]
    with pytest.raises(ClientError) as exc:
        _send(stack, f"a@{ses_domain}", rcpts)
    assert code_of(exc) == "BadRequestException" and "Recipient count exceeds 50" in str(exc.value)


def test_ses_sandbox_sends_only_to_verified_recipients(stack, rules, ses_domain):
    rules.ses.sandbox = True
    try:
        with pytest.raises(ClientError) as exc:
            _send(stack, f"a@{ses_domain}", ["stranger@remote.test"])
        assert code_of(exc) == "MessageRejected" and "stranger@remote.test" in str(exc.value)
        assert _send(stack, f"a@{ses_domain}", [f"colleague@{ses_domain}"])["MessageId"]
        assert _send(stack, f"a@{ses_domain}", ["success@simulator.amazonses.com"])["MessageId"]
    finally:
        rules.ses.sandbox = False


def test_ses_refuses_lines_over_1000_characters_and_utf8_local_parts(stack, ses_domain):
    sender = f"a@{ses_domain}"
    with pytest.raises(ClientError) as exc:
        _send(stack, sender, ["x@remote.test"], raw=_raw(sender, ["x@remote.test"], f"X-Long: {'y' * 1000}\r\n"))
    assert code_of(exc) == "MessageRejected"
    with pytest.raises(ClientError) as exc:
        _send(stack, sender, ["jürgen@remote.test"])
    assert code_of(exc) == "BadRequestException"


# ---------------------------------------------------------------- DynamoDB
def test_item_at_most_400_kb(stack, rules):
    ddb = stack.clients.dynamodb
    table = stack.settings.state_table
    item = {"pk": {"S": "rules-test"}, "sk": {"S": "big"}, "v": {"B": b"x" * (400 * 1024)}}
    with pytest.raises(ClientError) as exc:
        ddb.put_item(TableName=table, Item=item)
    assert code_of(exc) == "ValidationException" and "Item size has exceeded" in str(exc.value)
    assert rules.refusals[-1].target == "dynamodb:PutItem"  # the proxy said it, before moto
    with pytest.raises(ClientError) as exc:
        ddb.transact_write_items(TransactItems=[{"Put": {"TableName": table, "Item": item}}])
    assert code_of(exc) == "ValidationException"


def test_transactions_at_most_100_actions_and_4_mb(stack):
    ddb = stack.clients.dynamodb
    table = stack.settings.state_table
    with pytest.raises(ClientError) as exc:
        ddb.transact_write_items(TransactItems=[
            {"Put": {"TableName": table, "Item": {"pk": {"S": "rules-tx"}, "sk": {"S": str(i)}}}} for i in range(101)])
    assert code_of(exc) == "ValidationException"
    blob = {"B": b"z" * (380 * 1024)}  # 12 items of 380 KB: each fits, together 4.5 MB (moto accepts)
    with pytest.raises(ClientError) as exc:
        ddb.transact_write_items(TransactItems=[
            {"Put": {"TableName": table, "Item": {"pk": {"S": "rules-tx"}, "sk": {"S": str(i)}, "v": blob}}}
            for i in range(12)])
    assert code_of(exc) == "ValidationException" and "4 MB" in str(exc.value)


# ---------------------------------------------------------------- IAM
def test_the_gateway_may_only_do_what_its_task_role_allows(stack, rules, as_component):
    sqs = as_component("gateway", "sqs")
    sqs.send_message(QueueUrl=stack.queue_url("InboundQueue"), MessageBody="{}")  # allowed: spooling
    stack.clients.sqs.purge_queue(QueueUrl=stack.queue_url("InboundQueue"))
    with pytest.raises(ClientError) as exc:
        sqs.send_message(QueueUrl=stack.queue_url("StoreQueue"), MessageBody="{}")
    assert code_of(exc) == "AccessDenied"
    assert "assumed-role/" in str(exc.value) and "sqs:SendMessage" in str(exc.value)
    assert rules.refusals[-1].component == "gateway"
    with pytest.raises(ClientError) as exc:
        sqs.receive_message(QueueUrl=stack.queue_url("InboundQueue"))
    assert code_of(exc) == "AccessDenied"
    s3 = as_component("gateway", "s3")
    with pytest.raises(ClientError) as exc:
        s3.list_objects_v2(Bucket=stack.settings.bucket)
    assert code_of(exc) == "AccessDenied"


def test_a_function_role_cannot_reach_another_functions_resources(stack, as_component):
    ddb = as_component("RouterFunction", "dynamodb")  # DynamoDBReadPolicy on the directory table only
    ddb.get_item(TableName=stack.settings.directory_table, Key={"pk": {"S": "DOMAINS"}, "sk": {"S": "x"}})
    with pytest.raises(ClientError) as exc:
        ddb.put_item(TableName=stack.settings.mail_table, Item={"pk": {"S": "x"}, "sk": {"S": "y"}})
    assert code_of(exc) == "AccessDeniedException"
    with pytest.raises(ClientError) as exc:
        ddb.put_item(TableName=stack.settings.directory_table, Item={"pk": {"S": "x"}, "sk": {"S": "y"}})
    assert code_of(exc) == "AccessDeniedException"


def test_an_unknown_key_is_refused(stack):
    import boto3

    s = boto3.session.Session(aws_access_key_id="ASIANOTAKEYOFOURS00", aws_secret_access_key="x",
                              region_name=stack.settings.region)
    with pytest.raises(ClientError) as exc:
        s.client("sqs").get_queue_attributes(QueueUrl=stack.queue_url("InboundQueue"))
    assert code_of(exc) == "InvalidClientTokenId"
    with pytest.raises(ClientError) as exc:
        s.client("dynamodb").describe_table(TableName=stack.settings.mail_table)
    assert code_of(exc) == "UnrecognizedClientException"


def test_acm_at_most_10_names_a_short_first_name_and_dns_names_only(stack):
    """What ACM refuses and moto takes (rules/acm.py); the wildcards postern.webcert asks for pass."""
    from postern import webcert

    acm = stack.clients.client("acm")
    stack_name = f"s{secrets.token_hex(4)}"
    names = [f"*.d{i}-{stack_name}.test" for i in range(11)]
    with pytest.raises(ClientError) as e:
        acm.request_certificate(DomainName=names[0], SubjectAlternativeNames=names, ValidationMethod="DNS")
    assert code_of(e) == "LimitExceededException"
    with pytest.raises(ClientError) as e:
        acm.request_certificate(DomainName="webmail." + "x" * 50 + ".example.test", ValidationMethod="DNS")
    assert code_of(e) == "ValidationException"
    for bad in ("-bad.example.test", "*.*.example.test", "example"):
        with pytest.raises(ClientError) as e:
            acm.request_certificate(DomainName=bad, ValidationMethod="DNS")
        assert code_of(e) == "InvalidDomainValidationOptionsException", bad
    cert, requested = webcert.ensure(acm, stack_name, [n[2:] for n in names[:10]])  # ten domains: the quota
    assert requested and len(cert.names) == 10 and cert.status == "PENDING_VALIDATION"
