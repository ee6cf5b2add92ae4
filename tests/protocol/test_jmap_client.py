"""JMAP with a real client library (jmapc) over HTTPS on loopback: log in, list mailboxes, query and
read a delivered message, set keywords, move, destroy, write a draft and send it."""

from __future__ import annotations

import pytest
from jmapc import Client, EmailQueryFilterCondition, MailboxQueryFilterCondition, Ref
from jmapc.methods import (
    EmailChanges,
    EmailGet,
    EmailQuery,
    EmailSet,
    EmailSubmissionSet,
    IdentityGet,
    MailboxGet,
    MailboxQuery,
    ThreadGet,
)
from jmapc.models import Email, EmailSubmission

from postern import mailboxes
from postern.directory import memory_directory
from postern.store import memory_store

from jmap_http import JmapHttps

USER, PW = "alice@example.test", "secret-pw"
MSG = (b"From: Bob <bob@remote.test>\r\nTo: alice@example.test\r\nSubject: Quarterly numbers\r\n"
       b"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <q1@remote.test>\r\n\r\nThey look good.\r\n")


@pytest.fixture
def front(tmp_path):
    store, directory = memory_store(), memory_directory()
    directory.add_domain("example.test")
    directory.add_user(USER, PW)
    sent: list = []

    def submit(user, mail_from, rcpts, raw):
        sent.append((mail_from, rcpts, raw))
        return f"q{len(sent)}"

    with JmapHttps(store, directory, tmp_path, submit=submit) as srv:
        srv.sent = sent
        yield srv


def client(front, password=PW) -> Client:
    c = Client.create_with_password(host=front.host, user=USER, password=password)
    c.requests_session.verify = front.ca_file
    c.requests_session.trust_env = False  # a REQUESTS_CA_BUNDLE in the environment would win over verify
    return c


def test_jmapc_reads_sets_moves_destroys_and_sends(front):
    got = mailboxes.append(front.store, USER, "INBOX", MSG)  # the store Lambda's ingest path
    c = client(front)
    assert c.account_id and c.jmap_session.username == USER
    # mailboxes: query by role, get by reference
    res = c.request([MailboxQuery(filter=MailboxQueryFilterCondition(role="inbox")),
                     MailboxGet(ids=Ref("/ids"))])
    inbox = res[1].response.data[0]
    assert (inbox.name, inbox.role, inbox.total_emails, inbox.unread_emails) == ("INBOX", "inbox", 1, 1)
    boxes = {m.role: m.id for m in c.request(MailboxGet(ids=None)).data}
    # the delivered message: query + get through a result reference
    res = c.request([EmailQuery(filter=EmailQueryFilterCondition(in_mailbox=inbox.id, text="quarterly")),
                     EmailGet(ids=Ref("/ids"), properties=["subject", "from", "preview", "threadId", "receivedAt"])])
    (email,) = res[1].response.data
    assert email.id == got.email_id and email.subject == "Quarterly numbers"
    assert email.mail_from[0].email == "bob@remote.test" and email.preview == "They look good."
    state = res[1].response.state
    thread = c.request(ThreadGet(ids=[email.thread_id])).data[0]
    assert thread.email_ids == [email.id]
    # keywords, then a move: Email/changes reports both
    c.request(EmailSet(update={email.id: {"keywords/$seen": True, "keywords/$flagged": True}}))
    c.request(EmailSet(update={email.id: {"mailboxIds": {boxes["archive"]: True}}}))
    changes = c.request(EmailChanges(since_state=state))
    assert changes.updated == [email.id] and changes.created == [] and changes.destroyed == []
    back = c.request(EmailGet(ids=[email.id], properties=["keywords", "mailboxIds"])).data[0]
    assert back.keywords == {"$seen": True, "$flagged": True} and back.mailbox_ids == {boxes["archive"]: True}
    meta = next(iter(front.store.list_messages(front.store.get_mailbox(USER, "Archive"))))
    assert meta.flags == {"\\Seen", "\\Flagged"}  # what IMAP FETCH FLAGS shows
    # a draft, sent with EmailSubmission, filed in Sent
    ident = c.request(IdentityGet()).data[0]
    draft = Email(mail_from=None, to=None, subject="Re: Quarterly numbers", keywords={"$draft": True},
                  mailbox_ids={boxes["drafts"]: True})
    draft_obj = {**draft.to_dict(), "from": [{"email": USER}], "to": [{"email": "bob@remote.test"}],
                 "textBody": [{"partId": "t"}], "bodyValues": {"t": {"value": "Thanks!"}}}
    res = c.request([EmailSet(create={"d": draft_obj}),
                     EmailSubmissionSet(create={"s": EmailSubmission(identity_id=ident.id, email_id="#d")},
                                        on_success_update_email={"#s": {"mailboxIds": {boxes["sent"]: True},
                                                                        "keywords/$draft": None}})])
    assert res[1].response.created["s"].id == "Sq1"
    (mail_from, rcpts, raw) = front.sent[0]
    assert (mail_from, rcpts) == (USER, ["bob@remote.test"]) and b"Thanks!" in raw
    # destroy
    res = c.request(EmailSet(destroy=[email.id]))
    assert res.destroyed == [email.id]
    assert c.request(EmailGet(ids=[email.id])).not_found == [email.id]


def test_wrong_password_is_refused(front):
    import requests

    with pytest.raises(requests.HTTPError):
        client(front, password="wrong").jmap_session
