"""The JMAP layer driven with request objects as RFC 8620/8621 write them (no transport).

Store: the in-memory twin of the mail store (the same engine as DynamoDB+S3);
mail goes in through the store's one ingest path (postern.mailboxes.append).
"""

from __future__ import annotations

import json

import pytest

from postern import mailboxes
from postern.jmap import api, session
from postern.jmap.account import Account
from postern.store import memory_store

USER = "alice@example.test"
CORE, MAIL, SUB = session.CORE, session.MAIL, session.SUBMISSION
USING = [CORE, MAIL]

PLAIN = (b"From: Bob <bob@remote.test>\r\nTo: Alice <alice@example.test>\r\nSubject: Hello there\r\n"
         b"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <m1@remote.test>\r\n\r\nFirst body line\r\n")
REPLY = (b"From: Alice <alice@example.test>\r\nTo: bob@remote.test\r\nSubject: Re: Hello there\r\n"
         b"Date: Mon, 1 Jan 2024 11:00:00 +0000\r\nMessage-ID: <m2@example.test>\r\n"
         b"In-Reply-To: <m1@remote.test>\r\nReferences: <m1@remote.test>\r\n\r\nreply\r\n")
MIME = (b"From: =?utf-8?q?Ren=C3=A9?= <rene@remote.test>\r\nTo: team: a@x.test, b@x.test;, c@x.test\r\n"
        b"Subject: =?utf-8?b?w4dhIHZh?= bien\r\nDate: Tue, 2 Jan 2024 09:30:00 +0100\r\n"
        b"Message-ID: <m3@remote.test>\r\nList-Unsubscribe: <mailto:u@x.test>, <https://x.test/u>\r\n"
        b"X-Thing: one\r\nX-Thing: two\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=OUT\r\n\r\n"
        b"--OUT\r\nContent-Type: multipart/alternative; boundary=ALT\r\n\r\n"
        b"--ALT\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"caf=E9 au lait\r\n"
        b"--ALT\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>caf\xc3\xa9 <b>au</b> lait</p>\r\n"
        b"--ALT--\r\n"
        b"--OUT\r\nContent-Type: application/pdf; name=\"report.pdf\"\r\nContent-Disposition: attachment; filename=\"report.pdf\"\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--OUT--\r\n")


@pytest.fixture
def store():
    s = memory_store()
    mailboxes.ensure_defaults(s, USER)
    return s


@pytest.fixture
def acct(store):
    return Account(USER, store, senders=frozenset({USER, "sales@example.test"}), name="Alice")


def deliver(store, raw: bytes, mailbox: str = "INBOX", flags=()):
    return mailboxes.append(store, USER, mailbox, raw, flags=flags)


def call(acct, *calls, using=USING):
    out = api.handle(acct, {"using": using, "methodCalls": [list(c) for c in calls]})
    return {r[2]: (r[0], r[1]) for r in out["methodResponses"]}


def one(acct, name, args, using=USING):
    got = call(acct, (name, {"accountId": acct.id, **args}, "c"), using=using)["c"]
    return got


def ok(acct, name, args, using=USING) -> dict:
    kind, body = one(acct, name, args, using)
    assert kind == name, body
    return body


def err(acct, name, args, using=USING) -> str:
    kind, body = one(acct, name, args, using)
    assert kind == "error", body
    return body["type"]


def inbox_id(acct):
    return next(m["id"] for m in ok(acct, "Mailbox/get", {})["list"] if m["role"] == "inbox")


def mailbox_id(acct, role):
    return next(m["id"] for m in ok(acct, "Mailbox/get", {})["list"] if m["role"] == role)


# --- session and request layer ---------------------------------------------------------------
def test_session_resource_advertises_capabilities_limits_and_the_account(acct):
    s = session.build(acct, "https://webmail.example.test/")
    assert set(s["capabilities"]) == {CORE, MAIL, SUB, session.QUOTA, session.VACATION, session.UPLOAD, session.SIEVE,
                                      session.POSTERN}
    assert session.UPLOAD not in s["accounts"][acct.id]["accountCapabilities"]  # no presigner: not offered
    core = s["capabilities"][CORE]
    assert core["maxCallsInRequest"] == 16 and core["maxObjectsInGet"] == 500
    assert s["primaryAccounts"][MAIL] == acct.id and acct.id in s["accounts"]
    assert s["apiUrl"] == "https://webmail.example.test/jmap/api"
    assert "{blobId}" in s["downloadUrl"] and s["username"] == USER
    assert s["state"] == session.build(acct, "http://127.0.0.1:8080")["state"]  # not the URL's


def test_echo_and_response_shape(acct):
    out = api.handle(acct, {"using": [CORE], "methodCalls": [["Core/echo", {"hello": True, "n": [1, 2]}, "c1"]]})
    assert out["methodResponses"] == [["Core/echo", {"hello": True, "n": [1, 2]}, "c1"]]
    assert out["sessionState"] == session.build(acct, "x")["state"]
    assert "createdIds" not in out


@pytest.mark.parametrize("body,status,kind,limit", [
    (b"{not json", 400, "notJSON", None),
    (b"[" * 100_000 + b"]" * 100_000, 400, "notJSON", None),  # hostile nesting: too much for the parser
    (json.dumps({"using": [CORE], "methodCalls": [["Core/echo", {"a": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}, "c"]]}).encode(), 400, "notRequest", None),
    (b"[]", 400, "notRequest", None),
    (b'{"using": "x", "methodCalls": []}', 400, "notRequest", None),
    (b'{"using": [], "methodCalls": [["Core/echo", {}, 5]]}', 400, "notRequest", None),
    (b'{"using": ["urn:example:nope"], "methodCalls": []}', 400, "unknownCapability", None),
    (json.dumps({"using": [CORE], "methodCalls": [["Core/echo", {}, str(i)] for i in range(17)]}).encode(),
     400, "limit", "maxCallsInRequest"),
    (b'{"using": [], "methodCalls": [], "pad": "' + b"x" * 1_000_001 + b'"}', 400, "limit", "maxSizeRequest"),
])
def test_requests_refused_as_a_whole_get_rfc_problems(acct, body, status, kind, limit):
    got_status, problem = api.handle_bytes(acct, body)
    assert got_status == status
    assert problem["type"] == "urn:ietf:params:jmap:error:" + kind
    assert problem.get("limit") == limit


def test_method_errors_do_not_stop_the_request(acct):
    out = call(acct,
               ("Nope/get", {}, "a"),
               ("Mailbox/get", {"accountId": acct.id}, "b"),
               ("Mailbox/get", {"accountId": "someone-else"}, "c"),
               ("Mailbox/get", {"accountId": acct.id, "ids": "x"}, "d"),
               ("Mailbox/get", {"accountId": acct.id, "bogus": 1}, "e"),
               ("Core/echo", {"x": 1}, "f"),
               using=[MAIL])  # Core/echo needs core in using
    assert out["a"] == ("error", {"type": "unknownMethod", "description": "Nope/get is not a method here"})
    assert out["b"][0] == "Mailbox/get"
    assert out["c"][1]["type"] == "accountNotFound"
    assert out["d"][1]["type"] == "invalidArguments"
    assert out["e"][1]["type"] == "invalidArguments"
    assert out["f"][1]["type"] == "unknownMethod"


