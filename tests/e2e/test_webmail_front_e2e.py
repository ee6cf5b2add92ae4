"""The webmail beside JMAP on the local stack's front (what `make run` serves on 8080): the app's files at
/, the real HTTPS function on its paths, one security policy naming this stack's own push socket and S3
endpoint, and the banner's URL. The app is a stand-in dist in tmp_path (the real build is the browser
tests'), put in place of the stack's for the test.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest

from postern_local.httpfront import AppFiles


def get(url: str, headers: dict | None = None):
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


@pytest.fixture
def app(stack, tmp_path, monkeypatch):
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<!doctype html><title>Postern</title>")
    (dist / "assets/app-00112233aabb.css").write_text("body{}")
    monkeypatch.setattr(stack.https, "app", AppFiles(dist))
    monkeypatch.setitem(stack.env, "POSTERN_WEBMAIL_DIR", str(dist))
    return dist


def test_the_app_and_jmap_share_the_front_and_one_policy(stack, app):
    status, headers, body = get(stack.http_url + "/")
    assert (status, body) == (200, (app / "index.html").read_bytes())
    assert headers["Content-Type"] == "text/html; charset=utf-8" and headers["Cache-Control"] == "no-cache"
    csp = headers["Content-Security-Policy"]
    # this stack's push socket (on the front's own port) and its S3 endpoint (presigned uploads), nothing of AWS
    assert f"ws://127.0.0.1:{stack.https.port}" in csp and stack.endpoint in csp and "amazonaws" not in csp
    assert stack.env["POSTERN_PUSH_URL"].startswith(f"ws://127.0.0.1:{stack.https.port}/")
    assert "script-src 'self';" in csp and "frame-ancestors 'none'" in csp
    status, headers, _ = get(stack.http_url + "/assets/app-00112233aabb.css")
    assert status == 200 and headers["Content-Type"] == "text/css; charset=utf-8"
    assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert get(stack.http_url + "/assets/nothing.js")[0] == 404

    # the function's paths still reach the function, under the same policy
    status, headers, body = get(stack.http_url + "/.well-known/jmap")
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer ")
    assert headers["Content-Security-Policy"] == csp


def test_make_run_prints_the_webmail_url(stack, app):
    from postern_local.__main__ import banner

    text = banner(stack, Path(".postern-local/env"))
    assert f"Webmail:       {stack.http_url}/  (sign in as {stack.demo_user})" in text


def test_make_run_says_when_the_app_is_not_built(stack, tmp_path, monkeypatch):
    from postern_local.__main__ import banner

    monkeypatch.setitem(stack.env, "POSTERN_WEBMAIL_DIR", str(tmp_path / "none"))
    assert stack.webmail_url == ""
    assert "Webmail:       not built" in banner(stack, Path(".postern-local/env"))
