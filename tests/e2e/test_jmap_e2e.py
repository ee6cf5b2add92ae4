"""JMAP end to end on the embedded stack: mail in over SMTP through the real Lambdas, read over JMAP;
a reply written and sent over JMAP goes through the spool, the router and the store Lambda, and the
recipient reads it over POP3."""

from __future__ import annotations

import poplib
import smtplib
import uuid

from postern.jmap import api, session
from postern.jmap.account import Account
from postern.jmap.outbound import submitter
from postern.spool import Spooler

USING = [session.CORE, session.MAIL, session.SUBMISSION]


def test_smtp_in_jmap_read_jmap_reply_pop3_out(stack, new_user, new_domain):
    domain = new_domain()
    alice, _ = new_user("alice", domain)
    bob, bob_pw = new_user("bob", domain)
    mid = f"{uuid.uuid4().hex}@origin.example"
    raw = (f"From: Carol <carol@origin.example>\r\nTo: {alice}\r\nSubject: Caf\u00e9 plans\r\n"
           f"Message-ID: <{mid}>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
           "Content-Transfer-Encoding: 8bit\r\n\r\nMeet at the caf\u00e9?\r\n").encode("utf-8")
    with smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=30) as s:
        assert s.sendmail("carol@origin.example", [alice], raw, mail_options=["BODY=8BITMIME"]) == {}
    stack.drain()
    user = stack.directory.get_user(alice)
    acct = Account.for_user(user, stack.store, stack.directory,
                            submit=submitter(Spooler(stack.settings, stack.clients), stack.settings.hostname))

    def run(*calls):
        return api.handle(acct, {"using": USING, "methodCalls": [list(c) for c in calls]})["methodResponses"]

    boxes = {m["role"]: m["id"] for m in run(("Mailbox/get", {"accountId": acct.id}, "m"))[0][1]["list"]}
    res = run(("Email/query", {"accountId": acct.id, "filter": {"inMailbox": boxes["inbox"]}}, "q"),
              ("Email/get", {"accountId": acct.id, "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                             "fetchTextBodyValues": True,
                             "properties": ["subject", "messageId", "textBody", "bodyValues", "from",
                                            "header:Delivered-To:asText"]}, "g"))
    (email,) = res[1][1]["list"]
    assert email["subject"] == "Caf\u00e9 plans" and email["messageId"] == [mid]
    assert email["header:Delivered-To:asText"] == alice  # the store's trace prefix is part of the message
    assert email["bodyValues"][email["textBody"][0]["partId"]]["value"] == "Meet at the caf\u00e9?\n"
    ident = run(("Identity/get", {"accountId": acct.id}, "i"))[0][1]["list"][0]["id"]
    reply = {"mailboxIds": {boxes["drafts"]: True}, "keywords": {"$draft": True}, "from": [{"email": alice}],
             "to": [{"email": bob}], "subject": "Re: Caf\u00e9 plans", "inReplyTo": [mid],
             "textBody": [{"partId": "1"}], "bodyValues": {"1": {"value": "Bob, join us!"}}}
    out = run(("Email/set", {"accountId": acct.id, "create": {"r": reply}}, "0"),
              ("EmailSubmission/set", {"accountId": acct.id, "create": {"s": {"identityId": ident, "emailId": "#r"}},
                                       "onSuccessUpdateEmail": {"#s": {"mailboxIds": {boxes["sent"]: True},
                                                                       "keywords/$draft": None}}}, "1"))
    assert "s" in out[1][1]["created"], out
    stack.drain()
    p = poplib.POP3("127.0.0.1", stack.pop3_port, timeout=30)
    try:
        p.user(bob)
        p.pass_(bob_pw)
        count, _ = p.stat()
        assert count == 1
        got = b"\r\n".join(p.retr(1)[1])
    finally:
        p.quit()
    assert b"Bob, join us!" in got and f"In-Reply-To: <{mid}>".encode() in got
    assert b"Postern JMAP" in got  # the submission's trace line