def test_result_references_rfc8620_example(acct, store):
    deliver(store, PLAIN)
    deliver(store, REPLY)
    out = call(acct,
               ("Email/query", {"accountId": acct.id, "filter": {"inMailbox": inbox_id(acct)},
                                "sort": [{"property": "receivedAt", "isAscending": False}], "collapseThreads": True,
                                "position": 0, "limit": 10, "calculateTotal": True}, "t0"),
               ("Email/get", {"accountId": acct.id, "#ids": {"resultOf": "t0", "name": "Email/query", "path": "/ids"},
                              "properties": ["threadId"]}, "t1"),
               ("Thread/get", {"accountId": acct.id, "#ids": {"resultOf": "t1", "name": "Email/get",
                                                              "path": "/list/*/threadId"}}, "t2"),
               ("Email/get", {"accountId": acct.id, "#ids": {"resultOf": "t2", "name": "Thread/get",
                                                             "path": "/list/*/emailIds"},
                              "properties": ["from", "receivedAt", "subject"]}, "t3"))
    assert out["t0"][1]["total"] == 1  # two messages, one thread
    assert len(out["t2"][1]["list"]) == 1 and len(out["t2"][1]["list"][0]["emailIds"]) == 2
    assert [e["subject"] for e in out["t3"][1]["list"]] == ["Hello there", "Re: Hello there"]


@pytest.mark.parametrize("ref", [
    {"resultOf": "nope", "name": "Email/query", "path": "/ids"},
    {"resultOf": "q", "name": "Mailbox/get", "path": "/ids"},
    {"resultOf": "q", "name": "Email/query", "path": "/nothing/here"},
    {"resultOf": "q", "name": "Email/query", "path": "ids"},
    {"resultOf": "q", "name": "Email/query", "path": "/ids/99999999999999999999"},
    {"resultOf": "q", "name": "Email/query", "path": "/a" * 1000},
    {"resultOf": "q"},
    "not an object",
])
def test_bad_result_references_are_invalid_result_reference(acct, ref):
    out = call(acct, ("Email/query", {"accountId": acct.id}, "q"),
               ("Email/get", {"accountId": acct.id, "#ids": ref}, "g"))
    assert out["g"] == ("error", {"type": "invalidResultReference", "description": out["g"][1]["description"]})


def test_both_a_reference_and_the_argument_is_invalid_arguments(acct):
    out = call(acct, ("Email/query", {"accountId": acct.id}, "q"),
               ("Email/get", {"accountId": acct.id, "ids": [], "#ids": {"resultOf": "q", "name": "Email/query",
                                                                        "path": "/ids"}}, "g"))
    assert out["g"][1]["type"] == "invalidArguments"


def test_too_many_ids_is_request_too_large(acct):
    assert err(acct, "Email/get", {"ids": [f"E{i}" for i in range(501)]}) == "requestTooLarge"
    assert err(acct, "Email/set", {"destroy": [f"E{i}" for i in range(501)]}) == "requestTooLarge"


# --- mailboxes ---------------------------------------------------------------------------------
def test_mailbox_get_shows_roles_counts_and_rights(acct, store):
    deliver(store, PLAIN)
    deliver(store, REPLY, flags=["\\Seen"])
    boxes = {m["role"]: m for m in ok(acct, "Mailbox/get", {})["list"]}
    assert set(boxes) == {"inbox", "sent", "drafts", "trash", "junk", "archive"}
    inbox = boxes["inbox"]
    assert (inbox["name"], inbox["totalEmails"], inbox["unreadEmails"], inbox["totalThreads"],
            inbox["unreadThreads"]) == ("INBOX", 2, 1, 1, 1)
    assert inbox["myRights"]["mayDelete"] is False and boxes["trash"]["myRights"]["mayDelete"] is True
    got = ok(acct, "Mailbox/get", {"ids": [inbox["id"], "nope"], "properties": ["name"]})
    assert got["list"] == [{"id": inbox["id"], "name": "INBOX"}] and got["notFound"] == ["nope"]


def test_mailbox_set_create_rename_move_destroy_through_the_rules(acct, store):
    out = call(acct,
               ("Mailbox/set", {"accountId": acct.id, "create": {
                   "p": {"name": "Projects"},
                   "c": {"name": "Postern", "parentId": "#p"},
                   "bad": {"name": "a/b"},
                   "bad2": {"name": "x*"}}}, "s"))["s"][1]
    assert set(out["created"]) == {"p", "c"} and set(out["notCreated"]) == {"bad", "bad2"}
    assert out["notCreated"]["bad"]["type"] == "invalidProperties"
    names = {mb.name for mb in store.list_mailboxes(USER)}
    assert {"Projects", "Projects/Postern"} <= names  # the store's names, IMAP sees the same
    pid, cid = out["created"]["p"]["id"], out["created"]["c"]["id"]
    got = ok(acct, "Mailbox/get", {"ids": [cid]})["list"][0]
    assert (got["name"], got["parentId"]) == ("Postern", pid)
    # rename and move to top level: one RENAME, the id stays
    res = ok(acct, "Mailbox/set", {"update": {cid: {"name": "Work", "parentId": None}}})
    assert cid in res["updated"]
    assert "Work" in {mb.name for mb in store.list_mailboxes(USER)}
    assert ok(acct, "Mailbox/get", {"ids": [cid]})["list"][0]["name"] == "Work"
    assert ok(acct, "Mailbox/get", {"ids": [cid]})["list"][0]["isSubscribed"] is True  # follows the id
    assert "Work" in store.list_subscriptions(USER) and "Projects/Postern" not in store.list_subscriptions(USER)
    ok(acct, "Mailbox/set", {"update": {cid: {"isSubscribed": False}}})
    assert "Work" not in store.list_subscriptions(USER)
    res = ok(acct, "Mailbox/set", {"update": {cid: {"role": "trash"}, pid: {"parentId": cid}}})
    assert res["notUpdated"][cid]["properties"] == ["role"] and pid in res["updated"]
    assert "Work/Projects" in {mb.name for mb in store.list_mailboxes(USER)}  # moved under Work
    ok(acct, "Mailbox/set", {"update": {pid: {"parentId": None}}})  # and back
    assert "Projects" in {mb.name for mb in store.list_mailboxes(USER)}
    # INBOX can be neither renamed nor destroyed; a parent with a child is not destroyed
    ib = inbox_id(acct)
    ok(acct, "Mailbox/set", {"create": {"k": {"name": "Kid", "parentId": pid}}})
    res = ok(acct, "Mailbox/set", {"update": {ib: {"name": "Other"}}, "destroy": [ib, pid]})
    assert res["notUpdated"][ib]["type"] == "forbidden"
    assert res["notDestroyed"][ib]["type"] == "forbidden"
    assert res["notDestroyed"][pid]["type"] == "mailboxHasChild"
    # a mailbox with mail needs onDestroyRemoveEmails
    deliver(store, PLAIN, "Work")
    assert ok(acct, "Mailbox/set", {"destroy": [cid]})["notDestroyed"][cid]["type"] == "mailboxHasEmail"
    res = ok(acct, "Mailbox/set", {"destroy": [cid], "onDestroyRemoveEmails": True})
    assert res["destroyed"] == [cid] and "Work" not in {mb.name for mb in store.list_mailboxes(USER)}


