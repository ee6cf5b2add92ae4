"""JMAP's message size limit is the SMTP one (POSTERN_MAX_MESSAGE_SIZE), written once in Account.max_size.

The webmail attaches files up to what a message can carry: the session's
maxSizeAttachmentsPerEmail (the unencoded total that fits once base64-encoded), Email/set create,
Email/import and EmailSubmission all follow the account's limit instead of a second constant.
"""

from __future__ import annotations

import os

import pytest

from postern import mailboxes
from postern.config import Settings
from postern.jmap import api, session
from postern.jmap.account import Account
from postern.store import memory_store

USER = "alice@example.test"
ALL = [session.CORE, session.MAIL, session.SUBMISSION]
LIMIT = 300_000  # a small POSTERN_MAX_MESSAGE_SIZE


@pytest.fixture
def store():
    s = memory_store()
    mailboxes.ensure_defaults(s, USER)
    return s


def account(store, blobs: dict, sent: list, max_size: int = LIMIT) -> Account:
    def submit(user, mail_from, rcpts, raw):
        sent.append(raw)
        return f"q{len(sent)}"

    return Account(USER, store, senders=frozenset({USER}), submit=submit, uploads=blobs.get, max_size=max_size)


def call(acct, *calls):
    return api.handle(acct, {"using": ALL, "methodCalls": [list(c) for c in calls]})["methodResponses"]


def drafts(acct) -> str:
    got = call(acct, ("Mailbox/get", {"accountId": acct.id}, "m"))[0][1]["list"]
    return next(m["id"] for m in got if m["role"] == "drafts")


def with_attachment(acct, blob_id: str) -> dict:
    return {"mailboxIds": {drafts(acct): True}, "keywords": {"$draft": True}, "from": [{"email": USER}],
            "to": [{"email": "bob@remote.test"}], "subject": "big", "textBody": [{"partId": "t"}],
            "bodyValues": {"t": {"value": "attached"}},
            "attachments": [{"blobId": blob_id, "type": "application/octet-stream", "name": "a.bin"}]}


def test_the_default_is_the_smtp_default():
    assert Account(USER, memory_store()).max_size == Settings().max_message_size


def test_session_says_what_fits_once_encoded(store):
    acct = account(store, {}, [])
    caps = session.build(acct, "https://webmail.example.test")["accounts"][acct.id]["accountCapabilities"]
    fits = caps[session.MAIL]["maxSizeAttachmentsPerEmail"]
    assert fits == session.attachments_limit(LIMIT) == (LIMIT - session.TEXT_ALLOWANCE) * 57 // 78
    bigger = account(store, {}, [], max_size=2 * LIMIT)
    assert session.state(bigger) != session.state(acct)  # the session changes with the limit


def test_attachments_up_to_the_limit_are_stored_and_sent_one_byte_more_is_refused(store):
    fits = session.attachments_limit(LIMIT)
    blobs = {"Ufits": os.urandom(fits), "Uover": os.urandom(fits + 1)}
    sent: list = []
    acct = account(store, blobs, sent)
    ident = call(acct, ("Identity/get", {"accountId": acct.id}, "i"))[0][1]["list"][0]["id"]
    out = call(acct, ("Email/set", {"accountId": acct.id, "create": {"ok": with_attachment(acct, "Ufits"),
                                                                       "big": with_attachment(acct, "Uover")}}, "0"),
               ("EmailSubmission/set", {"accountId": acct.id,
                                        "create": {"s": {"identityId": ident, "emailId": "#ok"}}}, "1"))
    created, refused = out[0][1]["created"], out[0][1]["notCreated"]
    assert set(created) == {"ok"} and created["ok"]["size"] <= LIMIT
    assert refused["big"]["type"] == "invalidProperties" and refused["big"]["properties"] == ["attachments"]
    assert str(fits) in refused["big"]["description"]
    assert set(out[1][1]["created"]) == {"s"} and len(sent) == 1 and len(sent[0]) <= LIMIT


def test_import_and_submission_follow_the_account_limit(store):
    raw = b"From: alice@example.test\r\nTo: bob@remote.test\r\nSubject: x\r\n\r\n" + b"y" * 2000 + b"\r\n"
    blobs = {"Uraw": raw}
    sent: list = []
    small = account(store, blobs, sent, max_size=1000)
    out = call(small, ("Email/import", {"accountId": small.id, "emails": {
        "e": {"blobId": "Uraw", "mailboxIds": {drafts(small): True}}}}, "0"))[0][1]
    assert out["notCreated"]["e"] == {"type": "tooLarge", "maxSize": 1000}
    roomy = account(store, blobs, sent)
    eid = call(roomy, ("Email/import", {"accountId": roomy.id, "emails": {
        "e": {"blobId": "Uraw", "mailboxIds": {drafts(roomy): True}}}}, "0"))[0][1]["created"]["e"]["id"]
    ident = call(small, ("Identity/get", {"accountId": small.id}, "i"))[0][1]["list"][0]["id"]
    out = call(small, ("EmailSubmission/set", {"accountId": small.id,
                                               "create": {"s": {"identityId": ident, "emailId": eid}}}, "0"))[0][1]
    assert out["notCreated"]["s"]["type"] == "tooLarge" and not sent
