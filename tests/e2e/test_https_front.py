"""The HTTPS front as `make run` serves it: the real function behind the local CloudFront/HTTP API
stand-in (postern_local.httpfront), driven over loopback with urllib and http.client.

Security headers come from the template's response headers policy; the MTA-STS policy; 401 that
says Bearer; bearer tokens (issued, stored hashed, revoked by sign-out and by a password change);
no password in a URL; the lockout (429) from a client address of its own; Thunderbird autoconfig,
Outlook autodiscover (GET and POST, hostile bodies) and the Apple profile, each validated against
the schemas in tests/schemas/ and naming exactly the stack's ports.
"""

from __future__ import annotations

import base64
import http.client
import json
import plistlib
import secrets
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import xmlschema

from postern.mtasts import parse_policy, settings_policy

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
OUTLOOK_REQ = "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"
OUTLOOK_RESP = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"


def schema(name: str) -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(SCHEMAS / name))


def call(stack, method: str, path: str, host: str = "", body: bytes | None = None, headers: dict | None = None):
    """(status, headers, body) of one request through urllib (errors are answers too)."""
    h = dict(headers or {})
    if host:
        h["Host"] = host
    req = urllib.request.Request(stack.http_url + path, data=body, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def token_for(stack, user: str, password: str) -> str:
    status, _, body = call(stack, "POST", "/auth/token", body=json.dumps({"username": user, "password": password}).encode(),
                           headers={"Content-Type": "application/json"})
    assert status == 200, body
    return json.loads(body)["access_token"]


def test_the_front_runs_with_the_stack(stack):
    assert stack.http_url.startswith("http://127.0.0.1:")


def test_mta_sts_policy_with_the_templates_security_headers(stack, new_domain):
    domain = new_domain()
    status, headers, body = call(stack, "GET", "/.well-known/mta-sts.txt", host=f"mta-sts.{domain}")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert body.decode() == settings_policy(stack.settings)
    policy = parse_policy(body.decode())
    assert policy.mode == "testing" and policy.mx == (stack.settings.hostname,)
    expected = stack.https.headers  # the template's policy, with the local origins (test_webmail_front_e2e.py)
    assert {"Strict-Transport-Security", "X-Frame-Options", "Content-Security-Policy"} <= {n for n, _, _ in expected}
    for name, value, _ in expected:
        assert headers[name] == value, name
    status, headers, body = call(stack, "GET", "/.well-known/mta-sts.txt", host="mta-sts.not-ours.test")
    assert status == 404 and headers["Content-Type"] == "application/problem+json"
    assert headers["X-Frame-Options"] == "DENY"  # on errors too
    assert call(stack, "GET", "/no/such/thing")[0] == 404


def test_401_says_bearer_so_browsers_ask_no_password(stack):
    for method, path in (("POST", "/auth/ticket"), ("GET", "/admin/reports/dmarc"), ("GET", "/.well-known/jmap")):
        status, headers, body = call(stack, method, path)
        assert status == 401, (path, body)
        assert headers["WWW-Authenticate"].startswith("Bearer "), path
        assert json.loads(body)["status"] == 401


def test_bearer_token_issued_hashed_and_revoked(stack, new_user):
    user, pw = new_user()
    token = token_for(stack, user, pw)
    assert token.startswith("pst_")
    stored = json.dumps(stack.clients.dynamodb.scan(TableName=stack.settings.state_table)["Items"])
    assert token not in stored  # only its SHA-256 is kept

    for creds in ({"Authorization": f"Bearer {token}"}, basic(user, pw)):
        status, _, body = call(stack, "POST", "/auth/ticket", headers=creds)
        assert status == 200 and json.loads(body)["ticket"].startswith("psw_")

    # Basic also gets a token; then sign-out revokes exactly the token presented.
    status, _, body = call(stack, "POST", "/auth/token", headers=basic(user, pw))
    second = json.loads(body)["access_token"]
    assert call(stack, "DELETE", "/auth/token", headers={"Authorization": f"Bearer {second}"})[0] == 204
    status, headers, _ = call(stack, "POST", "/auth/ticket", headers={"Authorization": f"Bearer {second}"})
    assert status == 401 and 'error="invalid_token"' in headers["WWW-Authenticate"]
    assert call(stack, "POST", "/auth/ticket", headers={"Authorization": f"Bearer {token}"})[0] == 200

    stack.directory.set_password(user, pw + "-new")  # every token of the account goes with the old password
    assert call(stack, "POST", "/auth/ticket", headers={"Authorization": f"Bearer {token}"})[0] == 401
    assert call(stack, "POST", "/auth/ticket", headers=basic(user, pw + "-new"))[0] == 200


def test_credentials_are_never_taken_from_a_url(stack, new_user):
    user, pw = new_user()
    status, _, body = call(stack, "POST", f"/auth/token?username={user}&password={pw}")
    assert status == 400 and "URL" in json.loads(body)["detail"]


def test_malformed_credentials_are_401_not_500(stack):
    for value in ("Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode(), "Bearer pst_short", "Digest x",
                  "Basic " + "A" * 9000):
        status, headers, _ = call(stack, "POST", "/auth/ticket", headers={"Authorization": value})
        assert status == 401, value
    status, _, _ = call(stack, "POST", "/auth/token", body=b'{"username": 1}', headers={"Content-Type": "application/json"})
    assert status == 400


def _post_from(stack, source: str, path: str, body: bytes) -> tuple[int, dict]:
    port = int(stack.http_url.rsplit(":", 1)[1])
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))
    try:
        c.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        return r.status, dict(r.getheaders())
    finally:
        c.close()