def test_mailbox_set_if_in_state_mismatch(acct):
    assert err(acct, "Mailbox/set", {"ifInState": "0", "create": {"a": {"name": "A"}}}) == "stateMismatch"


def test_mailbox_changes_and_query(acct, store):
    s0 = ok(acct, "Mailbox/get", {"ids": []})["state"]
    new = ok(acct, "Mailbox/set", {"create": {"n": {"name": "News"}}})["created"]["n"]["id"]
    ch = ok(acct, "Mailbox/changes", {"sinceState": s0})
    assert ch["created"] == [new] and ch["updated"] == [] and ch["destroyed"] == []
    s1 = ch["newState"]
    deliver(store, PLAIN, "News")
    ch = ok(acct, "Mailbox/changes", {"sinceState": s1})
    assert ch["updated"] == [new] and ch["updatedProperties"] == ["totalEmails", "unreadEmails", "totalThreads",
                                                                  "unreadThreads"]
    ok(acct, "Mailbox/set", {"destroy": [new], "onDestroyRemoveEmails": True})
    ch = ok(acct, "Mailbox/changes", {"sinceState": s0})
    assert ch["created"] == [] and ch["destroyed"] == []  # created and destroyed since: not reported
    ch = ok(acct, "Mailbox/changes", {"sinceState": s1})
    assert ch["destroyed"] == [new]
    assert err(acct, "Mailbox/changes", {"sinceState": "999999"}) == "cannotCalculateChanges"
    assert err(acct, "Mailbox/changes", {"sinceState": "garbage"}) == "cannotCalculateChanges"
    q = ok(acct, "Mailbox/query", {"filter": {"role": "inbox"}})
    assert q["ids"] == [inbox_id(acct)]
    q = ok(acct, "Mailbox/query", {"filter": {"hasAnyRole": False}, "calculateTotal": True})
    assert q["total"] == 0


# --- emails ------------------------------------------------------------------------------------
def test_delivered_message_shows_in_email_query_and_get(acct, store):
    res = deliver(store, PLAIN)
    q = ok(acct, "Email/query", {"filter": {"inMailbox": inbox_id(acct)}})
    assert q["ids"] == [res.email_id]
    e = ok(acct, "Email/get", {"ids": q["ids"], "fetchTextBodyValues": True})["list"][0]
    assert e["id"] == res.email_id and e["threadId"] == res.thread_id
    assert e["blobId"] and e["mailboxIds"] == {inbox_id(acct): True}
    assert e["subject"] == "Hello there" and e["from"] == [{"name": "Bob", "email": "bob@remote.test"}]
    assert e["to"] == [{"name": "Alice", "email": USER}]
    assert e["messageId"] == ["m1@remote.test"] and e["inReplyTo"] is None
    assert e["sentAt"] == "2024-01-01T10:00:00+00:00"
    assert e["keywords"] == {} and e["hasAttachment"] is False
    assert e["size"] == len(PLAIN) and e["preview"] == "First body line"
    part = e["textBody"][0]["partId"]
    assert e["bodyValues"][part] == {"value": "First body line\n", "isEncodingProblem": False,
                                     "isTruncated": False}


def test_email_get_mime_structure_and_header_forms(acct, store):
    deliver(store, MIME)
    eid = ok(acct, "Email/query", {})["ids"][0]
    e = ok(acct, "Email/get", {"ids": [eid], "fetchAllBodyValues": True, "maxBodyValueBytes": 5, "properties": [
        "bodyStructure", "textBody", "htmlBody", "attachments", "bodyValues", "hasAttachment", "subject", "from",
        "header:To:asGroupedAddresses", "header:To:asAddresses", "header:X-Thing", "header:X-Thing:all",
        "header:x-thing:asText:all", "header:Date:asDate", "header:List-Unsubscribe:asURLs",
        "header:Message-ID:asMessageIds", "header:Subject:asRaw", "preview"]})["list"][0]
    assert e["subject"] == "Ça va bien"
    assert e["from"] == [{"name": "René", "email": "rene@remote.test"}]
    assert e["header:To:asGroupedAddresses"] == [
        {"name": "team", "addresses": [{"name": None, "email": "a@x.test"}, {"name": None, "email": "b@x.test"}]},
        {"name": None, "addresses": [{"name": None, "email": "c@x.test"}]}]
    assert [a["email"] for a in e["header:To:asAddresses"]] == ["a@x.test", "b@x.test", "c@x.test"]
    assert e["header:X-Thing"] == " two" and e["header:X-Thing:all"] == [" one", " two"]
    assert e["header:x-thing:asText:all"] == ["one", "two"]
    assert e["header:Date:asDate"] == "2024-01-02T09:30:00+01:00"
    assert e["header:List-Unsubscribe:asURLs"] == ["mailto:u@x.test", "https://x.test/u"]
    assert e["header:Message-ID:asMessageIds"] == ["m3@remote.test"]
    assert e["header:Subject:asRaw"] == " =?utf-8?b?w4dhIHZh?= bien"
    root = e["bodyStructure"]
    assert root["type"] == "multipart/mixed" and root["partId"] is None
    assert [p["type"] for p in root["subParts"]] == ["multipart/alternative", "application/pdf"]
    assert [p["type"] for p in e["textBody"]] == ["text/plain"]
    assert [p["type"] for p in e["htmlBody"]] == ["text/html"]
    att = e["attachments"]
    assert [(a["type"], a["name"], a["disposition"], a["size"]) for a in att] == [
        ("application/pdf", "report.pdf", "attachment", 9)]
    assert e["hasAttachment"] is True
    text_id, html_id = e["textBody"][0]["partId"], e["htmlBody"][0]["partId"]
    assert e["bodyValues"][text_id] == {"value": "café", "isEncodingProblem": False, "isTruncated": True}
    assert e["bodyValues"][html_id]["value"] == "<p>ca" and e["bodyValues"][html_id]["isTruncated"]
    assert e["preview"] == "café au lait"
    # the header-only heuristic agrees when the body is not asked for
    assert ok(acct, "Email/get", {"ids": [eid], "properties": ["hasAttachment"]})["list"][0]["hasAttachment"]


