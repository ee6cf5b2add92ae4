"""JMAP Sieve (RFC 9661), the Postern capability and Identity/set end to end: jmaplib against the real
HTTPS function behind make run's local front (plain HTTP on loopback, as `make run` serves it), mail in
over SMTP through the real router and store Lambdas, results read over IMAP with imaplib.

A script uploaded over JMAP files a delivered message (seen over IMAP); a broken one is invalidSieve
with its line and column and is never stored; the repository's limits answer as RFC 9661 says; the
simple filters of the Postern capability file mail through the managed script; a password changed over
JMAP refuses the old password over IMAP at once (even after a cached login) and revokes bearer tokens;
an admin reads the same DMARC summary `postern report dmarc` prints, a user is refused.
"""

from __future__ import annotations

import imaplib
import json
import secrets
import smtplib
import time
import urllib.error
import urllib.request

import httpx
import pytest
from jmap import MethodError
from jmap.capabilities.spec import CapabilitySpec, DataTypeSpec, MethodKind, MethodSpec
from jmap.client import JMAPClient
from jmap.defaults import default_registry

from postern.cli import main as postern
from postern.jmap.session import POSTERN, SIEVE
from postern.reports.dmarc import parse
from postern.reports.summaries import as_json, report_store, summary_for
from postern.sieve.repository import repository

from report_samples import dmarc_xml

HOST = "127.0.0.1"
FILE_RECEIPTS = ('require ["fileinto", "mailbox"];\r\n'
                 'if header :contains "subject" "receipt" {\r\n  fileinto :create "Receipts";\r\n}\r\n')
BROKEN = 'require "fileinto";\r\nif header :contains "subject" "x" {\r\n  fileinto "Receipts"\r\n}\r\n'


def registry():
    """jmaplib's registry plus the Postern capability, described as jmaplib describes any third-party one."""
    reg = default_registry()
    reg.register(CapabilitySpec(
        urn=POSTERN, reference="Postern README", data_types=(DataTypeSpec("Filter"), DataTypeSpec("Report")),
        methods=(MethodSpec("Password/change", MethodKind.CUSTOM, mutating=True, stateful=False),
                 MethodSpec("Filter/get", MethodKind.GET), MethodSpec("Filter/set", MethodKind.SET, mutating=True),
                 MethodSpec("Report/get", MethodKind.CUSTOM))))
    return reg


def connect(stack, user: str, password: str) -> JMAPClient:
    return JMAPClient.connect(stack.http_url + "/.well-known/jmap", auth=httpx.BasicAuth(user, password),
                              registry=registry())


def call(c: JMAPClient, name: str, args: dict, *extra: str) -> dict:
    """One method call; its arguments as on the wire (jmaplib parses what it knows into models)."""
    with c.batch(extra_using=frozenset(extra)) as b:
        h = b.add(name, args)
    result = h.result
    return result.model_dump(by_alias=True) if hasattr(result, "model_dump") else result


def send(stack, rcpt: str, subject: str, sender: str = "shop@remote.example") -> None:
    raw = (f"From: {sender}\r\nTo: {rcpt}\r\nSubject: {subject}\r\nMessage-ID: <{secrets.token_hex(6)}@e2e.test>"
           f"\r\n\r\nBody of {subject}.\r\n").encode()
    with smtplib.SMTP(HOST, stack.smtp_port, timeout=30) as s:
        assert s.sendmail(sender, [rcpt], raw) == {}


