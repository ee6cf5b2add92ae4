"""JMAP Sieve scripts (RFC 9661), Identity/set and /changes, and the Postern capability (password change,
simple filters, report summaries), driven with request objects (no transport) over the in-memory items:
the same repository, managed rules and directory the CLI and ManageSieve use."""

from __future__ import annotations

import time

import pytest

from postern import mailboxes
from postern.credentials import change_password
from postern.directory import Directory
from postern.identities import IdentityStore
from postern.items import MemoryItems
from postern.jmap import api, session
from postern.jmap.account import Account
from postern.sieve import EXTENSIONS
from postern.sieve.managed import Managed, render
from postern.sieve.repository import ScriptRepository
from postern.store import memory_store

USER = "alice@example.test"
SIEVE = [session.CORE, session.SIEVE]
PST = [session.CORE, session.POSTERN]
SUB = [session.CORE, session.MAIL, session.SUBMISSION]
GOOD = b'require "fileinto";\r\nif header :contains "subject" "invoice" { fileinto "Bills"; }\r\n'
BAD = b'require "fileinto";\r\nif header :contains "subject" "x" {\r\n  fileinto "Bills"\r\n}\r\n'


@pytest.fixture
def world():
    items = MemoryItems()
    uploads: dict[str, bytes] = {}
    repo = ScriptRepository(items, max_size=1024, max_scripts=3)
    store = memory_store()
    mailboxes.ensure_defaults(store, USER)
    acct = Account(USER, store, senders=frozenset({USER, "sales@example.test"}), name="Alice",
                   uploads=uploads.get, scripts=repo, rules=Managed(repo), identity_store=IdentityStore(items),
                   sieve_redirects=4)
    return acct, repo, uploads


def run(acct, using, *calls):
    out = api.handle(acct, {"using": using, "methodCalls": [list(c) for c in calls]})
    return [(r[0], r[1]) for r in out["methodResponses"]]


def ok(acct, using, name, args) -> dict:
    ((kind, body),) = run(acct, using, (name, args, "c"))
    assert kind == name, body
    return body


def upload(uploads, data: bytes) -> str:
    blob = f"U{len(uploads):064x}"
    uploads[blob] = data
    return blob


def test_session_advertises_sieve_with_the_repository_limits(world):
    acct, _, _ = world
    s = session.build(acct, "https://x")
    caps = s["accounts"][acct.id]["accountCapabilities"]
    assert session.SIEVE in s["capabilities"] and session.POSTERN in s["capabilities"]
    assert s["capabilities"][session.SIEVE] == {"implementation": "Postern"}  # RFC 9661 §1.2.1: the server's
    assert caps[session.SIEVE] == {"maxSizeScriptName": 512, "maxSizeScript": 1024,
                                   "maxNumberScripts": 3, "maxNumberRedirects": 4,
                                   "sieveExtensions": list(EXTENSIONS), "notificationMethods": None,
                                   "externalLists": None}
    assert caps[session.POSTERN]["filters"] is True and caps[session.POSTERN]["reports"] is False
    assert s["primaryAccounts"][session.SIEVE] == acct.id