def test_email_get_argument_errors(acct):
    assert err(acct, "Email/get", {"ids": [], "properties": ["nope"]}) == "invalidArguments"
    assert err(acct, "Email/get", {"ids": [], "properties": ["header:From:asDate"]}) == "invalidArguments"
    assert err(acct, "Email/get", {"ids": [], "properties": ["header:Bad Name"]}) == "invalidArguments"
    assert err(acct, "Email/get", {"ids": [], "maxBodyValueBytes": -1}) == "invalidArguments"
    assert err(acct, "Email/get", {"ids": [], "properties": [f"header:X-{i}" for i in range(101)]}) == \
        "invalidArguments"
    assert ok(acct, "Email/get", {"ids": ["Enope"]})["notFound"] == ["Enope"]


def test_email_query_filters_sorts_and_windows(acct, store):
    a = deliver(store, PLAIN)  # Hello there, from bob, 1 Jan
    b = deliver(store, REPLY, flags=["\\Seen", "$Important"])
    c = deliver(store, MIME, "Archive")
    q = lambda **kw: ok(acct, "Email/query", kw)["ids"]  # noqa: E731
    assert q(filter={"inMailbox": inbox_id(acct)}, sort=[{"property": "receivedAt", "isAscending": True}]) == \
        [a.email_id, b.email_id]
    assert set(q(filter={"inMailboxOtherThan": [inbox_id(acct)]})) == {c.email_id}
    assert q(filter={"hasKeyword": "$seen"}) == [b.email_id]
    assert q(filter={"hasKeyword": "$important"}) == [b.email_id]  # keywords are case-insensitive
    assert set(q(filter={"notKeyword": "$seen"})) == {a.email_id, c.email_id}
    assert q(filter={"from": "rené"}) == [c.email_id]
    assert q(filter={"subject": "RE: hello"}) == [b.email_id]
    assert q(filter={"body": "au lait"}) == [c.email_id]
    assert set(q(filter={"text": "hello"})) == {a.email_id, b.email_id}
    assert q(filter={"header": ["X-Thing", "two"]}) == [c.email_id]
    assert q(filter={"hasAttachment": True}) == [c.email_id]
    assert set(q(filter={"someInThreadHaveKeyword": "$seen"})) == {a.email_id, b.email_id}
    assert q(filter={"allInThreadHaveKeyword": "$seen"}) == []  # a and b are one thread, a is unseen
    assert q(filter={"noneInThreadHaveKeyword": "$seen"}) == [c.email_id]
    assert q(filter={"operator": "NOT", "conditions": [{"inMailbox": inbox_id(acct)}]}) == [c.email_id]
    assert set(q(filter={"operator": "OR", "conditions": [{"from": "rene"}, {"hasKeyword": "$seen"}]})) == \
        {b.email_id, c.email_id}
    assert q(filter={"minSize": len(MIME)}) == [c.email_id]
    assert q(filter={"after": "2030-01-01T00:00:00Z"}) == []
    by_subject = q(sort=[{"property": "subject"}])  # base subjects: "hello there" twice, then "ça va bien"
    assert set(by_subject[:2]) == {a.email_id, b.email_id} and by_subject[2] == c.email_id
    assert q(sort=[{"property": "sentAt", "isAscending": True}]) == [a.email_id, b.email_id, c.email_id]
    assert q(sort=[{"property": "size", "isAscending": False}])[0] == c.email_id
    assert q(sort=[{"property": "hasKeyword", "keyword": "$seen", "isAscending": False}])[0] == b.email_id
    # collapseThreads keeps the first of each thread in sort order
    assert q(collapseThreads=True, sort=[{"property": "receivedAt", "isAscending": True}]) == [a.email_id, c.email_id]
    page = ok(acct, "Email/query", {"position": 1, "limit": 1, "calculateTotal": True,
                                    "sort": [{"property": "receivedAt", "isAscending": True}]})
    assert page["ids"] == [b.email_id] and page["total"] == 3 and page["position"] == 1
    page = ok(acct, "Email/query", {"anchor": b.email_id, "anchorOffset": 1,
                                    "sort": [{"property": "receivedAt", "isAscending": True}]})
    assert page["ids"] == [c.email_id] and page["position"] == 2
    assert err(acct, "Email/query", {"anchor": "Enope"}) == "anchorNotFound"
    assert err(acct, "Email/query", {"filter": {"nope": 1}}) == "unsupportedFilter"
    assert err(acct, "Email/query", {"sort": [{"property": "nope"}]}) == "unsupportedSort"
    assert err(acct, "Email/query", {"filter": {"before": "yesterday"}}) == "invalidArguments"
    assert err(acct, "Email/queryChanges", {"sinceQueryState": page["queryState"]}) == "cannotCalculateChanges"


def test_hostile_filters_are_bounded(acct, store):
    deliver(store, PLAIN)
    deep: dict = {"inMailbox": "x"}
    for _ in range(50):
        deep = {"operator": "NOT", "conditions": [deep]}
    assert err(acct, "Email/query", {"filter": deep}) == "invalidArguments"
    wide = {"operator": "OR", "conditions": [{"text": str(i)} for i in range(1000)]}
    assert err(acct, "Email/query", {"filter": wide}) == "invalidArguments"
    assert err(acct, "Email/query", {"filter": {"operator": "XOR", "conditions": []}}) == "invalidArguments"
    assert err(acct, "Email/query", {"filter": {"from": ["a"]}}) == "invalidArguments"