def test_lockout_answers_429_even_to_the_right_password(stack, new_user):
    user, pw = new_user()
    attacker = f"127.0.{secrets.randbelow(200) + 20}.{secrets.randbelow(250) + 2}"
    wrong = json.dumps({"username": user, "password": "wrong"}).encode()
    statuses = [_post_from(stack, attacker, "/auth/token", wrong)[0] for _ in range(stack.settings.auth_fail_user_limit)]
    assert set(statuses) == {401}
    status, headers = _post_from(stack, attacker, "/auth/token", json.dumps({"username": user, "password": pw}).encode())
    assert status == 429 and int(headers["Retry-After"]) > 0


def test_thunderbird_autoconfig_names_the_stacks_ports(stack, new_domain):
    domain = new_domain()
    status, headers, body = call(stack, "GET", "/mail/config-v1.1.xml", host=f"autoconfig.{domain}")
    assert status == 200 and headers["Content-Type"].startswith("application/xml")
    schema("thunderbird-autoconfig-1.1.xsd").validate(body)
    root = ET.fromstring(body)
    servers = [(s.get("type"), int(s.findtext("port")), s.findtext("socketType"))
               for s in root.iter() if s.tag in ("incomingServer", "outgoingServer")]
    p = stack.ports
    assert servers == [("imap", p["imaps"], "SSL"), ("imap", p["imap"], "STARTTLS"), ("pop3", p["pop3s"], "SSL"),
                       ("pop3", p["pop3"], "STARTTLS"), ("smtp", p["submissions"], "SSL"),
                       ("smtp", p["submission"], "STARTTLS")]
    assert p["smtp"] not in [port for _, port, _ in servers]  # the MX port is not for clients
    # The apex redirect's target and an explicit address give the same file; other domains nothing.
    assert call(stack, "GET", f"/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=bob@{domain}")[2] == body
    assert call(stack, "GET", "/mail/config-v1.1.xml", host="autoconfig.not-ours.test")[0] == 404


def _autodiscover_request(address: str) -> bytes:
    root = ET.Element(f"{{{OUTLOOK_REQ}}}Autodiscover")
    req = ET.SubElement(root, f"{{{OUTLOOK_REQ}}}Request")
    ET.SubElement(req, f"{{{OUTLOOK_REQ}}}EMailAddress").text = address
    ET.SubElement(req, f"{{{OUTLOOK_REQ}}}AcceptableResponseSchema").text = OUTLOOK_RESP
    body = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    schema("autodiscover-request-2006.xsd").validate(body)
    return body


