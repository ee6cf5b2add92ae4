"""The local front's webmail part (postern_local.httpfront): routing read from the distribution's cache
behaviours, the built app's files served as the app bucket serves them, the CSP with local origins.

Real HTTP requests (http.client) to a front on an ephemeral loopback port; the HTTPS function is a
recorder here (tests/e2e/test_webmail_front_e2e.py has the real one); the app is a stand-in dist in tmp_path.
"""

from __future__ import annotations

import http.client
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from postern import webassets
from postern_local.httpfront import APP, FUNCTION, AppFiles, HttpFront, routing, security_headers
from postern_local.template import load_template

REPO = Path(__file__).resolve().parents[2]
ROUTES = REPO / "functions/https/postern_https/routes"
LOCAL = {"PushOrigin": "ws://127.0.0.1:1", "BlobOrigins": "http://127.0.0.1:2"}
JS = "assets/app-0123456789ab.js"


def function_paths() -> list[str]:
    """Every path functions/https routes (its routers' decorators), placeholders filled in."""
    paths = []
    for source in ROUTES.glob("*.py"):
        for path in re.findall(r'@router\.(?:get|post|put|patch|delete|route)\("([^"]+)"', source.read_text()):
            paths.append(re.sub(r"<[^>]+>", "x", path))
    return paths


@dataclass
class _Outcome:
    response: dict
    error: None = None


class Recorder:
    """In place of the function's workers: records each event, answers 200 JSON."""

    def __init__(self):
        self.events: list[dict] = []

    def invoke(self, event, context):
        self.events.append(event)
        return _Outcome({"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": '{"fn":true}'})


@pytest.fixture(scope="module")
def template():
    return load_template()