def test_email_set_keywords_move_and_destroy(acct, store):
    a = deliver(store, PLAIN, flags=["\\Deleted", "$Label"])
    eid = a.email_id
    archive, inbox = mailbox_id(acct, "archive"), inbox_id(acct)
    res = ok(acct, "Email/set", {"update": {eid: {"keywords/$seen": True, "keywords/$flagged": True,
                                                  "keywords/$label": None}}})
    assert res["updated"] == {eid: None} and res["newState"] != res["oldState"]
    meta = next(iter(store.list_messages(store.get_mailbox(USER, "INBOX"))))
    assert meta.flags == {"\\Seen", "\\Flagged", "\\Deleted"}  # \Deleted is not JMAP's to clear
    res = ok(acct, "Email/set", {"update": {eid: {"keywords": {"$draft": True, "custom": True}}}})
    meta = next(iter(store.list_messages(store.get_mailbox(USER, "INBOX"))))
    assert meta.flags == {"\\Draft", "custom", "\\Deleted"}
    assert ok(acct, "Email/get", {"ids": [eid], "properties": ["keywords"]})["list"][0]["keywords"] == \
        {"$draft": True, "custom": True}
    # move: the Email keeps its id, changes mailbox
    res = ok(acct, "Email/set", {"update": {eid: {"mailboxIds": {archive: True}}}})
    assert res["updated"] == {eid: None}
    got = ok(acct, "Email/get", {"ids": [eid], "properties": ["mailboxIds", "keywords"]})["list"][0]
    assert got["mailboxIds"] == {archive: True} and got["keywords"] == {"$draft": True, "custom": True}
    assert store.get_mailbox(USER, "INBOX").exists == 0 and store.get_mailbox(USER, "Archive").exists == 1
    # in two mailboxes at once, then out of one
    ok(acct, "Email/set", {"update": {eid: {f"mailboxIds/{inbox}": True}}})
    assert ok(acct, "Email/get", {"ids": [eid], "properties": ["mailboxIds"]})["list"][0]["mailboxIds"] == \
        {archive: True, inbox: True}
    ok(acct, "Email/set", {"update": {eid: {f"mailboxIds/{archive}": None}}})
    assert ok(acct, "Email/get", {"ids": [eid], "properties": ["mailboxIds"]})["list"][0]["mailboxIds"] == \
        {inbox: True}
    # errors per object
    res = ok(acct, "Email/set", {"update": {
        eid: {"mailboxIds": {}},
        "Enope": {"keywords/$seen": True}}})
    assert res["notUpdated"][eid]["type"] == "invalidProperties"
    assert res["notUpdated"]["Enope"]["type"] == "notFound"
    res = ok(acct, "Email/set", {"update": {eid: {"subject": "changed"}}})
    assert res["notUpdated"][eid] == {"type": "invalidProperties", "properties": ["subject"],
                                      "description": "only keywords and mailboxIds can change"}
    res = ok(acct, "Email/set", {"update": {eid: {"keywords/bad(word": True}}})
    assert res["notUpdated"][eid]["type"] == "invalidProperties"
    res = ok(acct, "Email/set", {"update": {eid: {"mailboxIds/nope": True}}})
    assert res["notUpdated"][eid]["type"] == "invalidProperties"
    assert err(acct, "Email/set", {"ifInState": "1", "destroy": [eid]}) == "stateMismatch"
    res = ok(acct, "Email/set", {"destroy": [eid, "Enope"]})
    assert res["destroyed"] == [eid] and res["notDestroyed"]["Enope"]["type"] == "notFound"
    assert ok(acct, "Email/get", {"ids": [eid]})["notFound"] == [eid]


def test_email_changes_follow_the_change_log(acct, store):
    s0 = ok(acct, "Email/get", {"ids": []})["state"]
    a = deliver(store, PLAIN)
    ch = ok(acct, "Email/changes", {"sinceState": s0})
    assert ch["created"] == [a.email_id] and ch["updated"] == [] and ch["destroyed"] == []
    s1 = ch["newState"]
    assert ok(acct, "Email/changes", {"sinceState": s1})["created"] == []
    ok(acct, "Email/set", {"update": {a.email_id: {"keywords/$seen": True}}})
    ch = ok(acct, "Email/changes", {"sinceState": s1})
    assert ch["updated"] == [a.email_id] and ch["created"] == []
    s2 = ch["newState"]
    ok(acct, "Email/set", {"update": {a.email_id: {"mailboxIds": {mailbox_id(acct, "archive"): True}}}})
    ch = ok(acct, "Email/changes", {"sinceState": s2})
    assert ch["updated"] == [a.email_id] and ch["created"] == [] and ch["destroyed"] == []  # a move is an update
    s3 = ch["newState"]
    b = deliver(store, REPLY)
    c = deliver(store, MIME)
    ok(acct, "Email/set", {"destroy": [a.email_id]})
    ch = ok(acct, "Email/changes", {"sinceState": s3, "maxChanges": 1})
    assert ch["created"] == [b.email_id] and ch["hasMoreChanges"] is True
    ch = ok(acct, "Email/changes", {"sinceState": ch["newState"]})
    assert ch["created"] == [c.email_id] and ch["destroyed"] == [a.email_id] and not ch["hasMoreChanges"]
    assert err(acct, "Email/changes", {"sinceState": "123456789"}) == "cannotCalculateChanges"


def test_thread_and_identity(acct, store):
    a, b = deliver(store, PLAIN), deliver(store, REPLY)
    assert a.thread_id == b.thread_id
    t = ok(acct, "Thread/get", {"ids": [a.thread_id, "Tnope"]})
    assert t["list"] == [{"id": a.thread_id, "emailIds": [a.email_id, b.email_id]}] and t["notFound"] == ["Tnope"]
    ids = ok(acct, "Identity/get", {}, using=[CORE, MAIL, SUB])["list"]
    assert sorted(i["email"] for i in ids) == [USER, "sales@example.test"]
    assert err(acct, "Identity/get", {}) == "unknownMethod"  # submission not in using


def test_a_store_fault_is_server_unavailable_and_the_request_goes_on(acct, store, monkeypatch):
    from postern.errors import StoreUnavailable

    def boom(*a, **k):
        raise StoreUnavailable("down")

    monkeypatch.setattr(store, "list_messages", boom)
    out = call(acct, ("Email/query", {"accountId": acct.id}, "a"), ("Core/echo", {"x": 1}, "b"), using=[CORE, MAIL])
    assert out["a"][1]["type"] == "serverUnavailable" and out["b"] == ("Core/echo", {"x": 1})


def test_hostile_messages_read_without_crashing(acct, store):
    many_words = b"Subject: " + b" ".join(b"=?utf-8?q?x?=" for _ in range(20000)) + b"\r\n"
    deep = b"Content-Type: multipart/mixed; boundary=b0\r\n\r\n" + b"".join(
        b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (i, i + 1) for i in range(200)) + b"x\r\n"
    long_ct = b"Content-Type: text/plain; " + b"a=b; " * 20000 + b"\r\n\r\nbody\r\n"
    many_parts = b"Content-Type: multipart/mixed; boundary=Z\r\n\r\n" + b"--Z\r\nContent-Type: text/plain\r\n\r\nx\r\n" * 3000 + b"--Z--\r\n"
    for raw in (b"From: x@y\r\n" + many_words + b"\r\nbody", b"From: x@y\r\n" + deep, b"From: x@y\r\n" + long_ct,
                b"From: x@y\r\n" + many_parts, b"\x00\xff\r\n\r\n", b"no header at all"):
        deliver(store, raw)
    ids = ok(acct, "Email/query", {})["ids"]
    got = ok(acct, "Email/get", {"ids": ids, "fetchAllBodyValues": True,
                                 "properties": ["subject", "bodyStructure", "bodyValues", "textBody", "attachments",
                                                "preview", "headers", "from"]})
    assert len(got["list"]) == 6
    parts = max(len(e["bodyValues"]) for e in got["list"])
    assert parts <= 500


# --- drafts and sending ------------------------------------------------------------------------
ALL = [CORE, MAIL, SUB]


