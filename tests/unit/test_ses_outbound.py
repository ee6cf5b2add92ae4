"""The ses transport's request shape (chunks of 50, configuration set, queue-id tag), SES
events -> notices, and the SES identity of a domain (``postern domain add``/``domain ses``)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber
from wire_sink import HttpSink

from postern.config import Settings
from postern.pipeline import sesevents
from postern.sesidentity import ensure_identity, format_records
from postern.transports.base import SendRequest
from postern.transports.ses import MAX_DESTINATIONS, SesTransport, ses_message_id

REPO = Path(__file__).resolve().parents[2]
MSG = b"From: alice@example.test\r\nSubject: many\r\n\r\nhi\r\n"


class _Clients:
    def __init__(self, url: str | None = None):
        kw = {"endpoint_url": url} if url else {}
        self.sesv2 = boto3.client("sesv2", region_name="us-east-1", aws_access_key_id="testing",
                                  aws_secret_access_key="testing", **kw)


def test_sixty_recipients_go_out_in_chunks_of_fifty_with_tag_and_configuration_set():
    rcpts = tuple(f"r{i}@remote.test" for i in range(60))
    settings = Settings(ses_configuration_set="postern-outbound")
    with HttpSink() as sink:
        results = SesTransport(settings, _Clients(sink.url)).send(
            SendRequest("alice@example.test", rcpts, MSG, "remote.test", "0190abc"))
    assert [r.recipient for r in results] == list(rcpts) and all(r.ok for r in results)
    calls = [json.loads(b) for b in sink.bodies]
    assert [len(c["Destination"]["ToAddresses"]) for c in calls] == [MAX_DESTINATIONS, 10]
    for c in calls:
        assert c["ConfigurationSetName"] == "postern-outbound" and c["FromEmailAddress"] == "alice@example.test"
        assert c["EmailTags"] == [{"Name": "postern-queue-id", "Value": "0190abc"}]
        assert base64.b64decode(c["Content"]["Raw"]["Data"]) == MSG
    assert ses_message_id(results[0]) == "sink-0001"


def test_a_queue_id_outside_the_tag_alphabet_is_not_sent_as_a_tag():
    with HttpSink() as sink:
        SesTransport(Settings(), _Clients(sink.url)).send(SendRequest("a@example.test", ("b@r.test",), MSG, "r.test",
                                                                      "has.dots"))
    assert "EmailTags" not in json.loads(sink.bodies[0]) and "ConfigurationSetName" not in json.loads(sink.bodies[0])


def _bounce(**over) -> dict:
    body = json.loads(json.loads((REPO / "events/ndr/ses-bounce.json").read_text())["Records"][0]["body"])
    body.update(over)
    return body


def test_parse_bounce_delay_complaint_and_the_sns_envelope():
    ev = sesevents.parse(json.dumps(_bounce()))
    assert (ev.event_type, ev.queue_id, ev.detail, ev.reporting_mta) == (
        "Bounce", "0190000000000bbbb0003", "Permanent/General", "a8-1.smtp-out.amazonses.com")
    (r,) = ev.recipients
    assert (r.address, r.status) == ("dave@example.net", "5.1.1") and r.diagnostic.startswith("smtp; 550 5.1.1")
    wrapped = json.dumps({"Type": "Notification", "MessageId": "x", "Message": json.dumps(_bounce())})
    assert sesevents.parse(wrapped) == ev
    delay = _bounce(eventType="DeliveryDelay", deliveryDelay={
        "delayType": "MailboxFull", "expirationTime": "2027-01-16T08:00:00Z", "timestamp": "2027-01-15T09:00:00Z",
        "delayedRecipients": [{"emailAddress": "dave@example.net", "status": "4.2.2",
                               "diagnosticCode": "452 4.2.2 mailbox full"}]})
    d = sesevents.parse(json.dumps(delay))
    assert (d.event_type, d.detail, d.recipients[0].status) == ("DeliveryDelay", "MailboxFull", "4.2.2")
    sent = {"recipients": ["dave@example.net"], "original_recipients": ["team@example.test"], "s3_key": "spool/q",
            "mail_from": "alice@example.test", "received_at": 1.0}
    n = sesevents.notice_for(d, sent, 5.0)
    (f,) = n.failures()
    assert (n.kind, f.action, f.status, f.diagnostic, f.original_recipient) == (
        "delayed", "delayed", "4.2.2", "smtp; 452 4.2.2 mailbox full", "team@example.test")
    complaint = _bounce(eventType="Complaint", complaint={"complainedRecipients": [{"emailAddress": "dave@example.net"}],
                                                          "complaintFeedbackType": "abuse"})
    assert sesevents.notice_for(sesevents.parse(json.dumps(complaint)), sent, 5.0) is None


@pytest.mark.parametrize("body", ["not json", "[]", json.dumps({"eventType": "Send", "mail": {"messageId": "m"}}),
                                  json.dumps({"eventType": "Bounce"})])
def test_what_is_not_a_subscribed_ses_event_is_poison(body):
    from postern.envelope import EnvelopeError

    with pytest.raises(EnvelopeError):
        sesevents.parse(body)


def test_a_recipient_the_send_did_not_go_to_is_not_reported():
    ev = sesevents.parse(json.dumps(_bounce()))
    assert sesevents.notice_for(ev, {"recipients": ["someone@else.test"], "original_recipients": [""]}, 1.0) is None


def test_domain_identity_creates_dkim_mail_from_and_feedback_off_and_prints_records():
    clients = _Clients()
    settings = Settings(ses_configuration_set="postern-outbound", region="eu-west-1")
    with Stubber(clients.sesv2) as stub:
        stub.add_response("create_email_identity", {"IdentityType": "DOMAIN", "VerifiedForSendingStatus": False,
                                                    "DkimAttributes": {"Tokens": ["t1", "t2", "t3"]}},
                          {"EmailIdentity": "new.example", "ConfigurationSetName": "postern-outbound",
                           "DkimSigningAttributes": {"NextSigningKeyLength": "RSA_2048_BIT"}})
        stub.add_response("put_email_identity_mail_from_attributes", {},
                          {"EmailIdentity": "new.example", "MailFromDomain": "bounce.new.example",
                           "BehaviorOnMxFailure": "USE_DEFAULT_VALUE"})
        stub.add_response("put_email_identity_feedback_attributes", {},
                          {"EmailIdentity": "new.example", "EmailForwardingEnabled": False})
        recs = ensure_identity(settings, clients, "New.Example")
        stub.assert_no_pending_responses()
    text = format_records("new.example", recs)
    assert "t1._domainkey.new.example. 3600 IN CNAME t1.dkim.amazonses.com." in text
    assert "bounce.new.example. 3600 IN MX 10 feedback-smtp.eu-west-1.amazonses.com." in text
    assert 'bounce.new.example. 3600 IN TXT "v=spf1 include:amazonses.com ~all"' in text


def test_an_existing_identity_is_read_not_recreated():
    clients = _Clients()
    with Stubber(clients.sesv2) as stub:
        stub.add_client_error("create_email_identity", "AlreadyExistsException", "exists")
        stub.add_response("get_email_identity", {"DkimAttributes": {"Tokens": ["a", "b", "c"]}},
                          {"EmailIdentity": "old.example"})
        stub.add_response("put_email_identity_mail_from_attributes", {})
        recs = ensure_identity(Settings(), clients, "old.example")
    assert [r.type for r in recs] == ["CNAME", "CNAME", "CNAME", "MX", "TXT"]
