"""One-click unsubscribe (RFC 8058): postern.unsubscribe and the JMAP ``List/unsubscribe`` method.

The POST goes to a real HTTPS server on loopback (a thread here), which the default address rule
refuses: the tests that reach it pass an ``allow`` that admits 127.0.0.1 and a TLS context that
trusts its self-signed certificate. DNS (DKIM keys, the list host) is postern.dns.StaticResolver.
"""

from __future__ import annotations

import base64
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from postern import mailboxes
from postern.dns import DnsTransient, StaticResolver
from postern.jmap import api, session
from postern.jmap.account import Account
from postern.store import memory_store
from postern.unsubscribe import (ONE_CLICK, NotOffered, NotSigned, Refused, dkim_dnsfunc, one_click_url, post,
                                 public_address, unsubscribe)
from postern_gateway.trust.tls import self_signed

USER = "alice@example.test"
LIST = b"List-Unsubscribe: <mailto:leave@list.test>, <https://localhost:%d/u?id=42>\r\n"
POST = b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"


@pytest.fixture(scope="module")
def key():
    k = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    priv = k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                           serialization.NoEncryption())
    pub = k.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    resolver = StaticResolver(txt_records={"s1._domainkey.list.test": [
        "v=DKIM1; k=rsa; p=" + base64.b64encode(pub).decode()]}, a_records={"localhost": ["127.0.0.1"]})
    return priv, resolver


def message(fields: bytes, key=None, signed=(b"from", b"subject", b"list-unsubscribe", b"list-unsubscribe-post")) -> bytes:
    raw = (b"From: News <news@list.test>\r\nTo: alice@example.test\r\nSubject: Weekly\r\n"
           b"Date: Mon, 7 Dec 2026 10:00:00 +0000\r\nMessage-ID: <w1@list.test>\r\n" + fields + b"\r\nNews body\r\n")
    if key is None:
        return raw
    return dkim.sign(raw, b"s1", b"list.test", key, include_headers=list(signed)) + raw