def draft(acct, **over):
    obj = {"mailboxIds": {mailbox_id(acct, "drafts"): True}, "keywords": {"$draft": True, "$seen": True},
           "from": [{"name": "Alice Ä", "email": USER}], "to": [{"name": "Bob", "email": "bob@remote.test"}],
           "cc": [{"email": "carol@remote.test"}], "bcc": [{"email": "secret@remote.test"}],
           "subject": "Plans für morgen", "textBody": [{"partId": "t", "type": "text/plain"}],
           "htmlBody": [{"partId": "h", "type": "text/html"}],
           "bodyValues": {"t": {"value": "See you at 10.\n"}, "h": {"value": "<p>See you at <b>10</b>.</p>"}}}
    obj.update(over)
    return obj


def test_email_set_create_builds_a_draft_the_store_keeps(acct, store):
    src = deliver(store, MIME)
    pdf = ok(acct, "Email/get", {"ids": [src.email_id], "properties": ["attachments"]})["list"][0]["attachments"][0]
    res = ok(acct, "Email/set", {"create": {"d": draft(acct, attachments=[{"blobId": pdf["blobId"]}])}})
    made = res["created"]["d"]
    assert set(made) == {"id", "blobId", "threadId", "size"}
    e = ok(acct, "Email/get", {"ids": [made["id"]], "fetchAllBodyValues": True, "properties": [
        "mailboxIds", "keywords", "subject", "from", "to", "bcc", "textBody", "htmlBody", "attachments", "bodyValues",
        "messageId"]})["list"][0]
    assert e["mailboxIds"] == {mailbox_id(acct, "drafts"): True}
    assert e["keywords"] == {"$draft": True, "$seen": True}
    assert e["subject"] == "Plans für morgen" and e["from"] == [{"name": "Alice Ä", "email": USER}]
    assert e["bcc"] == [{"name": None, "email": "secret@remote.test"}]
    assert e["bodyValues"][e["textBody"][0]["partId"]]["value"] == "See you at 10.\n"
    assert "<b>10</b>" in e["bodyValues"][e["htmlBody"][0]["partId"]]["value"]
    att = e["attachments"][0]
    assert (att["type"], att["name"], att["size"]) == ("application/pdf", "report.pdf", 9)
    assert e["messageId"][0].endswith("@example.test")
    meta = next(iter(store.list_messages(store.get_mailbox(USER, "Drafts"))))
    assert meta.flags == {"\\Draft", "\\Seen"}  # IMAP sees the same draft


@pytest.mark.parametrize("over,prop", [
    ({"subject": "x\r\nBcc: victim@remote.test"}, "subject"),
    ({"to": [{"email": "not an address"}]}, "to"),
    ({"mailboxIds": {}}, "mailboxIds"),
    ({"mailboxIds": {"nope": True}}, "mailboxIds"),
    ({"keywords": {"bad(": True}}, "keywords"),
    ({"id": "Ex"}, "id"),
    ({"textBody": [{"partId": "missing"}]}, "textBody"),
])
def test_email_set_create_refuses_bad_drafts(acct, store, over, prop):
    res = ok(acct, "Email/set", {"create": {"d": draft(acct, **over)}})
    assert res["notCreated"]["d"]["type"] == "invalidProperties" and res["notCreated"]["d"]["properties"] == [prop]
    assert store.get_mailbox(USER, "Drafts").exists == 0


def test_email_set_create_unknown_attachment_blob(acct):
    res = ok(acct, "Email/set", {"create": {"d": draft(acct, attachments=[{"blobId": "Bdeadbeef-1"}])}})
    assert res["notCreated"]["d"]["type"] == "blobNotFound"


def sending(store, sent):
    def submit(user, mail_from, rcpts, raw):
        sent.append((user, mail_from, rcpts, raw))
        return "q%d" % len(sent)

    return Account(USER, store, senders=frozenset({USER, "sales@example.test"}), name="Alice", submit=submit)


def test_email_submission_sends_through_the_outbound_path_and_files_the_draft(store):
    sent: list = []
    acct = sending(store, sent)
    ident = ok(acct, "Identity/get", {}, using=ALL)["list"]
    ident = next(i["id"] for i in ident if i["email"] == USER)
    sent_box = mailbox_id(acct, "sent")
    out = api.handle(acct, {"using": ALL, "methodCalls": [
        ["Email/set", {"accountId": acct.id, "create": {"d": draft(acct)}}, "0"],
        ["EmailSubmission/set", {"accountId": acct.id, "create": {"s": {"identityId": ident, "emailId": "#d"}},
                                 "onSuccessUpdateEmail": {"#s": {"mailboxIds": {sent_box: True},
                                                                 "keywords/$draft": None}}}, "1"]]})["methodResponses"]
    assert [(r[0], r[2]) for r in out] == [("Email/set", "0"), ("EmailSubmission/set", "1"), ("Email/set", "1")]
    assert set(out[1][1]["created"]) == {"s"}
    eid = out[0][1]["created"]["d"]["id"]
    assert out[2][1]["updated"] == {eid: None}  # the implicit Email/set (RFC 8621 §7.5)
    user, mail_from, rcpts, raw = sent[0]
    assert (user, mail_from) == (USER, USER)
    assert rcpts == ["bob@remote.test", "carol@remote.test", "secret@remote.test"]
    assert b"secret@remote.test" not in raw and b"\r\nTo: Bob <bob@remote.test>\r\n" in raw  # Bcc: removed
    got = ok(acct, "Email/get", {"ids": [eid], "properties": ["mailboxIds", "keywords"]})["list"][0]
    assert got == {"id": eid, "mailboxIds": {sent_box: True}, "keywords": {"$seen": True}}


def test_email_submission_sender_rule(store):
    sent: list = []
    acct = sending(store, sent)
    idents = {i["email"]: i["id"] for i in ok(acct, "Identity/get", {}, using=ALL)["list"]}

    def submit(obj_over, sub_over=None):
        made = ok(acct, "Email/set", {"create": {"d": draft(acct, **obj_over)}})["created"]["d"]["id"]
        sub = {"identityId": idents[USER], "emailId": made, **(sub_over or {})}
        res = ok(acct, "EmailSubmission/set", {"create": {"s": sub}}, using=ALL)
        return res["notCreated"].get("s", {}).get("type") or "sent"

    assert submit({"from": [{"email": "ceo@example.test"}]}) == "forbiddenFrom"
    assert submit({"from": [{"email": "alice+news@example.test"}]}) == "sent"  # user+tag@ is the user's
    assert submit({"from": [{"email": "sales@example.test"}]}, {"identityId": idents["sales@example.test"]}) == "sent"
    assert submit({}, {"envelope": {"mailFrom": {"email": "ceo@example.test"},
                                    "rcptTo": [{"email": "bob@remote.test"}]}}) == "forbiddenMailFrom"
    assert submit({"to": [], "cc": [], "bcc": []}) == "noRecipients"
    assert submit({}, {"identityId": "inope"}) == "invalidProperties"
    assert len(sent) == 2
    no_out = Account(USER, store, senders=frozenset({USER}))
    made = ok(no_out, "Email/set", {"create": {"d": draft(no_out)}})["created"]["d"]["id"]
    res = ok(no_out, "EmailSubmission/set", {"create": {"s": {"identityId": idents[USER], "emailId": made}}},
             using=ALL)
    assert res["notCreated"]["s"]["type"] == "forbidden"