def test_outlook_autodiscover_post_and_get(stack, new_domain):
    domain = new_domain()
    address = f"Bob@{domain.upper()}"
    response_schema = schema("autodiscover-response-2006.xsd")
    status, _, posted = call(stack, "POST", "/autodiscover/autodiscover.xml", host=f"autodiscover.{domain}",
                             body=_autodiscover_request(address), headers={"Content-Type": "text/xml"})
    assert status == 200
    response_schema.validate(posted)
    protocols = [(p.findtext(f"{{{OUTLOOK_RESP}}}Type"), int(p.findtext(f"{{{OUTLOOK_RESP}}}Port")),
                  p.findtext(f"{{{OUTLOOK_RESP}}}Encryption"), p.findtext(f"{{{OUTLOOK_RESP}}}LoginName"))
                 for p in ET.fromstring(posted).iter(f"{{{OUTLOOK_RESP}}}Protocol")]
    p = stack.ports
    login = f"bob@{domain}"  # the canonical address (the directory lower-cases it)
    assert protocols == [("IMAP", p["imaps"], "SSL", login), ("IMAP", p["imap"], "TLS", login),
                         ("POP3", p["pop3s"], "SSL", login), ("POP3", p["pop3"], "TLS", login),
                         ("SMTP", p["submissions"], "SSL", login), ("SMTP", p["submission"], "TLS", login)]
    status, _, got = call(stack, "GET", f"/Autodiscover/Autodiscover.xml?Email={login}")
    assert status == 200 and got == posted

    bomb = (b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>'
            b'<Autodiscover><Request><EMailAddress>&b;</EMailAddress></Request></Autodiscover>')
    for hostile in (bomb, b"<Autodiscover><Request>", b"\xff\xfe" * 10, b"<a>" * 100_000):
        status, _, body = call(stack, "POST", "/autodiscover/autodiscover.xml", body=hostile,
                               headers={"Content-Type": "text/xml"})
        assert status == 200, hostile[:40]
        response_schema.validate(body)
        assert ET.fromstring(body).find(".//{*}ErrorCode").text == "600"
    status, _, _ = call(stack, "POST", "/autodiscover/autodiscover.xml", body=_autodiscover_request("x@not-ours.test"),
                        headers={"Content-Type": "text/xml"})
    assert status == 404


def test_apple_profile(stack, new_domain):
    domain = new_domain()
    status, headers, body = call(stack, "GET", f"/apple/mobileconfig?emailaddress=carol@{domain}")
    assert status == 200 and headers["Content-Type"] == "application/x-apple-aspen-config"
    assert headers["Content-Disposition"] == f'attachment; filename="{domain}.mobileconfig"'
    schema("plist-1.0.xsd").validate(body)
    profile = plistlib.loads(body)
    assert profile["PayloadType"] == "Configuration"
    (mail,) = profile["PayloadContent"]
    assert mail["PayloadType"] == "com.apple.mail.managed" and mail["EmailAddress"] == f"carol@{domain}"
    assert (mail["IncomingMailServerPortNumber"], mail["OutgoingMailServerPortNumber"]) == (
        stack.ports["imaps"], stack.ports["submissions"])
    assert mail["IncomingMailServerUseSSL"] and mail["OutgoingMailServerUseSSL"]
    assert not any("Password" in k and k != "OutgoingPasswordSameAsIncomingPassword" for k in mail)
    again = call(stack, "GET", f"/apple/mobileconfig?emailaddress=carol@{domain}")[2]
    assert plistlib.loads(again)["PayloadUUID"] == profile["PayloadUUID"]  # reinstalling replaces, never duplicates
    assert call(stack, "GET", "/apple/mobileconfig")[0] == 400
    assert call(stack, "GET", "/apple/mobileconfig?emailaddress=x@not-ours.test")[0] == 404


def test_bodies_past_the_http_api_quota_are_refused_by_the_front(stack):
    status, _, body = call(stack, "POST", "/auth/token", body=b"x" * (10 * 1024 * 1024 + 1))
    assert status == 413 and json.loads(body) == {"message": "Request Entity Too Large"}


@pytest.mark.parametrize("path", ["/auth/token", "/autodiscover/autodiscover.xml"])
def test_binary_and_empty_bodies_get_clear_answers(stack, path):
    status, _, _ = call(stack, "POST", path, body=bytes(range(256)), headers={"Content-Type": "application/octet-stream"})
    assert status in (200, 400, 401)


