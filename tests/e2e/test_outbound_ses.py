"""Outbound through the ``ses`` transport on moto (verified identities), end to end through a
local stack of its own: router -> deliver -> SESv2 -> (SES events queue) -> NDR -> the sender's
INBOX. moto sends nothing and publishes no events: the tests read what SES was handed from moto's
backend and put the event SES would publish on the SES events queue themselves.
"""

from __future__ import annotations

import email
import json
import secrets
import uuid
from email import policy

import pytest

from postern import clock
from postern.deliverylog import DeliveryLog
from postern.envelope import Envelope

CONFIG_SET = "postern-test-outbound"


@pytest.fixture(scope="module")
def ses_stack(stack):  # after the session stack: this one nests inside it and gives it back
    from postern_local.stack import LocalStack

    s = LocalStack({"POSTERN_OUTBOUND_TRANSPORT": "ses", "POSTERN_SES_CONFIGURATION_SET": CONFIG_SET},
                   ephemeral_ports=True, background=False, gateway=False).start()
    try:
        yield s
    finally:
        s.stop()


def sent_messages(region: str) -> list:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    return ses_backends[DEFAULT_ACCOUNT_ID][region].sent_messages


def sender(stack) -> str:
    d = f"s{secrets.token_hex(3)}.test"
    stack.directory.add_domain(d)
    stack.clients.sesv2.create_email_identity(EmailIdentity=d)  # verified on moto at once
    user = f"alice@{d}"
    stack.directory.add_user(user, secrets.token_urlsafe(9))
    return user


def inject(stack, mail_from: str, rcpts: list[str]) -> str:
    qid = uuid.uuid4().hex
    # An empty group as To: (as list mail has): moto also counts header addresses towards SES's 50.
    raw = f"From: {mail_from}\r\nTo: undisclosed-recipients:;\r\nSubject: ses {qid}\r\n\r\nhello\r\n".encode()
    key = stack.settings.spool_prefix + qid
    stack.clients.s3.put_object(Bucket=stack.settings.bucket, Key=key, Body=raw)
    env = Envelope(queue_id=qid, mail_from=mail_from, rcpt_to=tuple(rcpts), s3_key=key, size=len(raw),
                   received_at=clock.now(), auth_user=mail_from, trace_headers="Received: from client by test\r\n")
    stack.clients.sqs.send_message(QueueUrl=stack.settings.inbound_queue_url, MessageBody=env.to_json())
    return qid


def reports(stack, user):
    mb = stack.store.get_mailbox(user, "INBOX")
    msgs = [email.message_from_bytes(stack.store.read(m), policy=policy.default) for m in stack.store.list_messages(mb)]
    return [m for m in msgs if m.get_content_type() == "multipart/report"]


def test_sixty_recipients_of_one_domain_go_out_then_an_ses_bounce_reaches_the_sender(ses_stack):
    s = ses_stack
    user = sender(s)
    rcpts = [f"r{i:02d}@remote.test" for i in range(60)]
    before = len(sent_messages(s.settings.region))
    qid = inject(s, user, rcpts)
    s.drain()
    sent = sent_messages(s.settings.region)[before:]
    assert sorted(len(m.destinations) for m in sent) == [10, 50]  # SES: at most 50 per message
    assert sorted(d for m in sent for d in m.destinations) == rcpts
    dlog = DeliveryLog(s.settings, s.clients)
    assert {st.state for st in dlog.states(qid).values()} == {"delivered"}
    sends = [i for i in dlog.history(qid) if i["sk"].startswith("ses#")]
    assert sorted(len(i["recipients"]) for i in sends) == [10, 50]
    first = next(i for i in sends if "r07@remote.test" in i["recipients"])
    # What SES publishes through the configuration set's SNS topic when r07's server says 550 later.
    event = {"eventType": "Bounce",
             "bounce": {"bounceType": "Permanent", "bounceSubType": "General", "timestamp": "2027-01-15T08:00:05Z",
                        "reportingMTA": "dsn; a8-1.smtp-out.amazonses.com",
                        "bouncedRecipients": [{"emailAddress": "r07@remote.test", "action": "failed",
                                               "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1 no such user"}]},
             "mail": {"messageId": first["sk"].split("#", 1)[1], "source": user, "destination": first["recipients"],
                      "tags": {"ses:configuration-set": [CONFIG_SET], "postern-queue-id": [qid]}}}
    s.clients.sqs.send_message(QueueUrl=s.queue_url("SesEventsQueue"), MessageBody=json.dumps(event))
    s.drain()
    (report,) = reports(s, user)
    per_msg, rcpt = report.get_payload()[1].get_payload()
    assert (rcpt["Final-Recipient"], rcpt["Action"], rcpt["Status"]) == ("rfc822; r07@remote.test", "failed", "5.1.1")
    assert rcpt["Diagnostic-Code"] == "smtp; 550 5.1.1 no such user"
    assert dlog.states(qid)["r07@remote.test"].state == "failed"
    assert s.queue_count("SesEventsQueue") == 0 and s.queue_count("SesEventsDLQ") == 0