# --- snippets, quota, vacation -----------------------------------------------------------------
def test_search_snippets_mark_the_terms(acct, store):
    a = deliver(store, PLAIN)
    c = deliver(store, MIME)
    flt = {"operator": "OR", "conditions": [{"text": "hello"}, {"body": "lait"},
                                            {"operator": "NOT", "conditions": [{"text": "never"}]}]}
    got = ok(acct, "SearchSnippet/get", {"filter": flt, "emailIds": [a.email_id, c.email_id, "Enope"]})
    snip = {s["emailId"]: s for s in got["list"]}
    assert snip[a.email_id]["subject"] == "<mark>Hello</mark> there" and snip[a.email_id]["preview"] is None
    assert snip[c.email_id]["subject"] is None and "au <mark>lait</mark>" in snip[c.email_id]["preview"]
    assert got["notFound"] == ["Enope"]
    evil = deliver(store, b"Subject: <script>x</script> hello\r\n\r\nbody\r\n")
    s = ok(acct, "SearchSnippet/get", {"filter": {"text": "hello"}, "emailIds": [evil.email_id]})["list"][0]
    assert s["subject"] == "&lt;script&gt;x&lt;/script&gt; <mark>hello</mark>"  # escaped HTML


def test_quota_is_the_stores_count_against_the_directory_limit(store):
    acct = Account(USER, store, quota=1_000_000)
    deliver(store, PLAIN)
    q = ok(acct, "Quota/get", {}, using=[CORE, session.QUOTA])["list"][0]
    assert (q["used"], q["hardLimit"], q["resourceType"], q["scope"], q["types"]) == (
        store.usage(USER), 1_000_000, "octets", "account", ["Mail"])
    assert q["used"] >= len(PLAIN)


def test_vacation_response_writes_the_managed_script(store):
    from postern.items import MemoryItems
    from postern.sieve.managed import Managed
    from postern.sieve.repository import ScriptRepository

    managed = Managed(ScriptRepository(MemoryItems()))
    acct = Account(USER, store, rules=managed)
    using = [CORE, session.VACATION]
    assert session.VACATION in session.build(acct, "https://x")["accounts"][acct.id]["accountCapabilities"]
    v = ok(acct, "VacationResponse/get", {}, using=using)
    assert v["list"] == [{"id": "singleton", "isEnabled": False, "fromDate": None, "toDate": None, "subject": None,
                          "textBody": None, "htmlBody": None}]
    res = ok(acct, "VacationResponse/set", {"update": {"singleton": {
        "isEnabled": True, "subject": "Away", "textBody": "Back on Monday.", "toDate": "2030-01-06T00:00:00Z"}}},
        using=using)
    assert res["updated"] == {"singleton": None} and res["newState"] != res["oldState"]
    rules = managed.rules(USER).vacation
    assert (rules.enabled, rules.subject, rules.text) == (True, "Away", "Back on Monday.")
    assert ok(acct, "VacationResponse/get", {}, using=using)["list"][0]["toDate"] == "2030-01-06T00:00:00Z"
    res = ok(acct, "VacationResponse/set", {"update": {"singleton": {"subject": "a\r\nBcc: x@y"}},
                                            "create": {"n": {}}, "destroy": ["singleton"]}, using=using)
    assert res["notUpdated"]["singleton"]["type"] == "invalidProperties"
    assert res["notCreated"]["n"]["type"] == "singleton" and res["notDestroyed"]["singleton"]["type"] == "singleton"
    ok(acct, "VacationResponse/set", {"update": {"singleton": {"isEnabled": False}}}, using=using)
    assert managed.rules(USER).vacation.enabled is False and managed.rules(USER).vacation.text == "Back on Monday."
    no_rules = Account(USER, store)
    assert err(no_rules, "VacationResponse/get", {}, using=using) == "accountNotSupportedByMethod"


def test_email_import_keeps_the_uploaded_bytes(store):
    uploads = {"Gup1": MIME, "Gup2": b"\x00not mail but bytes"}
    acct = Account(USER, store, quota=10_000_000, uploads=uploads.get)
    archive = mailbox_id(acct, "archive")
    res = ok(acct, "Email/import", {"emails": {
        "a": {"blobId": "Gup1", "mailboxIds": {archive: True}, "keywords": {"$seen": True},
              "receivedAt": "2023-05-01T12:00:00Z"},
        "b": {"blobId": "Gnope", "mailboxIds": {archive: True}},
        "c": {"blobId": "Gup1", "mailboxIds": {}},
        "d": {"blobId": "Gup1", "mailboxIds": {archive: True}, "receivedAt": "yesterday"}}})
    made = res["created"]["a"]
    assert set(res["created"]) == {"a"} and res["notCreated"]["b"]["type"] == "blobNotFound"
    assert res["notCreated"]["c"]["type"] == res["notCreated"]["d"]["type"] == "invalidProperties"
    meta = next(iter(store.list_messages(store.get_mailbox(USER, "Archive"))))
    assert store.read(meta) == MIME and meta.flags == {"\\Seen"}  # byte for byte
    e = ok(acct, "Email/get", {"ids": [made["id"]], "properties": ["receivedAt", "subject", "size"]})["list"][0]
    assert e["receivedAt"] == "2023-05-01T12:00:00Z" and e["size"] == len(MIME) == made["size"]
    small = Account(USER, store, quota=len(MIME) + 10, uploads=uploads.get)
    res = ok(small, "Email/import", {"emails": {"x": {"blobId": "Gup1", "mailboxIds": {archive: True}}}})
    assert res["notCreated"]["x"]["type"] == "overQuota"


def test_thread_changes(acct, store):
    a = deliver(store, PLAIN)
    s0 = ok(acct, "Thread/get", {"ids": []})["state"]
    b = deliver(store, REPLY)  # joins a's thread
    c = deliver(store, MIME)  # a new thread
    ch = ok(acct, "Thread/changes", {"sinceState": s0})
    assert ch["created"] == [c.thread_id] and ch["updated"] == [a.thread_id] and ch["destroyed"] == []
    s1 = ch["newState"]
    ok(acct, "Email/set", {"update": {b.email_id: {"keywords/$seen": True}}})  # not a Thread change
    assert ok(acct, "Thread/changes", {"sinceState": s1})["updated"] == []
    ok(acct, "Email/set", {"destroy": [c.email_id, b.email_id]})
    ch = ok(acct, "Thread/changes", {"sinceState": s1})
    assert ch["destroyed"] == [c.thread_id] and ch["updated"] == [a.thread_id]


