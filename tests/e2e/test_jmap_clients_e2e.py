"""JMAP through real client libraries against the front `make run` serves (postern_local.httpfront in
front of the real HTTPS function, its worker processes, the stack's DynamoDB/S3/SQS), not a seam.

Each client logs in, lists mailboxes, finds and reads a message delivered over SMTP (smtplib through
the gateway, the router and the store Lambda), sets keywords, moves it, destroys it, uploads an
attachment and sends it with EmailSubmission (spool, router, store); the recipient reads the
attachment over IMAP (imaplib) and the sender's own copy is in Sent with ``$seen``.

jmapc asks ``https://HOST/.well-known/jmap`` (RFC 8620 §2.2) and has no way to say otherwise; the
local front is plain HTTP (issue 14), so its requests session gets an adapter that sends exactly that
one URL to the front over HTTP. Everything after it follows the session's own (http) URLs. jmaplib
takes the session URL as given.
"""

from __future__ import annotations

import email
import email.policy
import imaplib
import smtplib
import uuid
from urllib.parse import urlsplit

import pytest
from requests.adapters import HTTPAdapter

ATTACHMENT = bytes(range(256)) * 40  # 10 KiB of every octet: survives only an exact base64 round trip


class _SessionOverHttp(HTTPAdapter):
    """Sends ``https://<front>/.well-known/jmap`` to the local front's plain-HTTP port."""

    def send(self, request, **kwargs):
        request.url = "http://" + request.url[len("https://"):]
        return super().send(request, **kwargs)


def _deliver(stack, sender: str, rcpt: str, subject: str) -> str:
    mid = f"<{uuid.uuid4().hex}@origin.example>"
    raw = (f"From: Carol <{sender}>\r\nTo: {rcpt}\r\nSubject: {subject}\r\nMessage-ID: {mid}\r\n"
           "Date: Mon, 7 Dec 2026 10:00:00 +0000\r\n\r\nThe figures are attached to the next one.\r\n")
    with smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=30) as s:
        assert s.sendmail(sender, [rcpt], raw.encode()) == {}
    stack.drain()
    return mid


def _imap_messages(stack, user: str, password: str, mailbox: str = "INBOX") -> list[email.message.EmailMessage]:
    with imaplib.IMAP4("127.0.0.1", stack.imap_port, timeout=30) as m:
        m.login(user, password)
        typ, _ = m.select(mailbox, readonly=True)
        assert typ == "OK", mailbox
        _, data = m.fetch("1:*", "(BODY.PEEK[])")
        return [email.message_from_bytes(item[1], policy=email.policy.default)
                for item in data if isinstance(item, tuple)]


def _attachment_of(msg) -> tuple[str, bytes]:
    (part,) = list(msg.iter_attachments())
    return part.get_filename(), part.get_content()


@pytest.fixture
def pair(stack, new_user, new_domain):
    """(alice, alice's password, bob, bob's password, the front's host:port)."""
    domain = new_domain()
    alice, alice_pw = new_user("alice", domain)
    bob, bob_pw = new_user("bob", domain)
    for u in (alice, bob):
        stack.store.ensure_mailboxes(u)
    return alice, alice_pw, bob, bob_pw, urlsplit(stack.http_url).netloc


def test_jmapc_against_the_local_front(stack, pair, tmp_path):
    from jmapc import Client, EmailQueryFilterCondition, Ref
    from jmapc.methods import EmailGet, EmailQuery, EmailSet, EmailSubmissionSet, IdentityGet, MailboxGet

    alice, alice_pw, bob, bob_pw, host = pair
    mid = _deliver(stack, "carol@origin.example", alice, "Quarterly numbers")
    c = Client.create_with_password(host=host, user=alice, password=alice_pw)
    c.requests_session.mount(f"https://{host}/.well-known/jmap", _SessionOverHttp())
    assert c.jmap_session.username == alice and c.jmap_session.api_url.startswith(stack.http_url)

    boxes = {m.role: m for m in c.request(MailboxGet(ids=None)).data}
    assert {"inbox", "sent", "drafts", "trash", "archive"} <= set(boxes)
    assert (boxes["inbox"].total_emails, boxes["inbox"].unread_emails) == (1, 1)
    res = c.request([EmailQuery(filter=EmailQueryFilterCondition(in_mailbox=boxes["inbox"].id)),
                     EmailGet(ids=Ref("/ids"), properties=["subject", "messageId", "from", "preview", "keywords"],
                              fetch_text_body_values=True)])
    (got,) = res[1].response.data
    assert got.subject == "Quarterly numbers" and got.message_id == [mid.strip("<>")]
    assert got.mail_from[0].email == "carol@origin.example" and got.keywords == {}
    assert got.preview.startswith("The figures are attached")

    c.request(EmailSet(update={got.id: {"keywords/$seen": True, "keywords/$flagged": True}}))
    c.request(EmailSet(update={got.id: {"mailboxIds": {boxes["archive"].id: True}}}))
    back = c.request(EmailGet(ids=[got.id], properties=["keywords", "mailboxIds"])).data[0]
    assert back.keywords == {"$seen": True, "$flagged": True} and back.mailbox_ids == {boxes["archive"].id: True}
    assert _imap_messages(stack, alice, alice_pw) == []  # moved out of INBOX, as IMAP sees it
    destroyed = c.request(EmailSet(destroy=[got.id]))
    assert destroyed.destroyed == [got.id]
    assert c.request(EmailGet(ids=[got.id])).not_found == [got.id]

    path = tmp_path / "figures.bin"
    path.write_bytes(ATTACHMENT)
    blob = c.upload_blob(path)
    assert blob.size == len(ATTACHMENT)
    ident = c.request(IdentityGet(ids=None)).data[0]
    draft = {"mailboxIds": {boxes["drafts"].id: True}, "keywords": {"$draft": True},
             "from": [{"email": alice}], "to": [{"email": bob}], "subject": "The figures",
             "textBody": [{"partId": "t", "type": "text/plain"}], "bodyValues": {"t": {"value": "Attached."}},
             "attachments": [{"blobId": blob.id, "type": "application/octet-stream", "name": "figures.bin"}]}
    out = c.request([EmailSet(create={"d": draft}),
                     EmailSubmissionSet(create={"s": {"identityId": ident.id, "emailId": "#d"}},
                                        on_success_update_email={"#s": {"mailboxIds": {boxes["sent"].id: True},
                                                                        "keywords/$draft": None,
                                                                        "keywords/$seen": True}})])
    assert out[0].response.created and "s" in out[1].response.created, out
    stack.drain()
    (received,) = _imap_messages(stack, bob, bob_pw)
    assert received["Subject"] == "The figures" and alice in received["From"]
    assert _attachment_of(received) == ("figures.bin", ATTACHMENT)
    (own,) = _imap_messages(stack, alice, alice_pw, "Sent")
    assert _attachment_of(own) == ("figures.bin", ATTACHMENT)


