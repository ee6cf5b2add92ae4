"""JMAP over the DynamoDB + S3 store (moto), and EmailSubmission into the real spool.

The submitted message lands in the spool bucket and its envelope on the
inbound queue exactly as port 587 writes them (auth_user set, the login
vouching for the sender), and the router's plan relays it.
"""

from __future__ import annotations

from postern import mailboxes
from postern.directory import dynamo_directory
from postern.envelope import Envelope
from postern.jmap import api, session
from postern.jmap.account import Account
from postern.jmap.outbound import submitter
from postern.pipeline.router import plan
from postern.spool import Spooler

USER = "alice@example.test"
USING = [session.CORE, session.MAIL, session.SUBMISSION]
IN = (b"From: Bob <bob@remote.test>\r\nTo: alice@example.test\r\nSubject: lunch?\r\n"
      b"Message-ID: <l1@remote.test>\r\n\r\nAt noon?\r\n")


def test_reply_and_send_over_jmap_on_the_dynamo_store(aws, dynamo_store):
    settings, clients, _ = aws
    d = dynamo_directory(settings, clients)
    d.add_domain("example.test")
    d.add_user(USER, "pw")
    d.add_user("carol@example.test", "pw")
    got = mailboxes.append(dynamo_store, USER, "INBOX", IN)
    acct = Account(USER, dynamo_store, quota=d.quota_of(d.get_user(USER)), senders=frozenset(d.addresses_of(USER)),
                   submit=submitter(Spooler(settings, clients), settings.hostname))
    ident = None

    def run(*calls):
        out = api.handle(acct, {"using": USING, "methodCalls": [list(c) for c in calls]})
        return out["methodResponses"]

    boxes = {m["role"]: m["id"] for m in run(("Mailbox/get", {"accountId": acct.id}, "m"))[0][1]["list"]}
    ident = run(("Identity/get", {"accountId": acct.id}, "i"))[0][1]["list"][0]["id"]
    found = run(("Email/query", {"accountId": acct.id, "filter": {"inMailbox": boxes["inbox"]}}, "q"),
                ("Email/get", {"accountId": acct.id, "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                               "properties": ["messageId", "subject", "from"]}, "g"))
    orig = found[1][1]["list"][0]
    assert orig["id"] == got.email_id and orig["subject"] == "lunch?"
    reply = {"mailboxIds": {boxes["drafts"]: True}, "keywords": {"$draft": True, "$seen": True},
             "from": [{"email": USER}], "to": orig["from"], "cc": [{"email": "carol@example.test"}],
             "subject": "Re: lunch?", "inReplyTo": orig["messageId"], "references": orig["messageId"],
             "textBody": [{"partId": "1"}], "bodyValues": {"1": {"value": "Yes!\n"}}}
    out = run(("Email/set", {"accountId": acct.id, "create": {"r": reply}}, "0"),
              ("EmailSubmission/set", {"accountId": acct.id, "create": {"s": {"identityId": ident, "emailId": "#r"}},
                                       "onSuccessUpdateEmail": {"#s": {f"mailboxIds/{boxes['drafts']}": None,
                                                                       f"mailboxIds/{boxes['sent']}": True,
                                                                       "keywords/$draft": None}}}, "1"))
    assert [r[0] for r in out] == ["Email/set", "EmailSubmission/set", "Email/set"], out
    sent_id = out[0][1]["created"]["r"]["id"]
    assert out[0][1]["created"]["r"]["threadId"] == got.thread_id  # the reply joins the thread
    assert out[2][1]["updated"] == {sent_id: None}
    # the spool: bytes in S3, the envelope on the inbound queue, as port 587 writes them
    msgs = clients.sqs.receive_message(QueueUrl=settings.inbound_queue_url, MaxNumberOfMessages=10)["Messages"]
    (env,) = [Envelope.from_json(m["Body"]) for m in msgs]
    assert env.auth_user == USER and env.mail_from == USER and env.auth.get("submitted") is True
    assert sorted(env.rcpt_to) == ["bob@remote.test", "carol@example.test"]
    assert env.trace_headers.startswith("Received: by ") and "Postern JMAP" in env.trace_headers
    raw = clients.s3.get_object(Bucket=settings.bucket, Key=env.s3_key)["Body"].read()
    assert b"Subject: Re: lunch?" in raw and b"In-Reply-To: <l1@remote.test>" in raw
    decision = plan(env, d)
    assert [j.user for j in decision.store] == ["carol@example.test"] and not decision.decision.failed
    assert {j.domain: list(j.recipients) for j in decision.outbound} == {"remote.test": ["bob@remote.test"]}
    # the Sent copy is where IMAP will find it
    sent = dynamo_store.get_mailbox(USER, "Sent")
    (meta,) = list(dynamo_store.list_messages(sent))
    assert meta.email_id == sent_id and meta.flags == {"\\Seen"}