def test_email_parse_reads_a_blob_without_storing_it(store):
    acct = Account(USER, store, uploads={"Gup": MIME}.get)
    before = store.usage(USER)
    got = ok(acct, "Email/parse", {"blobIds": ["Gup", "Gnope"], "fetchTextBodyValues": True})
    e = got["parsed"]["Gup"]
    assert e["id"] is None and e["subject"] == "Ça va bien" and e["hasAttachment"] is True
    assert e["bodyValues"][e["textBody"][0]["partId"]]["value"] == "café au lait"  # the CRLF is the boundary's
    assert got["notFound"] == ["Gnope"] and store.usage(USER) == before
    a = deliver(store, PLAIN)
    blob = ok(acct, "Email/get", {"ids": [a.email_id], "properties": ["blobId"]})["list"][0]["blobId"]
    got = ok(acct, "Email/parse", {"blobIds": [blob], "properties": ["subject", "size", "blobId"]})
    assert got["parsed"][blob] == {"id": None, "subject": "Hello there", "size": len(PLAIN), "blobId": blob}


# --- the email-id index -----------------------------------------------------------------------
def test_email_get_set_and_download_by_id_read_the_index_not_every_mailbox(store, acct, monkeypatch):
    made = [deliver(store, MIME.replace(b"Subject:", f"X-N: {i}\r\nSubject:".encode()), mailbox=box)
            for i, box in enumerate(["INBOX", "INBOX", "Archive", "Sent"] * 5)]
    listed = []
    real = type(store).list_messages
    monkeypatch.setattr(type(store), "list_messages", lambda self, mb, *a, **k: (listed.append(mb.name),
                                                                                  real(self, mb, *a, **k))[1])
    target = made[6].email_id
    got = ok(acct, "Email/get", {"ids": [target, "Enothere"], "properties": ["id", "mailboxIds", "subject"]})
    assert [e["id"] for e in got["list"]] == [target] and got["notFound"] == ["Enothere"]
    assert got["list"][0]["subject"] == "\u00c7a va bien"
    inbox = mailbox_id(acct, "inbox")
    listed.clear()
    out = ok(acct, "Email/set", {"update": {target: {"keywords/$flagged": True, f"mailboxIds/{inbox}": True}}})
    assert target in out["updated"]
    from postern.jmap import blobs
    from postern.jmap.account import Call

    assert blobs.source(Call(acct), "B" + target[1:]) is not None
    assert listed == []  # no mailbox was listed for any of it
    got = ok(acct, "Email/get", {"ids": [target], "properties": ["mailboxIds", "keywords"]})["list"][0]
    assert got["keywords"] == {"$flagged": True} and len(got["mailboxIds"]) == 2
    # an id the index does not know but the store could have made: the whole view is read (mail stored
    # before the index existed is never missed)
    assert ok(acct, "Email/get", {"ids": ["E" + "0" * 24]})["notFound"] == ["E" + "0" * 24]
    assert listed != []


# --- Email/copy ---------------------------------------------------------------------------------
def test_email_copy_answers_per_rfc_8620_for_the_from_account(acct):
    inbox = mailbox_id(acct, "inbox")
    assert err(acct, "Email/copy", {"fromAccountId": acct.id, "create": {"c": {"id": "E1", "mailboxIds": {
        inbox: True}}}}) == "invalidArguments"  # §5.4: MUST differ; within one account Email/set moves
    assert err(acct, "Email/copy", {"fromAccountId": "aother", "create": {}}) == "fromAccountNotFound"
    assert err(acct, "Email/copy", {"create": {}}) == "invalidArguments"


def test_email_copy_from_a_readable_account_through_the_one_ingest_path(store):
    other_store = memory_store()
    mailboxes.ensure_defaults(other_store, "bob@example.test")
    src = Account("bob@example.test", other_store)
    dest = Account(USER, store, peers=lambda aid: src if aid == src.id else None)
    a = mailboxes.append(other_store, "bob@example.test", "INBOX", MIME, flags=["\\Seen", "$label"],
                         prefix=b"Delivered-To: bob@example.test\r\n")
    b = mailboxes.append(other_store, "bob@example.test", "INBOX", MIME)
    inbox, archive = mailbox_id(dest, "inbox"), mailbox_id(dest, "archive")
    src_state = ok(src, "Email/get", {"ids": []})["state"]
    out = call(dest, ("Email/copy", {"accountId": dest.id, "fromAccountId": src.id, "ifFromInState": src_state,
                                     "create": {
                                         "k": {"id": a.email_id, "mailboxIds": {inbox: True, archive: True}},
                                         "n": {"id": "Enope", "mailboxIds": {inbox: True}},
                                         "x": {"id": b.email_id, "mailboxIds": {inbox: True}, "subject": "no"}}}, "c"))
    kind, body = out["c"]
    assert kind == "Email/copy", body
    assert a.email_id in other_store.find_emails("bob@example.test", [a.email_id])  # no destroy asked
    assert body["notCreated"]["n"]["type"] == "notFound"
    assert body["notCreated"]["x"]["type"] == "invalidProperties" and body["notCreated"]["x"]["properties"] == ["subject"]
    made = body["created"]["k"]
    assert made["id"] != a.email_id and body["newState"] != body["oldState"]
    got = ok(dest, "Email/get", {"ids": [made["id"]], "properties": ["mailboxIds", "keywords", "receivedAt",
                                                                     "header:Delivered-To:asText"]})["list"][0]
    assert got["mailboxIds"] == {inbox: True, archive: True} and got["keywords"] == {"$seen": True, "$label": True}
    assert got["header:Delivered-To:asText"] == "bob@example.test"  # the logical message, byte for byte
    (only,) = store.find_emails(USER, [made["id"]])[made["id"]][:1]
    assert store.read(only[1]) == b"Delivered-To: bob@example.test\r\n" + MIME
    # the implicit Email/set destroyed the original in the source account (RFC 8620 §5.4)
    resp = api.handle(dest, {"using": USING, "methodCalls": [["Email/copy", {
        "fromAccountId": src.id, "onSuccessDestroyOriginal": True,
        "create": {"k2": {"id": b.email_id, "mailboxIds": {inbox: True}, "keywords": {"$flagged": True}}}}, "c"]]})
    (copy_resp, set_resp) = resp["methodResponses"]
    assert copy_resp[0] == "Email/copy" and set_resp[0] == "Email/set" and set_resp[1]["destroyed"] == [b.email_id]
    assert set_resp[1]["accountId"] == src.id and set_resp[2] == "c"
    assert other_store.find_emails("bob@example.test", [b.email_id]) == {}
    assert err(dest, "Email/copy", {"fromAccountId": src.id, "ifFromInState": "0", "create": {}}) == "stateMismatch"