def test_create_activate_get_query_update_destroy(world):
    acct, repo, uploads = world
    res = ok(acct, SIEVE, "SieveScript/set", {"create": {"a": {"name": "bills", "blobId": upload(uploads, GOOD)}},
                                              "onSuccessActivateScript": "#a"})
    made = res["created"]["a"]
    assert made["isActive"] is True and made["name"] == "bills"
    assert repo.active(USER).text == GOOD.decode()  # what delivery reads: the ManageSieve repository
    got = ok(acct, SIEVE, "SieveScript/get", {})
    assert got["list"] == [{"id": made["id"], "name": "bills", "blobId": made["blobId"], "isActive": True}]
    assert got["state"] == res["newState"] != res["oldState"]
    # the content is a blob of its own (downloadable, usable as another script's content)
    from postern.jmap import blobs
    from postern.jmap.account import Call

    assert blobs.read(Call(acct), made["blobId"])[0] == GOOD
    res = ok(acct, SIEVE, "SieveScript/set", {"create": {"b": {"name": None, "blobId": made["blobId"]}}})
    second = res["created"]["b"]
    assert second["name"] == "script-1" and second["isActive"] is False
    q = ok(acct, SIEVE, "SieveScript/query", {"filter": {"isActive": False}})
    assert q["ids"] == [second["id"]]
    assert ok(acct, SIEVE, "SieveScript/query", {"sort": [{"property": "name", "isAscending": False}]})["ids"] == \
        [second["id"], made["id"]]
    # rename + activate the other: both isActive changes reported
    res = ok(acct, SIEVE, "SieveScript/set", {"update": {second["id"]: {"name": "other"}},
                                              "onSuccessActivateScript": second["id"]})
    assert res["updated"] == {second["id"]: {"name": "other", "isActive": True}, made["id"]: {"isActive": False}}
    assert repo.active(USER).info.name == "other"
    # the active one cannot be destroyed; after deactivation it can
    res = ok(acct, SIEVE, "SieveScript/set", {"destroy": [second["id"]]})
    assert res["notDestroyed"][second["id"]]["type"] == "sieveIsActive"
    res = ok(acct, SIEVE, "SieveScript/set", {"onSuccessDeactivateScript": True})
    assert res["updated"] == {second["id"]: {"isActive": False}} and repo.active(USER) is None
    res = ok(acct, SIEVE, "SieveScript/set", {"destroy": [second["id"]]})
    assert res["destroyed"] == [second["id"]] and [i.name for i in repo.list(USER)] == ["bills"]
    # /changes: the current state answers "nothing"; another asks the client to refetch
    st = ok(acct, SIEVE, "SieveScript/get", {"ids": []})["state"]
    ch = ok(acct, SIEVE, "SieveScript/changes", {"sinceState": st})
    assert (ch["created"], ch["updated"], ch["destroyed"], ch["newState"]) == ([], [], [], st)
    ((kind, body),) = run(acct, SIEVE, ("SieveScript/changes", {"sinceState": res["oldState"]}, "c"))
    assert (kind, body["type"]) == ("error", "cannotCalculateChanges")


def test_invalid_script_is_invalidsieve_with_line_and_column_and_never_stored(world):
    acct, repo, uploads = world
    bad = upload(uploads, BAD)
    res = ok(acct, SIEVE, "SieveScript/set", {"create": {"x": {"name": "broken", "blobId": bad}},
                                              "onSuccessActivateScript": "#x"})
    err = res["notCreated"]["x"]
    assert err["type"] == "invalidSieve" and err["description"].startswith("4:1: ")  # line 4 column 1: the "}"
    assert repo.list(USER) == [] and repo.active(USER) is None
    v = ok(acct, SIEVE, "SieveScript/validate", {"blobId": bad})
    assert v["error"]["type"] == "invalidSieve" and v["error"]["description"] == err["description"]
    assert ok(acct, SIEVE, "SieveScript/validate", {"blobId": upload(uploads, GOOD)})["error"] is None
    assert ok(acct, SIEVE, "SieveScript/validate", {"blobId": "Unope"})["error"]["type"] == "blobNotFound"
    # an update with bad content leaves the stored script as it was
    made = ok(acct, SIEVE, "SieveScript/set", {"create": {"g": {"name": "good", "blobId": upload(uploads, GOOD)}}})
    sid = made["created"]["g"]["id"]
    res = ok(acct, SIEVE, "SieveScript/set", {"update": {sid: {"name": "renamed", "blobId": bad}}})
    assert res["notUpdated"][sid]["type"] == "invalidSieve"
    assert [(i.name, repo.get(USER, i.name).text) for i in repo.list(USER)] == [("good", GOOD.decode())]