def subjects(stack, user: str, password: str, mailbox: str) -> list[str]:
    c = imaplib.IMAP4(HOST, stack.imap_port, timeout=30)
    try:
        c.login(user, password)
        typ, data = c.select(f'"{mailbox}"', readonly=True)
        if typ != "OK":
            return []
        out = []
        for i in range(1, int(data[0]) + 1):
            _, msg = c.fetch(str(i), "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            out.append(msg[0][1].decode().strip().removeprefix("Subject: "))
        return out
    finally:
        c.logout()


def test_script_uploaded_over_jmap_files_smtp_mail_seen_over_imap(stack, new_user):
    user, pw = new_user("alice")
    c = connect(stack, user, pw)
    account = c.session.accounts[c.default_account]
    sieve = account.account_capabilities[SIEVE]
    assert sieve["maxSizeScript"] == stack.settings.sieve_max_script_size  # ManageSieve's limits, one rule
    assert sieve["maxNumberScripts"] == stack.settings.sieve_max_scripts and "fileinto" in sieve["sieveExtensions"]
    # a broken script: invalidSieve with line:column, nothing stored
    bad = c.upload(BROKEN.encode(), content_type="application/sieve").blob_id
    res = call(c, "SieveScript/set", {"create": {"b": {"name": "broken", "blobId": bad}}})
    assert res["notCreated"]["b"]["type"] == "invalidSieve" and res["notCreated"]["b"]["description"].startswith("4:1:")
    assert call(c, "SieveScript/validate", {"blobId": bad})["error"]["type"] == "invalidSieve"
    # the good one, activated in the same call
    good = c.upload(FILE_RECEIPTS.encode(), content_type="application/sieve").blob_id
    res = call(c, "SieveScript/set", {"create": {"s": {"name": "receipts", "blobId": good}},
                                      "onSuccessActivateScript": "#s"})
    assert res["created"]["s"]["isActive"] is True, res
    active = repository(stack.settings, stack.clients).active(user)  # what ManageSieve and delivery see
    assert active.info.name == "receipts" and active.text == FILE_RECEIPTS
    got = call(c, "SieveScript/get", {})["list"]
    assert [(s["name"], s["isActive"]) for s in got] == [("receipts", True)]
    # its content downloads as a blob
    url = c.session.download_url.format(accountId=c.default_account, blobId=got[0]["blobId"], name="x.sieve",
                                        type="application/sieve")
    assert c.http.get(url).content == FILE_RECEIPTS.encode()
    send(stack, user, "Your receipt 42")
    send(stack, user, "Hello")
    stack.drain()
    assert subjects(stack, user, pw, "Receipts") == ["Your receipt 42"]
    assert subjects(stack, user, pw, "INBOX") == ["Hello"]


def test_script_limits_over_jmap(stack, new_user):
    user, pw = new_user()
    c = connect(stack, user, pw)
    big = c.upload(b"# " + b"x" * stack.settings.sieve_max_script_size + b"\r\nkeep;\r\n").blob_id
    res = call(c, "SieveScript/set", {"create": {"big": {"name": "big", "blobId": big}}})
    assert res["notCreated"]["big"]["type"] == "tooLarge"
    blob = c.upload(b"keep;\r\n").blob_id
    n = stack.settings.sieve_max_scripts
    res = call(c, "SieveScript/set", {"create": {f"c{i}": {"name": f"s{i}", "blobId": blob} for i in range(n + 1)}})
    assert len(res["created"]) == n and res["notCreated"][f"c{n}"]["type"] == "overQuota"
    res = call(c, "SieveScript/set", {"destroy": [res["created"]["c0"]["id"]], "onSuccessActivateScript":
                                      res["created"]["c1"]["id"]})
    assert len(res["destroyed"]) == 1
    active = call(c, "SieveScript/query", {"filter": {"isActive": True}})["ids"]
    res = call(c, "SieveScript/set", {"destroy": active})
    assert res["notDestroyed"][active[0]]["type"] == "sieveIsActive"


def test_simple_filters_of_the_postern_capability_file_mail(stack, new_user):
    user, pw = new_user()
    c = connect(stack, user, pw)
    assert c.session.capabilities[POSTERN] == {} and c.session.accounts[c.default_account].account_capabilities[
        POSTERN]["filters"] is True
    res = call(c, "Filter/set", {"create": {"f": {"field": "from", "value": "boss@corp.example",
                                                  "folder": "Work/Boss"}}}, POSTERN)
    assert "f" in res["created"], res
    send(stack, user, "Quarterly plan", sender="boss@corp.example")
    stack.drain()
    assert subjects(stack, user, pw, "Work/Boss") == ["Quarterly plan"]
    assert call(c, "Filter/get", {}, POSTERN)["list"][0]["folder"] == "Work/Boss"


def _status(stack, method: str, path: str, headers: dict, body: bytes | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(stack.http_url + path, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_password_changed_over_jmap_refuses_the_old_one_over_imap_and_revokes_tokens(stack, new_user):
    user, old = new_user()
    assert subjects(stack, user, old, "INBOX") == []  # an IMAP login with the old password: now in the auth cache
    status, body = _status(stack, "POST", "/auth/token", {"Content-Type": "application/json"},
                           json.dumps({"username": user, "password": old}).encode())
    assert status == 200
    token = json.loads(body)["access_token"]
    c = connect(stack, user, old)
    # (a wrong old password is `forbidden` and counts as a failed login: the unit tests cover it, so this
    # suite's shared 127.0.0.1 spends one failure only - the old password over IMAP below)
    new = "n3w-Secret-" + secrets.token_hex(4)
    heard = stack.gateway.change_feed.credentials
    assert call(c, "Password/change", {"oldPassword": old, "newPassword": new}, POSTERN) == {"accountId":
                                                                                              c.default_account}
    # the change reaches the gateway task on the change feed (the directory's stream, FeedFunction, its
    # queue): its cached login of the old password ends there, with no directory read per login
    stack.drain()
    end = time.monotonic() + 30
    while stack.gateway.change_feed.credentials <= heard and time.monotonic() < end:
        time.sleep(0.05)
    assert stack.gateway.change_feed.credentials > heard
    imap = imaplib.IMAP4(HOST, stack.imap_port, timeout=30)
    try:
        with pytest.raises(imaplib.IMAP4.error):
            imap.login(user, old)
    finally:
        imap.shutdown()
    assert subjects(stack, user, new, "INBOX") == []
    assert _status(stack, "GET", "/jmap/session", {"Authorization": f"Bearer {token}"})[0] == 401
    assert connect(stack, user, new).session.username == user


def test_admin_reads_report_summaries_over_jmap(stack, new_user, new_domain, capsys):
    domain = new_domain()
    admin, admin_pw = new_user("postmaster", domain)
    user, user_pw = new_user("user", domain)
    report_store(stack.settings, stack.clients).put(domain, parse(dmarc_xml(domain=domain, end=int(time.time()) - 60)))
    postern(["user", "admin", admin], settings=stack.settings, clients=stack.clients)
    c = connect(stack, admin, admin_pw)
    res = call(c, "Report/get", {"ids": ["dmarc"], "domain": domain, "days": 7}, POSTERN)
    (summary,) = res["list"]
    expected = as_json(summary_for(stack.directory, report_store(stack.settings, stack.clients), "dmarc", domain, 7))
    assert summary == {"id": "dmarc", **expected} and summary["reports"] == 1 and summary["failed"] == 3
    capsys.readouterr()
    assert postern(["report", "dmarc", "--domain", domain], settings=stack.settings, clients=stack.clients) == 0
    assert "5 pass, 3 fail" in capsys.readouterr().out  # the same numbers `postern report` prints
    with pytest.raises(MethodError) as refused:
        call(connect(stack, user, user_pw), "Report/get", {}, POSTERN)
    assert refused.value.type == "forbidden"


def test_jmapc_sets_identities_only_for_owned_addresses(stack, new_user, new_domain):
    """jmapc (IdentityGet/Set/Changes) against the same front: an identity for the user's +tag address is
    created, one for a neighbour's address is forbiddenFrom (the submission sender rule), a signature set
    on the address's own identity shows in Identity/changes."""
    from urllib.parse import urlsplit

    from jmapc import Client
    from jmapc.methods import IdentityChanges, IdentityGet, IdentitySet
    from jmapc.models import Identity
    from requests.adapters import HTTPAdapter

    class SessionOverHttp(HTTPAdapter):  # jmapc asks https://HOST/.well-known/jmap; the local front is HTTP
        def send(self, request, **kwargs):
            request.url = "http://" + request.url[len("https://"):]
            return super().send(request, **kwargs)

    domain = new_domain()
    user, pw = new_user("alice", domain)
    neighbour, _ = new_user("bob", domain)
    c = Client.create_with_password(host=urlsplit(stack.http_url).netloc, user=user, password=pw)
    c.requests_session.mount(f"https://{urlsplit(stack.http_url).netloc}/.well-known/jmap", SessionOverHttp())
    own = c.request(IdentityGet())
    state = own.state
    (mine,) = own.data
    assert (mine.email, mine.may_delete) == (user, False)

    def identity(email: str) -> Identity:
        return Identity(name="Alice (news)", email=email, reply_to=None, bcc=None, text_signature="-- \nAlice",
                        html_signature=None, may_delete=True)

    res = c.request(IdentitySet(create={"tag": identity(user.replace("@", "+news@")),
                                        "theft": identity(neighbour)},
                                update={mine.id: {"textSignature": "-- \nAlice, Postern"}}))
    assert res.created["tag"].id and res.not_created["theft"].type == "forbiddenFrom"
    changes = c.request(IdentityChanges(since_state=state))
    assert changes.created == [res.created["tag"].id] and changes.updated == [mine.id]
    got = {i.email: i for i in c.request(IdentityGet()).data}
    assert got[user].text_signature == "-- \nAlice, Postern" and got[user.replace("@", "+news@")].may_delete