def test_a_jmap_session_and_a_call_through_the_front(stack, new_user):
    user, pw = new_user()
    token = token_for(stack, user, pw)
    bearer = {"Authorization": f"Bearer {token}"}
    status, headers, body = call(stack, "GET", "/.well-known/jmap", host="webmail.example.test", headers=bearer)
    assert status == 200 and headers["Cache-Control"] == "no-store", body
    s = json.loads(body)
    assert s["username"] == user and "urn:ietf:params:jmap:mail" in s["capabilities"]
    assert s["apiUrl"].startswith("http://webmail.example.test")  # the host the client asked for
    (account_id,) = s["accounts"]
    request = {"using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"],
               "methodCalls": [["Mailbox/get", {"accountId": account_id}, "m"]]}
    status, _, body = call(stack, "POST", "/jmap/api", body=json.dumps(request).encode(),
                           headers={**basic(user, pw), "Content-Type": "application/json"})
    assert status == 200, body
    (name, result, tag) = json.loads(body)["methodResponses"][0]
    assert (name, tag) == ("Mailbox/get", "m") and "inbox" in {m["role"] for m in result["list"]}
    status, headers, body = call(stack, "POST", "/jmap/api", body=b"\xff not json", headers=bearer)
    assert status == 400 and headers["Content-Type"] == "application/problem+json"
    assert json.loads(body)["type"] == "urn:ietf:params:jmap:error:notJSON"


def test_make_run_prints_the_front_and_how_to_try_it(stack):
    from postern_local.__main__ import banner

    text = banner(stack, Path(".postern-local/env"))
    assert f"HTTPS front:   {stack.http_url}" in text
    assert f"{stack.http_url}/.well-known/jmap" in text and "Host: mta-sts." in text


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def download(stack, path: str, creds: dict) -> tuple[int, dict, bytes]:
    """A JMAP download: the front answers 302 to a presigned S3 GET, which is fetched without the
    credentials (they are the front's; S3 refuses a request with two authentications, as it does
    on AWS: browsers and requests drop Authorization on a redirect to another origin, urllib does not)."""
    from urllib.parse import quote

    req = urllib.request.Request(stack.http_url + quote(path, safe="/?=&{}"), headers=creds)
    try:
        urllib.request.build_opener(_NoRedirect).open(req, timeout=30)
        raise AssertionError("a download is a redirect")
    except urllib.error.HTTPError as e:
        if e.code != 302:
            return e.code, e.headers, e.read()
        location, cache = e.headers["Location"], e.headers["Cache-Control"]
    assert location.startswith(stack.endpoint) and "X-Amz-Signature=" in location and cache == "no-store"
    return _get(location)