def test_jmaplib_against_the_local_front(stack, pair):
    from jmap.auth import BasicAuth
    from jmap.client import JMAPClient
    from jmap.core.patch import keyword_patch, mailbox_patch

    alice, alice_pw, bob, bob_pw, _ = pair
    mid = _deliver(stack, "dave@origin.example", alice, "Board minutes")
    with JMAPClient.connect(stack.http_url + "/.well-known/jmap", auth=BasicAuth(alice, alice_pw)) as client:
        with client.batch() as batch:
            mailboxes = batch.mail.mailbox.get(ids=None)
            identities = batch.submission.identity.get(ids=None)
        boxes = {m.role: m for m in mailboxes.result.items}
        assert boxes["inbox"].unread_emails == 1
        with client.batch() as batch:
            found = batch.mail.email.query(filter={"inMailbox": boxes["inbox"].id, "text": "minutes"})
            emails = batch.mail.email.get(ids=found.ref_ids(), properties=["subject", "messageId", "textBody",
                                                                            "bodyValues"], fetchTextBodyValues=True)
        (got,) = emails.result.items
        assert got.subject == "Board minutes" and got.message_id == [mid.strip("<>")]
        assert got.body_values[got.text_body[0].part_id].value.startswith("The figures are attached")

        patch = keyword_patch(add=["$seen", "$flagged"])
        patch.update(mailbox_patch(add=[boxes["archive"].id], remove=[boxes["inbox"].id]))
        with client.batch() as batch:
            changed = batch.mail.email.set(update={got.id: patch})
        assert not changed.result.has_errors, changed.result.update_errors
        with client.batch() as batch:
            now = batch.mail.email.get(ids=[got.id], properties=["keywords", "mailboxIds"])
        assert now.result.items[0].keywords == {"$seen": True, "$flagged": True}
        assert now.result.items[0].mailbox_ids == {boxes["archive"].id: True}
        with client.batch() as batch:
            gone = batch.mail.email.set(destroy=[got.id])
        assert gone.result.destroyed == [got.id]

        uploaded = client.upload(ATTACHMENT, content_type="application/pdf")
        identity = identities.result.items[0]
        from jmap import CreationRef

        with client.batch() as batch:
            batch.mail.email.set(create={"d": {
                "mailboxIds": {boxes["drafts"].id: True}, "keywords": {"$draft": True},
                "from": [{"email": identity.email}], "to": [{"email": bob}], "subject": "Minutes, signed",
                "textBody": [{"partId": "t", "type": "text/plain"}], "bodyValues": {"t": {"value": "Signed copy."}},
                "attachments": [{"blobId": uploaded.blob_id, "type": "application/pdf", "name": "minutes.pdf"}]}})
            sent = batch.submission.email_submission.set(
                create={"s": {"identityId": identity.id, "emailId": CreationRef("d")}},
                onSuccessUpdateEmail={"#s": {f"mailboxIds/{boxes['drafts'].id}": None,
                                             f"mailboxIds/{boxes['sent'].id}": True, "keywords/$draft": None}})
        assert not sent.result.has_errors, sent.result.creation_errors
    stack.drain()
    (received,) = _imap_messages(stack, bob, bob_pw)
    assert received["Subject"] == "Minutes, signed"
    assert _attachment_of(received) == ("minutes.pdf", ATTACHMENT)