def test_limits_are_the_repositorys(world):
    acct, repo, uploads = world
    big = b"# " + b"x" * 1100 + b"\r\nkeep;\r\n"
    res = ok(acct, SIEVE, "SieveScript/set", {"create": {"big": {"name": "big", "blobId": upload(uploads, big)}}})
    assert res["notCreated"]["big"]["type"] == "tooLarge"
    blob = upload(uploads, GOOD)
    res = ok(acct, SIEVE, "SieveScript/set", {"create": {str(i): {"name": f"s{i}", "blobId": blob} for i in range(4)}})
    assert sorted(res["created"]) == ["0", "1", "2"] and res["notCreated"]["3"]["type"] == "overQuota"
    res = ok(acct, SIEVE, "SieveScript/set", {"create": {"dup": {"name": "s0", "blobId": blob}}})
    assert res["notCreated"]["dup"]["type"] == "alreadyExists"
    assert res["notCreated"]["dup"]["existingId"] == res["created"].get("x", {}).get("id", repo.get(USER, "s0").info.id)
    res = ok(acct, SIEVE, "SieveScript/set", {"create": {"n": {"name": "a\nb", "blobId": blob}}})
    assert res["notCreated"]["n"]["type"] in ("invalidProperties", "overQuota")
    repo.delete(USER, "s2")
    res = ok(acct, SIEVE, "SieveScript/set", {"create": {"n": {"name": "a\nb", "blobId": blob},
                                                         "a": {"name": "x", "blobId": blob, "isActive": True}}})
    assert res["notCreated"]["n"] == {"type": "invalidProperties", "properties": ["name"],
                                      "description": "A script name may not hold control characters"}
    assert res["notCreated"]["a"]["properties"] == ["isActive"]


def test_managed_script_is_not_a_user_script(world):
    acct, repo, _ = world
    Managed(repo).set_filters(USER, [])
    Managed(repo).allow(USER, "friend@remote.test")
    assert ok(acct, SIEVE, "SieveScript/get", {})["list"] == []


def test_filters_write_the_managed_scripts_filter_part(world):
    acct, repo, _ = world
    res = ok(acct, PST, "Filter/set", {"create": {
        "f": {"field": "from", "value": "boss@corp.test", "folder": "Work/Boss"},
        "g": {"field": "subject", "match": "is", "value": "x", "folder": "bad\x00name"}}})
    fid = res["created"]["f"]["id"]
    assert res["notCreated"]["g"]["type"] == "invalidProperties"
    rules = Managed(repo).rules(USER)
    assert [(f.field, f.match, f.value, f.folder) for f in rules.filters] == [("from", "contains", "boss@corp.test",
                                                                             "Work/Boss")]
    assert 'address :contains :all "from" "boss@corp.test" { fileinto :create "Work/Boss"; }' in render(rules)
    got = ok(acct, PST, "Filter/get", {})
    assert got["list"] == [{"id": fid, "field": "from", "match": "contains", "value": "boss@corp.test",
                            "folder": "Work/Boss"}]
    res = ok(acct, PST, "Filter/set", {"update": {fid: {"folder": "Boss"}}, "ifInState": got["state"]})
    assert res["updated"] == {fid: None} and res["newState"] != got["state"]  # the id stays (RFC 8620: immutable)
    assert Managed(repo).rules(USER).filters[0].folder == "Boss"
    res = ok(acct, PST, "Filter/set", {"update": {fid: {"id": "Fother"}}})
    assert res["notUpdated"][fid]["type"] == "invalidProperties"
    res = ok(acct, PST, "Filter/set", {"destroy": [fid]})
    assert res["destroyed"] == [fid] and Managed(repo).rules(USER).filters == ()
    ((kind, body),) = run(acct, PST, ("Filter/set", {"destroy": [], "ifInState": got["state"]}, "c"))
    assert (kind, body["type"]) == ("error", "stateMismatch")


def test_password_change_through_the_one_rule():
    d = Directory(MemoryItems())
    d.add_domain("example.test")
    user = d.add_user(USER, "old-secret")
    acct = Account(USER, memory_store(),
                   change_password=lambda old, new: change_password(d, USER, old, new))
    ((kind, body),) = run(acct, PST, ("Password/change", {"oldPassword": "wrong", "newPassword": "n"}, "c"))
    assert (kind, body["type"]) == ("error", "forbidden")
    ((kind, body),) = run(acct, PST, ("Password/change", {"oldPassword": "old-secret", "newPassword": "a\r\nb"}, "c"))
    assert (kind, body["type"]) == ("error", "invalidArguments") and "control characters" in body["description"]
    assert ok(acct, PST, "Password/change", {"oldPassword": "old-secret", "newPassword": "new-secret"}) == \
        {"accountId": acct.id}
    assert d.authenticate(USER, "old-secret") is None and d.authenticate(USER, "new-secret") is not None
    assert d.get_user(USER).generation != user.generation  # every bearer token of the account revoked
    ((kind, body),) = run(Account(USER, memory_store()), PST,
                          ("Password/change", {"oldPassword": "x", "newPassword": "y"}, "c"))
    assert body["type"] == "accountNotSupportedByMethod"