def test_a_forward_through_ses_arrives_signed_and_sealed(ses_stack):
    """Outside mail to an alias forwarding out, through SES: the sender becomes our SRS address,
    From: the alias (SES sends only from verified identities; the original moves to Reply-To),
    DKIM-signed by the forwarding domain and ARC-sealed with the results our MX recorded."""
    import dkim as dkimpy

    from postern import dkim
    from postern.cli_outbound import domain_dkim
    from postern.mail.header import Header
    from postern.srs import from_settings

    s = ses_stack
    fwd = f"f{secrets.token_hex(3)}.test"
    s.directory.add_domain(fwd)
    s.clients.sesv2.create_email_identity(EmailIdentity=fwd)
    _, keys = domain_dkim(s.settings, s.clients, fwd)
    dns = dkim.dnsfunc_for({k.record_name(fwd): k.txt_record() for k in keys})
    s.directory.add_alias(f"team@{fwd}", ["carol@remote.test"])
    qid = uuid.uuid4().hex
    body = b"From: Jorg Example <jorg@ext.example>\r\nTo: team@" + fwd.encode() + (
        b"\r\nSubject: hello team\r\nMessage-ID: <x1@ext.example>\r\n\r\nline one\r\n.leading dot\r\n")
    key = s.settings.spool_prefix + qid
    s.clients.s3.put_object(Bucket=s.settings.bucket, Key=key, Body=body)
    ar = (f"Authentication-Results: {s.settings.hostname};\r\n\tspf=pass smtp.mailfrom=ext.example;\r\n"
          "\tdkim=pass header.d=ext.example;\r\n\tdmarc=pass header.from=ext.example\r\n")
    env = Envelope(queue_id=qid, mail_from="jorg@ext.example", rcpt_to=(f"team@{fwd}",), s3_key=key,
                   size=len(body), received_at=clock.now(), client_ip="192.0.2.7",
                   trace_headers=ar + "Received: from mx.ext.example by test\r\n")  # as the MX port writes it
    before = len(sent_messages(s.settings.region))
    s.clients.sqs.send_message(QueueUrl=s.settings.inbound_queue_url, MessageBody=env.to_json())
    s.drain()
    (sent,) = sent_messages(s.settings.region)[before:]
    raw = sent.raw_data.encode("utf-8") if isinstance(sent.raw_data, str) else sent.raw_data
    assert sent.destinations == ["carol@remote.test"]
    srs = from_settings(s.settings, s.clients)
    assert sent.source.endswith(f"@{fwd}") and srs.reverse(sent.source) == "jorg@ext.example"
    h = Header(raw)
    assert h.get(b"from") == f'"Jorg Example via {fwd}" <team@{fwd}>'.encode()
    assert h.get(b"reply-to") == b"Jorg Example <jorg@ext.example>"
    assert dkim.header_from_domain(raw) == fwd and dkim.verify_all(raw, dns) == [True]
    cv, _, reason = dkimpy.arc_verify(raw, dnsfunc=dns)
    assert cv == dkimpy.CV_Pass, reason
    assert b"dmarc=pass header.from=ext.example" in h.get(b"arc-authentication-results")
    assert raw.endswith(b"\r\n\r\nline one\r\n.leading dot\r\n")  # the body as received
    assert DeliveryLog(s.settings, s.clients).states(qid)["carol@remote.test"].state == "delivered"


def test_what_ses_refuses_comes_back_as_a_failure_notice_never_a_dlq(ses_stack):
    """README "Deploy", step 9: a domain SES has not verified yet, and while the account is in the
    sandbox a recipient nobody verified, are refused by SES (the rules proxy answers as SES does:
    MessageRejected); the sender gets a 5.7.1 failure notice naming SES's reason, nothing waits in
    a queue or a DLQ."""
    s = ses_stack
    d = f"u{secrets.token_hex(3)}.test"  # a domain of ours SES does not know (yet)
    s.directory.add_domain(d)
    unverified = f"bob@{d}"
    s.directory.add_user(unverified, secrets.token_urlsafe(9))
    verified = sender(s)
    s.proxy.app.ses.sandbox = True
    try:
        first = inject(s, unverified, ["someone@remote.test"])
        second = inject(s, verified, ["friend@remote.test", "bounce@simulator.amazonses.com"])
        s.drain()
    finally:
        s.proxy.app.ses.sandbox = False
    dlog = DeliveryLog(s.settings, s.clients)
    assert dlog.states(first)["someone@remote.test"].state == "failed"
    assert {r: st.state for r, st in dlog.states(second).items()} == {
        "friend@remote.test": "failed", "bounce@simulator.amazonses.com": "delivered"}
    for user, rcpt in ((unverified, "someone@remote.test"), (verified, "friend@remote.test")):
        (report,) = reports(s, user)
        block = report.get_payload()[1].get_payload()[1]
        assert (block["Final-Recipient"], block["Action"], block["Status"]) == (f"rfc822; {rcpt}", "failed", "5.7.1")
        assert "Email address is not verified" in block["Diagnostic-Code"]
    for q in ("OutboundQueue", "OutboundDLQ", "NdrDLQ"):
        assert s.queue_count(q) == 0, q