def _get(url: str) -> tuple[int, dict, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def test_jmap_download_of_a_delivered_message_and_its_part(stack, new_user):
    import smtplib
    import uuid

    user, pw = new_user()
    raw = (f"From: carol@origin.example\r\nTo: {user}\r\nSubject: file\r\nMessage-ID: <{uuid.uuid4().hex}@o>\r\n"
           "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n"
           "see attached\r\n--b\r\nContent-Type: application/pdf; name=r.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           + base64.b64encode(b"%PDF-1.4 \x00\xff").decode() + "\r\n--b--\r\n").encode()
    with smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=30) as c:
        assert c.sendmail("carol@origin.example", [user], raw) == {}
    stack.drain()
    creds = {**basic(user, pw), "Content-Type": "application/json"}
    s = json.loads(call(stack, "GET", "/.well-known/jmap", headers=creds)[2])
    (acct,) = s["accounts"]
    request = {"using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"], "methodCalls": [
        ["Email/query", {"accountId": acct}, "q"],
        ["Email/get", {"accountId": acct, "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                       "properties": ["blobId", "attachments"]}, "g"]]}
    (email,) = json.loads(call(stack, "POST", "/jmap/api", body=json.dumps(request).encode(), headers=creds)[2]
                          )["methodResponses"][1][1]["list"]
    url = s["downloadUrl"].replace(stack.http_url, "").replace("{accountId}", acct)
    status, headers, body = download(stack, url.replace("{blobId}", email["blobId"]).replace("{name}", "m.eml")
                                     .replace("{type}", "message/rfc822"), creds)
    assert status == 200 and headers["Content-Type"] == "message/rfc822" and body.endswith(raw)
    assert body.startswith(b"Return-Path: <carol@origin.example>")  # the trace prefix: the logical message
    (att,) = email["attachments"]
    status, headers, body = download(stack, url.replace("{blobId}", att["blobId"]).replace("{name}", "r \u00e9.pdf")
                                     .replace("{type}", "application/pdf"), creds)
    assert (status, body) == (200, b"%PDF-1.4 \x00\xff")
    assert headers["Content-Type"] == "application/pdf"
    assert headers["Content-Disposition"] == "attachment; filename*=UTF-8''r%20%C3%A9.pdf"
    # downloaded again: the download object made the first time is used (S3 has no second copy)
    keys = {o["Key"] for o in stack.clients.s3.list_objects_v2(Bucket=stack.settings.bucket, Prefix="dl/")["Contents"]}
    assert download(stack, url.replace("{blobId}", att["blobId"]).replace("{name}", "r.pdf")
                    .replace("{type}", "application/pdf"), creds)[2] == b"%PDF-1.4 \x00\xff"
    assert keys == {o["Key"] for o in stack.clients.s3.list_objects_v2(Bucket=stack.settings.bucket,
                                                                         Prefix="dl/")["Contents"]}
    other, other_pw = new_user()
    assert call(stack, "GET", url.replace("{blobId}", att["blobId"]).replace("{name}", "x").replace("{type}", "a/b"),
                headers=basic(other, other_pw))[0] == 404  # another account's URL
    assert call(stack, "GET", "/jmap/eventsource/?types=*", headers=creds)[0] == 400


def test_jmap_upload_then_import_through_the_front(stack, new_user):
    user, pw = new_user()
    creds = basic(user, pw)
    s = json.loads(call(stack, "GET", "/.well-known/jmap", headers=creds)[2])
    (acct,) = s["accounts"]
    raw = f"From: {user}\r\nTo: {user}\r\nSubject: imported\r\nMessage-ID: <up1@x>\r\n\r\nhello\r\n".encode()
    upload = s["uploadUrl"].replace(stack.http_url, "").replace("{accountId}", acct)
    status, _, body = call(stack, "POST", upload, body=raw, headers={**creds, "Content-Type": "message/rfc822"})
    assert status == 201, body
    up = json.loads(body)
    assert (up["accountId"], up["size"], up["type"]) == (acct, len(raw), "message/rfc822")
    other, other_pw = new_user()
    assert call(stack, "POST", upload, body=raw, headers=basic(other, other_pw))[0] == 404
    request = {"using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"], "methodCalls": [
        ["Mailbox/get", {"accountId": acct}, "m"]]}
    boxes = json.loads(call(stack, "POST", "/jmap/api", body=json.dumps(request).encode(), headers=creds)[2]
                       )["methodResponses"][0][1]["list"]
    inbox = next(m["id"] for m in boxes if m["role"] == "inbox")
    request["methodCalls"] = [["Email/import", {"accountId": acct, "emails": {
        "e": {"blobId": up["blobId"], "mailboxIds": {inbox: True}}}}, "i"]]
    result = json.loads(call(stack, "POST", "/jmap/api", body=json.dumps(request).encode(), headers=creds)[2]
                        )["methodResponses"][0]
    assert "e" in result[1].get("created", {}), result
    big = b"x" * 4_000_001
    status, _, body = call(stack, "POST", upload, body=big, headers=creds)
    assert status == 413 and json.loads(body)["limit"] == "maxSizeUpload"


def test_one_click_unsubscribe_through_the_front_checks_dkim_before_any_post(stack, new_user):
    """List/unsubscribe wired in the real function: an unsigned offer is refused (RFC 8058 §4) and nothing is posted."""
    import smtplib
    import uuid

    user, pw = new_user()
    raw = (f"From: news@list.example\r\nTo: {user}\r\nSubject: weekly\r\nMessage-ID: <{uuid.uuid4().hex}@l>\r\n"
           "List-Unsubscribe: <https://127.0.0.1:9/u>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
           "\r\nnews\r\n").encode()
    with smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=30) as c:
        assert c.sendmail("news@list.example", [user], raw) == {}
    stack.drain()
    creds = {**basic(user, pw), "Content-Type": "application/json"}
    s = json.loads(call(stack, "GET", "/.well-known/jmap", headers=creds)[2])
    (acct,) = s["accounts"]
    assert s["accounts"][acct]["accountCapabilities"]["https://postern.dev/jmap"]["unsubscribe"] is True
    using = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail", "https://postern.dev/jmap"]
    request = {"using": using, "methodCalls": [
        ["Email/query", {"accountId": acct}, "q"],
        ["List/unsubscribe", {"accountId": acct, "#emailId": {"resultOf": "q", "name": "Email/query",
                                                                "path": "/ids/0"}}, "u"]]}
    status, _, body = call(stack, "POST", "/jmap/api", body=json.dumps(request).encode(), headers=creds)
    assert status == 200, body
    name, result, _ = json.loads(body)["methodResponses"][1]
    assert (name, result["type"]) == ("error", "forbidden") and "DKIM" in result["description"], result