class ListServer:
    """An HTTPS list server on loopback that records the POSTs it gets and answers ``status``."""

    def __init__(self, directory, status: int = 200):
        cert, pkey = self_signed("localhost")
        self.status = status
        self.posts: list[tuple[str, str, bytes]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.posts.append((self.path, self.headers.get("Content-Type", ""), body))
                self.send_response(owner.status)
                if 300 <= owner.status < 400:
                    self.send_header("Location", "https://localhost:1/elsewhere")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        cert_file, key_file = directory / "cert.pem", directory / "key.pem"
        cert_file.write_bytes(cert)
        key_file.write_bytes(pkey)
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.load_cert_chain(cert_file, key_file)
        self.server.socket = server_ctx.wrap_socket(self.server.socket, server_side=True)
        self.client_ctx = ssl.create_default_context(cafile=cert_file)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture
def list_server(tmp_path):
    s = ListServer(tmp_path)
    yield s
    s.close()


def loopback(host):
    return ["127.0.0.1"]


# --- what a message offers ---------------------------------------------------------------------------

def test_a_signed_one_click_offer_gives_its_https_uri(key):
    priv, resolver = key
    raw = message(LIST % 8443 + POST, priv)
    assert one_click_url(raw, dkim_dnsfunc(resolver)) == "https://localhost:8443/u?id=42"


@pytest.mark.parametrize("fields", [
    LIST % 8443,  # no List-Unsubscribe-Post: mailto/https links only, not one-click
    LIST % 8443 + b"List-Unsubscribe-Post: List-Unsubscribe=Yes-Please\r\n",
    b"List-Unsubscribe: <mailto:leave@list.test>\r\n" + POST,  # no https URI
    b"List-Unsubscribe: <http://list.test/u>\r\n" + POST,  # plain http is never posted to
    POST,
])
def test_no_one_click_offer_is_not_offered(key, fields):
    priv, resolver = key
    with pytest.raises(NotOffered) as info:
        one_click_url(message(fields, priv), dkim_dnsfunc(resolver))
    assert info.value.jmap_type == "invalidArguments"


def test_the_offer_must_be_covered_by_a_valid_dkim_signature(key):
    priv, resolver = key
    dns = dkim_dnsfunc(resolver)
    with pytest.raises(NotSigned) as info:
        one_click_url(message(LIST % 8443 + POST), dns)  # unsigned
    assert info.value.jmap_type == "forbidden"
    with pytest.raises(NotSigned):  # signed, but not over List-Unsubscribe-Post (RFC 8058 §4)
        one_click_url(message(LIST % 8443 + POST, priv, signed=(b"from", b"subject", b"list-unsubscribe")), dns)
    signed = message(LIST % 8443 + POST, priv)
    tampered = signed.replace(b"/u?id=42", b"/u?id=43")  # a relay changed the URL after signing
    with pytest.raises(NotSigned):
        one_click_url(tampered, dns)
    with pytest.raises(NotSigned):  # no key published
        one_click_url(signed, dkim_dnsfunc(StaticResolver()))
    failing = StaticResolver(failures={"s1._domainkey.list.test": DnsTransient("timeout")})
    with pytest.raises(NotSigned):  # DNS down: not verified, so not posted
        one_click_url(signed, dkim_dnsfunc(failing))


# --- the POST -------------------------------------------------------------------------------------

def test_the_post_is_rfc8058s_body_to_the_uri(list_server):
    status = post(f"https://localhost:{list_server.port}/u?id=42", resolve=loopback,
                  context=list_server.client_ctx, allow=lambda a: True)
    assert status == 200
    assert list_server.posts == [("/u?id=42", "application/x-www-form-urlencoded", ONE_CLICK.encode())]


def test_a_redirect_or_an_error_answer_is_refused_and_not_followed(list_server):
    for code in (302, 500):
        list_server.status = code
        with pytest.raises(Refused, match=str(code)):
            post(f"https://localhost:{list_server.port}/u", resolve=loopback, context=list_server.client_ctx,
                 allow=lambda a: True)
    assert [p[0] for p in list_server.posts] == ["/u", "/u"]  # the Location was never asked for


def test_an_untrusted_certificate_is_refused(list_server):
    with pytest.raises(Refused):
        post(f"https://localhost:{list_server.port}/u", resolve=loopback, allow=lambda a: True)  # system CAs only
    assert list_server.posts == []


def test_non_public_addresses_and_odd_urls_are_never_contacted(list_server):
    url = f"https://localhost:{list_server.port}/u"
    with pytest.raises(Refused, match="non-public"):
        post(url, resolve=loopback, context=list_server.client_ctx)  # the default rule: public only
    with pytest.raises(Refused, match="non-public"):  # one private address among public ones is enough
        post(url, resolve=lambda h: ["93.184.216.34", "10.0.0.5"], context=list_server.client_ctx)
    with pytest.raises(Refused, match="non-public"):  # an address literal is checked the same way
        post(f"https://127.0.0.1:{list_server.port}/u", resolve=loopback, context=list_server.client_ctx)
    with pytest.raises(Refused, match="resolve"):  # NXDOMAIN
        post(url, resolve=StaticResolver().addresses, context=list_server.client_ctx)
    for bad in (f"http://localhost:{list_server.port}/u", f"https://user:pw@localhost:{list_server.port}/u",
                "https:///nohost", "https://localhost:notaport/u"):
        with pytest.raises(Refused):
            post(bad, resolve=loopback, context=list_server.client_ctx, allow=lambda a: True)
    assert list_server.posts == []


@pytest.mark.parametrize("address,public", [
    ("93.184.216.34", True), ("2606:2800:220:1:248:1893:25c8:1946", True), ("127.0.0.1", False),
    ("10.1.2.3", False), ("169.254.169.254", False), ("192.168.0.1", False), ("::1", False),
    ("fd00::1", False), ("::ffff:127.0.0.1", False), ("224.0.0.1", False), ("100.64.0.1", False),
])
def test_public_address(address, public):
    assert public_address(address) is public


# --- JMAP List/unsubscribe --------------------------------------------------------------------------

def _request(acct, args):
    out = api.handle(acct, {"using": [session.CORE, session.MAIL, session.POSTERN],
                            "methodCalls": [["List/unsubscribe", {"accountId": acct.id, **args}, "0"]]})
    name, body, _ = out["methodResponses"][0]
    return name, body


def test_jmap_list_unsubscribe_posts_what_the_stored_message_offers(key, list_server):
    priv, resolver = key
    store = memory_store()
    mailboxes.ensure_defaults(store, USER)
    mailboxes.append(store, USER, "INBOX", message(LIST % list_server.port + POST, priv))
    mailboxes.append(store, USER, "INBOX", message(b"Subject-Extra: plain\r\n"))
    acct = Account(USER, store, unsubscribe=lambda raw: unsubscribe(
        raw, resolver, context=list_server.client_ctx, allow=lambda a: True))
    assert session.build(acct, "https://webmail.example.test")["accounts"][acct.id]["accountCapabilities"][
        session.POSTERN]["unsubscribe"] is True
    got = api.handle(acct, {"using": [session.CORE, session.MAIL], "methodCalls": [
        ["Email/query", {"accountId": acct.id}, "q"],
        ["Email/get", {"accountId": acct.id, "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                       "properties": ["header:List-Unsubscribe-Post:asText"]}, "g"]]})
    emails = got["methodResponses"][1][1]["list"]
    first = next(e["id"] for e in emails if e["header:List-Unsubscribe-Post:asText"])
    second = next(e["id"] for e in emails if not e["header:List-Unsubscribe-Post:asText"])

    name, body = _request(acct, {"emailId": first})
    assert name == "List/unsubscribe", body
    assert body == {"accountId": acct.id, "emailId": first, "status": 200}
    assert list_server.posts == [("/u?id=42", "application/x-www-form-urlencoded", ONE_CLICK.encode())]

    name, body = _request(acct, {"emailId": second})  # offers nothing
    assert (name, body["type"]) == ("error", "invalidArguments") and "one-click" in body["description"]
    assert _request(acct, {"emailId": "Enope"})[1]["type"] == "invalidArguments"
    assert _request(acct, {"emailId": first, "url": "https://evil.test/"})[1]["type"] == "invalidArguments"
    assert len(list_server.posts) == 1

    plain = Account(USER, store)  # a deployment without it
    assert _request(plain, {"emailId": first})[1]["type"] == "accountNotSupportedByMethod"