def test_identity_set_and_changes_with_the_submission_sender_rule(world):
    acct, _, _ = world
    got = ok(acct, SUB, "Identity/get", {})
    s0 = got["state"]
    own = next(i for i in got["list"] if i["email"] == USER)
    res = ok(acct, SUB, "Identity/set", {
        "update": {own["id"]: {"name": "Alice A.", "textSignature": "-- \nAlice",
                               "replyTo": [{"email": "a@remote.test"}]}},
        "create": {"tag": {"email": "alice+news@example.test", "name": "Alice (news)"},
                   "alias": {"email": "sales@example.test", "htmlSignature": "<b>Sales</b>"},
                   "theft": {"email": "bob@example.test"},
                   "bad": {"email": USER, "bcc": [{"email": "not an address"}]}},
        "destroy": [own["id"]]})
    assert set(res["created"]) == {"tag", "alias"} and res["created"]["tag"]["mayDelete"] is True
    assert res["notCreated"]["theft"]["type"] == "forbiddenFrom"
    assert res["notCreated"]["bad"]["properties"] == ["bcc"]
    assert res["notDestroyed"][own["id"]]["type"] == "forbidden" and res["updated"] == {own["id"]: None}
    tag = res["created"]["tag"]["id"]
    every = {i["id"]: i for i in ok(acct, SUB, "Identity/get", {})["list"]}
    assert every[own["id"]]["name"] == "Alice A." and every[own["id"]]["replyTo"] == [{"name": None,
                                                                                       "email": "a@remote.test"}]
    assert every[tag]["email"] == "alice+news@example.test" and len(every) == 4
    ch = ok(acct, SUB, "Identity/changes", {"sinceState": s0})
    assert sorted(ch["created"]) == sorted([tag, res["created"]["alias"]["id"]]) and ch["updated"] == [own["id"]]
    s1 = ch["newState"]
    res = ok(acct, SUB, "Identity/set", {"destroy": [tag], "update": {tag: {"email": "x@example.test"}}})
    assert res["destroyed"] == [tag] and res["notUpdated"][tag]["type"] in ("invalidProperties", "notFound")
    ch = ok(acct, SUB, "Identity/changes", {"sinceState": s1})
    assert ch["destroyed"] == [tag] and ch["created"] == []
    alias = next(i for i in every.values() if i["email"] == "sales@example.test" and i["mayDelete"])
    whole = ok(acct, SUB, "Identity/changes", {"sinceState": s0})  # tag: created and destroyed since s0, so absent
    assert (whole["created"], whole["updated"], whole["destroyed"]) == ([alias["id"]], [own["id"]], [])


def test_report_get_is_for_admins_and_reads_what_postern_report_reads():
    from postern.reports.dmarc import parse
    from postern.reports.summaries import ReportStore, as_json, summary_for

    from report_samples import dmarc_xml

    d = Directory(MemoryItems())
    d.add_domain("example.test")
    store = ReportStore(MemoryItems())
    store.put("example.test", parse(dmarc_xml(end=int(time.time()) - 3600)))

    def reports(kind, domain, days):
        return as_json(summary_for(d, store, kind, domain, days))

    admin = Account(USER, memory_store(), reports=reports)
    res = ok(admin, PST, "Report/get", {"ids": ["dmarc", "nope"], "days": 400})
    (summary,) = res["list"]
    assert summary == {"id": "dmarc", **as_json(summary_for(d, store, "dmarc", None, 400))}
    assert summary["reports"] == 1 and res["notFound"] == ["nope"]
    ((kind, body),) = run(admin, PST, ("Report/get", {"domain": "elsewhere.test"}, "c"))
    assert (kind, body["type"]) == ("error", "invalidArguments")
    ((kind, body),) = run(Account(USER, memory_store()), PST, ("Report/get", {}, "c"))
    assert (kind, body["type"]) == ("error", "forbidden")
