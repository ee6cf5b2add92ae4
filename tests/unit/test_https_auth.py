"""The HTTPS function's authentication, without HTTP: what runs before a password hash, and the edge.

The order is the finding: a locked-out client, a name that is no address, an oversized password
and credentials over plain HTTP cost no argon2id (the directory's ``authenticate`` must not be
called); the origin secret guards the edge headers; the CloudFront Function's source is one text.
Over HTTP, through the local front: tests/e2e/test_https_front.py.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "functions" / "https"))

from postern.authcache import VerifiedCache  # noqa: E402
from postern.config import Settings  # noqa: E402
from postern.directory import memory_directory  # noqa: E402
from postern.edge import ORIGIN_HEADER, VIEWER_IP, viewer_function_code  # noqa: E402
from postern.limits import Refusal  # noqa: E402
from postern.items import MemoryItems  # noqa: E402
from postern.tokens import Tokens  # noqa: E402
from postern_https import auth  # noqa: E402
from postern_https.errors import HttpError  # noqa: E402
from postern_https.viewer import Viewer, viewer_of  # noqa: E402
from postern_local.template import load_template  # noqa: E402


class CountingDirectory:
    def __init__(self, inner):
        self.inner = inner
        self.hashed = 0

    def authenticate(self, name, password):
        self.hashed += 1
        return self.inner.authenticate(name, password)

    def __getattr__(self, name):
        return getattr(self.inner, name)


class Limits:
    def __init__(self, refusal=None):
        self.refusal = refusal
        self.failed: list = []
        self.asked: list = []

    def auth_allowed(self, ip, account, protocol=""):
        self.asked.append((ip, account, protocol))
        return self.refusal

    def auth_failed(self, ip, account):
        self.failed.append((ip, account))

    def auth_succeeded(self, ip, account):
        pass


@pytest.fixture
def svc():
    d = memory_directory()
    d.add_domain("example.test")
    d.add_user("alice@example.test", "right-password")
    directory = CountingDirectory(d)
    return SimpleNamespace(settings=Settings(allow_plaintext_auth=False), limits=Limits(), directory=directory,
                           cache=VerifiedCache(0), tokens=Tokens(MemoryItems(), directory))


TLS = Viewer("192.0.2.1", "webmail.example.test", "https")


def test_a_locked_out_client_costs_no_hash(svc):
    svc.limits.refusal = Refusal("auth_user", "too many failed logins, locked", retry_after=12.5)
    with pytest.raises(HttpError) as e:
        auth.password_login(svc, TLS, "alice@example.test", "right-password")
    assert e.value.status == 429 and e.value.headers["Retry-After"] == "12"
    assert svc.directory.hashed == 0
    assert svc.limits.asked == [("192.0.2.1", "alice@example.test", "https")]


def test_names_that_are_no_address_and_huge_passwords_cost_no_hash_but_count(svc):
    for name, pw in (("not an address", "x"), ("alice@example.test", "p" * (auth.MAX_PASSWORD + 1)),
                     ("a" * 400 + "@example.test", "x"), ("alice@example.test", "")):
        with pytest.raises(HttpError) as e:
            auth.password_login(svc, TLS, name, pw)
        assert e.value.status == 401 and e.value.headers["WWW-Authenticate"].startswith("Bearer")
    assert svc.directory.hashed == 0
    assert len(svc.limits.failed) == 4


def test_wrong_then_right_password(svc):
    with pytest.raises(HttpError):
        auth.password_login(svc, TLS, "Alice@EXAMPLE.test", "wrong")
    assert svc.limits.failed == [("192.0.2.1", "alice@example.test")]
    assert auth.password_login(svc, TLS, "Alice@EXAMPLE.test", "right-password").address == "alice@example.test"
    assert svc.directory.hashed == 2


def test_credentials_over_plain_http_are_refused_before_anything(svc):
    plain = Viewer("192.0.2.1", "webmail.example.test", "http")
    for headers in ({"authorization": "Basic YWxpY2VAZXhhbXBsZS50ZXN0OnJpZ2h0LXBhc3N3b3Jk"},
                    {"authorization": "Bearer pst_" + "a" * 43}):
        with pytest.raises(HttpError) as e:
            auth.require(svc, plain, headers)
        assert e.value.status == 403
    assert svc.limits.asked == [] and svc.directory.hashed == 0
    svc.settings = Settings(allow_plaintext_auth=True)  # the local stack's setting, as for the gateway
    assert auth.require(svc, plain, {"authorization": "Basic YWxpY2VAZXhhbXBsZS50ZXN0OnJpZ2h0LXBhc3N3b3Jk"}).via == "basic"


def test_bearer_tokens_verify_and_die_with_the_password(svc):
    user = svc.directory.get_user("alice@example.test")
    issued = svc.tokens.issue(user)
    assert auth.require(svc, TLS, {"authorization": f"Bearer {issued.value}"}).address == "alice@example.test"
    svc.directory.set_password("alice@example.test", "new-password")
    with pytest.raises(HttpError) as e:
        auth.require(svc, TLS, {"authorization": f"Bearer {issued.value}"})
    assert 'error="invalid_token"' in e.value.headers["WWW-Authenticate"]


def test_tokens_expire_and_tickets_work_once():
    d = memory_directory()
    d.add_domain("example.test")
    d.add_user("bob@example.test", "pw")
    now = [1000.0]
    tokens = Tokens(MemoryItems(), d, token_ttl=3600, ticket_ttl=60, clock=lambda: now[0])
    user = d.get_user("bob@example.test")
    token, ticket = tokens.issue(user), tokens.issue_ticket(user)
    assert tokens.verify(ticket.value) is None and tokens.redeem_ticket(token.value) is None  # kinds do not mix
    assert tokens.redeem_ticket(ticket.value).address == "bob@example.test"
    assert tokens.redeem_ticket(ticket.value) is None
    late = tokens.issue_ticket(user)
    now[0] += 61
    assert tokens.redeem_ticket(late.value) is None
    assert tokens.verify(token.value) is not None
    now[0] += 3600
    assert tokens.verify(token.value) is None


def _event(headers, source="198.51.100.7"):
    from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

    return APIGatewayProxyEventV2({"version": "2.0", "rawPath": "/", "headers": headers,
                                   "requestContext": {"http": {"method": "GET", "path": "/", "sourceIp": source}}})


def test_the_edge_headers_count_only_with_the_origin_secret():
    spoofed = {VIEWER_IP: "10.9.9.9", "x-postern-viewer-host": "webmail.example.test"}
    for given in ({}, {ORIGIN_HEADER: "wrong"}):
        with pytest.raises(HttpError) as e:
            viewer_of(_event({**spoofed, **given}), "s3cret")
        assert e.value.status == 403
    v = viewer_of(_event({**spoofed, ORIGIN_HEADER: "s3cret"}), "s3cret")
    assert (v.ip, v.host, v.secure) == ("10.9.9.9", "webmail.example.test", True)
    assert v.domain_under("webmail") == "example.test" and v.domain_under("mta-sts") is None
    v = viewer_of(_event({**spoofed, "host": "abc.execute-api.test"}), "")  # no secret configured: no edge trust
    assert v.ip == "198.51.100.7"
    bad = viewer_of(_event({ORIGIN_HEADER: "s3cret", "x-postern-viewer-host": "evil.test/<script>"}), "s3cret")
    assert bad.authority == ""  # never echoed into absolute URLs


def test_the_templates_viewer_function_is_postern_edges():
    code = load_template()["Resources"]["WebViewerFunction"]["Properties"]["FunctionCode"]
    assert code == viewer_function_code()