@pytest.fixture
def dist(tmp_path):
    d = tmp_path / "dist"
    (d / "assets").mkdir(parents=True)
    (d / "index.html").write_text('<!doctype html><script type="module" src="assets/app-0123456789ab.js"></script>')
    (d / JS).write_text("console.log('app')")
    (d / "favicon.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    (d / ".secret").write_text("never served")
    (tmp_path / "outside.txt").write_text("outside the dist")
    return d


@pytest.fixture
def front(template, dist):
    routes = routing(template)
    f = HttpFront(Recorder(), lambda region: None, "secret", security_headers(template, LOCAL), port=0,
                  routes=routes, app=AppFiles(dist, routes.root_object))
    f.start()
    yield f
    f.stop()


def request(front, method: str, path: str, headers: dict | None = None, body: bytes | None = None):
    c = http.client.HTTPConnection("127.0.0.1", front.port, timeout=30)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        c.close()


def test_every_path_the_function_serves_is_routed_to_it_and_the_rest_to_the_app(template):
    routes = routing(template)
    paths = function_paths()
    assert len(paths) >= 15 and "/.well-known/jmap" in paths and "/auth/ticket" in paths
    for path in paths:
        assert routes.route(path).origin == FUNCTION, path
    for path in ("/", "/index.html", f"/{JS}", "/favicon.svg", "/push", "/jmapx", "/.well-knownx"):
        assert routes.route(path).origin == APP, path
    assert routes.root_object == "index.html"
    # CloudFront's patterns are case-sensitive: Outlook's two spellings are both routed explicitly
    assert routes.route("/AUTODISCOVER/autodiscover.xml").origin == APP


def test_the_app_is_served_with_its_types_and_cache_rules_and_the_policy(front):
    status, headers, body = request(front, "GET", "/")
    assert status == 200 and body.startswith(b"<!doctype html>")
    assert headers["Content-Type"] == "text/html; charset=utf-8" and headers["Cache-Control"] == "no-cache"
    for name, value, _ in security_headers(load_template(), LOCAL):
        assert headers[name] == value, name
    csp = headers["Content-Security-Policy"]
    assert "connect-src 'self' ws://127.0.0.1:1 http://127.0.0.1:2;" in csp and "frame-ancestors 'none'" in csp

    status, headers, body = request(front, "GET", f"/{JS}?v=1")  # the query string names no other key
    assert (status, body) == (200, b"console.log('app')")
    assert headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
    status, headers, _ = request(front, "GET", "/favicon.svg")
    assert (status, headers["Content-Type"], headers["Cache-Control"]) == (200, "image/svg+xml", "no-cache")
    assert request(front, "GET", "/index.html")[2] == request(front, "GET", "/")[2]
    assert not front.handler.events  # none of it reached the function


def test_conditional_get_and_head(front):
    status, headers, body = request(front, "HEAD", "/")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 0
    etag = headers["ETag"]
    status, headers, body = request(front, "GET", "/", {"If-None-Match": etag})
    assert (status, body) == (304, b"") and headers["ETag"] == etag
    assert request(front, "GET", "/", {"If-None-Match": '"other"'})[0] == 200


@pytest.mark.parametrize("path", ["/missing.js", "/assets/", "/assets", "/.secret", "/../outside.txt",
                                  "/%2e%2e/outside.txt", "/assets/..%2f..%2foutside.txt", "/assets%2f..%2f..%2foutside.txt",
                                  "//etc/passwd", "/%00", "/assets/app-0123456789ab.js%00"])
def test_missing_and_hostile_paths_are_404_with_the_policy(front, path):
    status, headers, body = request(front, "GET", path)
    assert status == 404 and b"outside" not in body and b"never" not in body
    assert headers["X-Frame-Options"] == "DENY" and "Content-Security-Policy" in headers


def test_methods_the_app_behaviour_does_not_allow_are_refused_before_any_origin(front):
    status, _, body = request(front, "POST", "/", {"Content-Type": "text/plain"}, b"x")
    assert status == 403 and b"not configured to allow" in body
    assert request(front, "DELETE", f"/{JS}")[0] == 403
    assert not front.handler.events


def test_the_function_paths_reach_the_function(front):
    for path in ("/.well-known/jmap", "/jmap/api", "/auth/token", "/mail/config-v1.1.xml",
                 "/Autodiscover/Autodiscover.xml", "/.well-known/mta-sts.txt"):
        method = "POST" if path in ("/jmap/api", "/auth/token") else "GET"
        status, headers, body = request(front, method, path, {"Content-Type": "application/json"}, b"{}"
                                        if method == "POST" else None)
        assert (status, body) == (200, b'{"fn":true}'), path
        assert headers["X-Frame-Options"] == "DENY"
    assert [e["rawPath"] for e in front.handler.events][:2] == ["/.well-known/jmap", "/jmap/api"]


def test_without_a_built_app_the_app_paths_are_404(template):
    f = HttpFront(Recorder(), lambda region: None, "s", security_headers(template, LOCAL), port=0,
                  routes=routing(template), app=AppFiles("/nonexistent-webmail-dist"))
    f.start()
    try:
        assert request(f, "GET", "/")[0] == 404
        assert request(f, "GET", "/.well-known/jmap")[0] == 200
    finally:
        f.stop()


def test_the_policy_needs_a_local_value_for_each_of_its_variables(template):
    with pytest.raises(ValueError, match="BlobOrigins"):
        security_headers(template, {"PushOrigin": "ws://127.0.0.1:1"})


def test_file_types_and_cache_rules():
    assert webassets.content_type("index.html") == "text/html; charset=utf-8"
    assert webassets.content_type("assets/app-0123456789ab.CSS") == "text/css; charset=utf-8"
    assert webassets.content_type("x.woff2") == "font/woff2"
    assert webassets.content_type("LICENSE") == "application/octet-stream"
    assert webassets.cache_control("assets/app-0123456789ab.js") == webassets.IMMUTABLE
    assert webassets.cache_control("assets/chunk.deadbeef.css") == webassets.IMMUTABLE
    for name in ("index.html", "favicon.svg", "assets/app.js", "assets/app-0123.js", "app-notahash1.js"):
        assert webassets.cache_control(name) == "no-cache", name
    assert not webassets.publishable(".DS_Store") and not webassets.publishable("assets/.x/y.js")
    assert webassets.publishable("assets/app-0123456789ab.js")
