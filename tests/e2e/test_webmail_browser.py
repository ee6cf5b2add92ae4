"""The webmail in a real browser: headless Debian chromium through Selenium against the local stack.

One chromium (tests/browser.py: Debian's chromium and chromium-driver, paths given, never Selenium
Manager) is shared by the module and signs in once; the app is the built ``webmail/dist`` (``make
webmail``, which ``make test`` runs first) that the stack's local HTTPS front serves at ``/`` beside
JMAP. Every step is waited for on a condition in the
page (data-testid hooks of the webmail contract) with wide ceilings; where mail moves through the
pipeline the wait drains the stack's queues (the stack's pollers do not run in the background in
tests). Mail goes in over SMTP (smtplib) and is checked over IMAP (imaplib): real clients on both
sides. Screenshots of the main views go to ``test-output/screenshots/`` and the browser's console to
``test-output/browser-console.log``; a test that expects no Content-Security-Policy violation fails
on one.

Scenarios: sign in; a message sent over SMTP appears in the list without a reload (JMAP push) and
opens; a hostile HTML message (script, event handlers, ``javascript:`` links, CSS exfiltration via
background url / @import / @font-face, remote images, meta refresh, a form) runs no script and loads
nothing from a loopback server that counts every request, until the user allows remote images for
that message, which then load; reply, and the reply arrives in the recipient's mailbox (IMAP) with
a copy in Sent; compose with an attachment that the recipient gets byte-identical (IMAP); search by
subject and by body text; move to a folder, visible over IMAP; the phone-sized layout; settings
open and close; a wrong password shows an error, and failed sign-ins count towards the same account
lockout IMAP enforces. Compose and settings: reply all answers everyone but the user, threaded; a
forward carries the original's attachment; Save draft keeps one draft in Drafts; a filter saved in
Settings files matching mail into its folder and the vacation reply answers; the signature set in
Settings is in the next new message.
"""

from __future__ import annotations

import email
import imaplib
import os
import secrets
import smtplib
import sys
import time
import urllib.request
import uuid
from email import policy
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import browser as B  # noqa: E402  (tests/browser.py)

from postern_local.liveness import IMAP4From  # noqa: E402

# Liveness ceiling per test, the module's set-up (stack, chromium, sign-in) included: a loaded 2-core machine.
pytestmark = pytest.mark.timeout(600)
PIPELINE = 120.0  # ceiling for mail to go through the pipeline into the page (drained each poll)
OUTPUT = B.ROOT / "test-output"


# --- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def chrome():
    OUTPUT.mkdir(exist_ok=True)
    try:
        b = B.start_chrome(log_path=OUTPUT / "chromedriver.log")
    except B.BrowserMissing as exc:
        if os.geteuid() != 0:
            pytest.skip(str(exc))
        raise
    try:
        yield b
    finally:
        with open(OUTPUT / "browser-console.log", "w") as f:
            for e in b.log:
                f.write(f"{e.get('level')} {e.get('source')} {e.get('message')}\n")
        b.quit()


@pytest.fixture(scope="module")
def app_url(stack):
    """The front's URL serving the built app at / (``make test`` builds it first: ``make webmail``)."""
    if not stack.webmail_url:
        pytest.fail("webmail/dist/index.html is missing: run `make webmail` (make test does) first")
    with urllib.request.urlopen(stack.webmail_url, timeout=60) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/html"), r.headers
        assert b"<script" in r.read()
    return stack.webmail_url


@pytest.fixture(scope="module")
def hits():
    h = B.HitCounter().start()
    yield h
    h.stop()


class Accounts:
    def __init__(self, stack):
        self.domain = f"web{secrets.token_hex(3)}.test"
        stack.directory.add_domain(self.domain)
        self.users = {}
        for name in ("alice", "bob", "dave"):
            address, password = f"{name}@{self.domain}", secrets.token_urlsafe(12)
            stack.directory.add_user(address, password)
            stack.store.ensure_mailboxes(address)
            self.users[name] = (address, password)

    def __getitem__(self, name: str) -> tuple[str, str]:
        return self.users[name]


@pytest.fixture(scope="module")
def accounts(stack):
    return Accounts(stack)


class App:
    """The signed-in app in the shared chromium: alice's session."""

    def __init__(self, b: B.Browser, stack, url: str, user: tuple[str, str]):
        self.b, self.stack, self.url, self.user = b, stack, url, user

    @property
    def driver(self):
        return self.b.driver

    def drain(self) -> None:
        self.stack.drain()

    def rows(self) -> list:
        return [r for r in self.b.by_testid("message-row") if r.is_displayed()]

    def row(self, subject: str, ceiling: float = PIPELINE, drain: bool = True):
        """The message-row whose message-subject is ``subject``, once it is listed."""

        def find(_d):
            for r in self.rows():
                s = self.b.by_testid("message-subject", r)
                if s and s[0].text.strip() == subject:
                    return r
            return False

        return self.b.wait(find, f"a row with subject {subject!r}", ceiling, tick=self.drain if drain else None)

    def open_mailbox(self, role: str = "", name: str = "") -> None:
        def find(_d):
            for m in self.b.by_testid("mailbox"):
                if (role and m.get_attribute("data-role") == role) or (name and m.get_attribute("data-name") == name):
                    return m
            return False

        self.b.wait(find, f"mailbox {role or name}").click()
        self.b.one("message-list")

    def open(self, subject: str):
        self.row(subject).click()
        self.b.wait(lambda _d: any(e.text.strip() == subject for e in self.b.by_testid("reader-subject")),
                    f"the reader showing {subject!r}")
        return self.b.one("reader")

    def search(self, query: str) -> None:
        from selenium.webdriver.common.keys import Keys

        box = self.b.one("search-input")
        box.clear()
        box.send_keys(query, Keys.ENTER)

    def subjects(self) -> list[str]:
        out = []
        for r in self.rows():
            s = self.b.by_testid("message-subject", r)
            out.append(s[0].text.strip() if s else "")
        return out


def sign_in(b: B.Browser, url: str, address: str, password: str) -> None:
    b.driver.get(url)
    field = b.one("signin-email")
    field.clear()
    field.send_keys(address)
    pw = b.one("signin-password")
    pw.clear()
    pw.send_keys(password)
    b.one("signin-submit").click()


@pytest.fixture(scope="module")
def app(chrome, stack, app_url, accounts):
    alice = accounts["alice"]
    with imaplib.IMAP4("127.0.0.1", stack.imap_port, timeout=30) as c:  # a folder to move into, made by a real client
        c.login(*alice)
        assert c.create("Projects")[0] == "OK"
    chrome.driver.get(app_url)
    chrome.one("signin-email")
    chrome.screenshot("signin")
    sign_in(chrome, app_url, *alice)
    chrome.one("mailbox-list")
    chrome.one("message-list")
    return App(chrome, stack, app_url, alice)


@pytest.fixture(autouse=True)
def _screenshot_on_failure(request, chrome):
    """A failed test leaves the page it failed on in test-output/screenshots/FAILED-<test>.png."""
    failed = request.session.testsfailed
    yield
    if request.session.testsfailed > failed:
        chrome.screenshot(f"FAILED-{request.node.name}")


@pytest.fixture
def no_csp(chrome):
    """Fails the test on any Content-Security-Policy violation the browser reported during it."""
    mark = chrome.mark()
    yield
    assert chrome.csp_violations(mark) == []


# --- mail in and out ----------------------------------------------------------------------------
def smtp_in(stack, rcpt: str, subject: str, body: str = "", html: str = "", sender: str = "carol@origin.example",
            extra: str = "") -> str:
    """A message from outside over the MX port; its Message-ID."""
    mid = f"{uuid.uuid4().hex}@origin.example"
    head = (f"From: Carol <{sender}>\r\nTo: {rcpt}\r\nSubject: {subject}\r\nMessage-ID: <{mid}>\r\n"
            f"Date: Mon, 07 Dec 2026 20:00:00 +0000\r\nMIME-Version: 1.0\r\n{extra}")
    if html:
        raw = head + "Content-Type: text/html; charset=utf-8\r\n\r\n" + html.replace("\n", "\r\n") + "\r\n"
    else:
        raw = head + f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body or 'Hello.'}\r\n"
    with smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=60) as s:
        assert s.sendmail(sender, [rcpt], raw.encode()) == {}
    return mid


def submit_as(stack, user: tuple[str, str], rcpt: str, subject: str, body: str) -> str:
    """A message from a local user over submission (AUTH); its Message-ID."""
    mid = f"{uuid.uuid4().hex}@{user[0].split('@')[1]}"
    raw = (f"From: {user[0]}\r\nTo: {rcpt}\r\nSubject: {subject}\r\nMessage-ID: <{mid}>\r\n"
           f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n")
    with smtplib.SMTP("127.0.0.1", stack.submission_port, timeout=60) as s:
        s.login(*user)
        assert s.sendmail(user[0], [rcpt], raw.encode()) == {}
    return mid


def imap_fetch(stack, user: tuple[str, str], mailbox: str, subject: str, item: str) -> list:
    """FETCH ``item`` of the messages of ``mailbox`` whose Subject contains ``subject`` (a read-only
    SELECT, UID SEARCH): each message's first response part."""
    with imaplib.IMAP4("127.0.0.1", stack.imap_port, timeout=30) as c:
        c.login(*user)
        typ, _ = c.select(f'"{mailbox}"', readonly=True)
        assert typ == "OK", mailbox
        typ, data = c.uid("SEARCH", "CHARSET", "UTF-8", "SUBJECT", f'"{subject}"')
        assert typ == "OK"
        out = []
        for uid in data[0].split():
            typ, fetched = c.uid("FETCH", uid, item)
            assert typ == "OK"
            out.append(fetched[0])
        return out


def imap_find(stack, user: tuple[str, str], mailbox: str, subject: str) -> list[email.message.EmailMessage]:
    """The messages of ``mailbox`` whose Subject contains ``subject``, parsed (IMAP SEARCH + FETCH)."""
    return [email.message_from_bytes(part[1], policy=policy.default)
            for part in imap_fetch(stack, user, mailbox, subject, "(BODY.PEEK[])")]


def arrives(app: App, user: tuple[str, str], mailbox: str, subject: str) -> email.message.EmailMessage:
    """Drain the pipeline until ``subject`` is in ``user``'s ``mailbox`` over IMAP."""
    found = app.b.wait(lambda _d: imap_find(app.stack, user, mailbox, subject), f"{subject!r} in {user[0]} {mailbox}",
                       PIPELINE, tick=app.drain)
    assert len(found) == 1, [m["Subject"] for m in found]
    return found[0]


# --- the scenarios -------------------------------------------------------------------------------
def test_sign_in_shows_the_mailboxes_special_use_first(app, no_csp):
    boxes = app.b.by_testid("mailbox")
    roles = [m.get_attribute("data-role") or "" for m in boxes]
    names = [m.get_attribute("data-name") for m in boxes]
    assert roles[0] == "inbox", roles
    assert {"inbox", "sent", "drafts", "trash"} <= set(roles), roles
    assert "Projects" in names
    first_plain = roles.index("")  # special-use mailboxes before the user's own folders
    assert all(r == "" for r in roles[first_plain:]), roles
    assert app.b.one("signout") and app.b.one("quota")


def test_smtp_message_appears_without_reload_and_opens(app, no_csp):
    app.open_mailbox(role="inbox")
    app.driver.execute_script("window.__postern_same_page = 'kept'")  # gone if the page reloads
    subject = f"Lunch on Friday {uuid.uuid4().hex[:6]}"
    smtp_in(app.stack, app.user[0], subject, body="Shall we try the new place on the corner?")
    row = app.row(subject)  # JMAP push (WebSocket StateChange) brought it in
    assert app.driver.execute_script("return window.__postern_same_page") == "kept"
    assert row.get_attribute("data-unread") == "true"
    app.b.screenshot("list")
    app.open(subject)
    text = app.b.one("reader-text").text
    assert "Shall we try the new place on the corner?" in text
    app.b.screenshot("reader")
    app.b.wait(lambda _d: app.row(subject, drain=False).get_attribute("data-unread") == "false", "marked read",
               PIPELINE, tick=app.drain)


HOSTILE = """<html><head>
<meta http-equiv="refresh" content="0;url={https}/refresh">
<base href="{https}/base/">
<link rel="stylesheet" href="{https}/link.css">
<style>
@import url("{https}/import.css");
@font-face {{ font-family: leak; src: url("{https}/font.woff"); }}
body {{ font-family: leak; background: url("{https}/background"); }}
p.x {{ background-image: url("{http}/background-http"); }}
</style>
<script>window.top.__pwned = 1; fetch("{https}/script");</script>
</head>
<body onload="fetch('{https}/onload')">
<h1 data-hostile="1">Quarterly statement</h1>
<p class="x">Dear customer, see below.</p>
<img src="{https}/img" alt="tracker">
<img src="{http}/img-http" alt="tracker over http">
<img src="x" onerror="window.top.__pwned = 2; fetch('{https}/onerror')">
<svg><image href="{https}/svg-image"/></svg>
<a id="js-link" href="javascript:window.top.__pwned=3;fetch('{https}/javascript')">Click to verify</a>
<a id="plain-link" href="https://example.invalid/landing">landing page</a>
<iframe src="{https}/iframe"></iframe>
<object data="{https}/object"></object>
<div style="background-image: url('{https}/inline-style')">inline</div>
<form id="phish" action="{https}/form" method="post"><input name="pw" value="secret">
<button id="phish-submit" type="submit">Sign in</button></form>
</body></html>"""


def test_hostile_html_runs_no_script_and_loads_nothing_remote(app, hits):
    subject = f"Your statement {uuid.uuid4().hex[:6]}"
    smtp_in(app.stack, app.user[0], subject, html=HOSTILE.format(https=hits.url("", tls=True),
                                                                 http=hits.url("", tls=False)))
    reader = app.open(subject)
    frame = app.b.one("reader-frame")
    sandbox = frame.get_attribute("sandbox")
    assert sandbox is not None and "allow-scripts" not in sandbox and "allow-same-origin" not in sandbox, sandbox
    srcdoc = frame.get_attribute("srcdoc")
    assert srcdoc.lstrip().lower().startswith('<meta http-equiv="content-security-policy"'), srcdoc[:200]
    assert "https:" not in srcdoc.split(">", 1)[0], srcdoc[:200]  # remote images not yet allowed

    # Nothing of the mail entered the app's own DOM as markup.
    assert app.driver.find_elements("css selector", "[data-hostile], #phish, #js-link") == []

    app.driver.switch_to.frame(frame)
    try:
        app.b.wait(lambda d: d.execute_script("return document.readyState") == "complete", "the message rendered")
        found = app.driver.execute_script(
            "return {scripts: document.scripts.length,"
            " handlers: [...document.querySelectorAll('*')].filter(e => [...e.attributes].some(a => /^on/i.test(a.name))).length,"
            " js: [...document.querySelectorAll('a')].filter(a => /^\\s*javascript:/i.test(a.getAttribute('href') || '')).length,"
            " refresh: document.querySelectorAll('meta[http-equiv=refresh i]').length,"
            " links: [...document.querySelectorAll('a[href]')].map(a => [a.target, a.rel])}")
        assert found["scripts"] == 0 and found["handlers"] == 0 and found["js"] == 0 and found["refresh"] == 0, found
        assert all(t == "_blank" and "noopener" in r for t, r in found["links"]), found
        # What a reader might click: the form's button and the (neutralised) javascript: link.
        for sel in ("#phish-submit", "#js-link"):
            for el in app.driver.find_elements("css selector", sel):
                el.click()
    finally:
        app.driver.switch_to.default_content()
    app.b.screenshot("reader-hostile")
    with pytest.raises(Exception, match="no such alert|NoAlertPresent"):
        app.driver.switch_to.alert.text  # noqa: B018
    assert app.driver.execute_script("return window.__pwned") is None
    assert hits.snapshot() == {}, "the hostile message loaded something remote before being allowed to"

    # Allowing remote images for this message loads its https images, and still nothing else.
    app.b.one("reader-remote-images").click()
    app.b.wait(lambda _d: hits.snapshot().get("/img", 0) >= 1, "the remote image loaded once allowed")
    frame = app.b.one("reader-frame")
    app.driver.switch_to.frame(frame)
    try:
        app.b.wait(lambda d: d.execute_script("return document.readyState") == "complete", "the message re-rendered")
    finally:
        app.driver.switch_to.default_content()
    loaded = hits.snapshot()
    allowed = {"/img", "/svg-image", "/background", "/inline-style"}  # images over https (CSS backgrounds are images)
    assert set(loaded) <= allowed, loaded
    assert app.driver.execute_script("return window.__pwned") is None
    assert reader.is_displayed()


def test_reply_arrives_in_the_recipients_mailbox(app, accounts, no_csp):
    bob = accounts["bob"]
    subject = f"Budget question {uuid.uuid4().hex[:6]}"
    mid = submit_as(app.stack, bob, app.user[0], subject, "Can you check the numbers?")
    app.open_mailbox(role="inbox")
    app.open(subject)
    app.b.one("action-reply").click()
    app.b.one("compose")
    app.b.screenshot("compose-reply")
    body = app.b.one("compose-body")
    body.send_keys("The numbers look right to me.")
    app.b.one("compose-send").click()
    app.b.gone("compose")
    reply = arrives(app, bob, "INBOX", f"Re: {subject}")
    assert reply["In-Reply-To"].strip() == f"<{mid}>"
    assert app.user[0] in reply["From"]
    assert "The numbers look right to me." in reply.get_body(("plain", "html")).get_content()
    assert imap_find(app.stack, app.user, "Sent", f"Re: {subject}"), "no copy in Sent"


def test_attachment_reaches_the_recipient_byte_identical(app, accounts, no_csp, tmp_path):
    bob = accounts["bob"]
    payload = secrets.token_bytes(300_000) + bytes(range(256)) * 4  # binary, every byte value
    path = tmp_path / "figures.bin"
    path.write_bytes(payload)
    subject = f"Figures attached {uuid.uuid4().hex[:6]}"
    app.b.one("action-compose").click()
    app.b.one("compose")
    app.b.one("compose-to").send_keys(bob[0])
    app.b.one("compose-subject").send_keys(subject)
    app.b.one("compose-body").send_keys("The figures, as promised.")
    app.b.one("compose-attach", visible=False).send_keys(str(path))
    app.b.wait(lambda _d: [a.get_attribute("data-state") for a in app.b.by_testid("compose-attachment")] == ["done"],
               "the attachment uploaded")
    app.b.screenshot("compose")
    app.b.one("compose-send").click()
    app.b.gone("compose")
    got = arrives(app, bob, "INBOX", subject)
    parts = list(got.iter_attachments())
    assert [p.get_filename() for p in parts] == ["figures.bin"]
    assert parts[0].get_content() == payload


def test_settings_open(app, no_csp):
    app.b.one("action-settings").click()
    app.b.one("settings")
    for hook in ("vacation-enabled", "vacation-save", "filter-add", "password-current", "password-save"):
        assert app.b.by_testid(hook), hook
    app.b.screenshot("settings")
    app.b.one("settings-close").click()
    app.b.gone("settings")


def test_search_by_subject_and_by_body_text(app, no_csp):
    tag = uuid.uuid4().hex[:8]
    by_subject, by_body = f"Invoice {tag}", f"Meeting notes {uuid.uuid4().hex[:6]}"
    smtp_in(app.stack, app.user[0], by_subject, body="Please find the invoice below.")
    smtp_in(app.stack, app.user[0], by_body, body=f"The codeword is zebra{tag} for the door.")
    app.open_mailbox(role="inbox")
    app.row(by_subject)
    app.row(by_body)
    app.search(f"subject:{tag}")
    app.b.wait(lambda _d: app.subjects() == [by_subject], f"only {by_subject!r} listed")
    app.search(f"zebra{tag}")
    app.b.wait(lambda _d: app.subjects() == [by_body], f"only {by_body!r} listed")
    app.b.screenshot("search")
    app.search("")


def test_move_to_a_folder_is_visible_over_imap(app, no_csp):
    subject = f"Project kickoff {uuid.uuid4().hex[:6]}"
    smtp_in(app.stack, app.user[0], subject, body="Kickoff is on Monday.")
    app.open_mailbox(role="inbox")
    app.open(subject)
    app.b.one("action-move").click()
    app.b.wait(lambda _d: [t for t in app.b.by_testid("move-target")
                           if t.get_attribute("data-name") == "Projects" and t.is_displayed()],
               "the Projects move target")[0].click()
    app.b.wait(lambda _d: subject not in app.subjects(), "the message left the inbox list")
    app.b.wait(lambda _d: imap_find(app.stack, app.user, "Projects", subject), "in Projects over IMAP")
    assert imap_find(app.stack, app.user, "INBOX", subject) == []
    app.open_mailbox(name="Projects")
    app.row(subject, drain=False)


def test_phone_layout(app, no_csp):
    app.open_mailbox(role="inbox")
    size = app.driver.get_window_size()
    app.driver.set_window_size(390, 844)
    try:
        app.b.wait(lambda d: d.execute_script("return window.innerWidth") <= 400, "the phone-sized window")
        subject = f"On the go {uuid.uuid4().hex[:6]}"
        smtp_in(app.stack, app.user[0], subject, body="Read on a phone.")
        app.row(subject)
        overflow = app.driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page scrolls sideways by {overflow} px on a phone"
        app.b.screenshot("phone")
    finally:
        app.driver.set_window_size(size["width"], size["height"])
        app.b.wait(lambda d: d.execute_script("return window.innerWidth") > 400, "the desktop-sized window")


def test_wrong_password_shows_an_error_and_counts_towards_the_imap_lockout(app, accounts, no_csp):
    """Failed sign-ins count in the same per-account counters as IMAP's: after the account's limit,
    the right password is refused in the browser (429) and over IMAP from another address."""
    b, stack = app.b, app.stack
    dave, dave_pw = accounts["dave"]
    b.one("signout").click()
    b.one("signin-email")

    def attempt(password: str) -> str:
        sign_in(b, app.url, dave, password)
        return b.wait(lambda _d: [e.text for e in b.by_testid("signin-error")
                                  if e.is_displayed() and e.text.strip()
                                  and b.one("signin-submit").is_enabled()], "the sign-in error")[0]

    first = attempt("not-the-password")
    assert first and "password" in first.lower(), first
    b.screenshot("signin-error")
    for _ in range(stack.settings.auth_fail_user_limit - 1):
        attempt("still-not-it")
    locked = attempt(dave_pw)  # the right password, now refused
    assert "too many" in locked.lower(), locked
    assert not [m for m in b.by_testid("mailbox-list") if m.is_displayed()]
    imap = IMAP4From(stack.imap_port, "127.0.0.7")
    try:
        with pytest.raises(imaplib.IMAP4.error, match="(?i)locked|UNAVAILABLE"):
            imap.login(dave, dave_pw)
    finally:
        imap.shutdown()


# --- compose and settings (webcompose) ----------------------------------------------------------
def _signed_in(app) -> None:
    """Alice signed in (the lockout test before these ends at the sign-in page)."""
    if not [e for e in app.b.by_testid("message-list") if e.is_displayed()]:
        sign_in(app.b, app.url, *app.user)
        app.b.one("message-list")


def _new_user(app, name: str) -> tuple[str, str]:
    address, password = f"{name}{secrets.token_hex(2)}@{app.user[0].split('@')[1]}", secrets.token_urlsafe(12)
    app.stack.directory.add_user(address, password)
    app.stack.store.ensure_mailboxes(address)
    return address, password


def _from_bob(app, bob, subject: str, cc: str = "", attachment: bytes = b"") -> str:
    """A message from bob to alice over submission (a Cc, an attachment); its Message-ID."""
    mid = f"{uuid.uuid4().hex}@{bob[0].split('@')[1]}"
    msg = email.message.EmailMessage()
    msg["From"], msg["To"], msg["Subject"], msg["Message-ID"] = bob[0], app.user[0], subject, f"<{mid}>"
    if cc:
        msg["Cc"] = cc
    msg.set_content("Agenda attached.")
    if attachment:
        msg.add_attachment(attachment, maintype="application", subtype="octet-stream", filename="agenda.bin")
    with smtplib.SMTP("127.0.0.1", app.stack.submission_port, timeout=60) as s:
        s.login(*bob)
        s.send_message(msg)
    return mid


@pytest.mark.timeout(300)  # two deliveries through the pipeline on a loaded machine
def test_reply_all_answers_everyone_but_me_threaded(app, accounts, no_csp):
    _signed_in(app)
    bob, erin = accounts["bob"], _new_user(app, "erin")
    subject = f"Offsite plan {uuid.uuid4().hex[:6]}"
    mid = _from_bob(app, bob, subject, cc=erin[0])
    app.open_mailbox(role="inbox")
    app.open(subject)
    app.b.one("action-reply-all").click()
    app.b.one("compose")
    to, cc = app.b.one("compose-to").get_attribute("value"), app.b.one("compose-cc").get_attribute("value")
    assert app.b.one("compose-subject").get_attribute("value") == f"Re: {subject}"
    assert bob[0] in to and erin[0] in cc and app.user[0] not in to + cc, (to, cc)
    app.b.one("compose-body").send_keys("Count me in.")
    app.b.one("compose-send").click()
    app.b.gone("compose")
    for who in (bob, erin):
        got = arrives(app, who, "INBOX", f"Re: {subject}")
        assert got["In-Reply-To"].strip() == f"<{mid}>" and mid in got["References"]
        assert "> Agenda attached." in got.get_body(("plain",)).get_content()


def test_forward_carries_the_original_attachment(app, accounts, no_csp):
    _signed_in(app)
    bob, erin = accounts["bob"], _new_user(app, "erin")
    subject = f"Agenda {uuid.uuid4().hex[:6]}"
    agenda = secrets.token_bytes(20_000)
    _from_bob(app, bob, subject, attachment=agenda)
    app.open_mailbox(role="inbox")
    app.open(subject)
    app.b.one("action-forward").click()
    app.b.one("compose")
    app.b.wait(lambda _d: [(a.get_attribute("data-name"), a.get_attribute("data-state"))
                           for a in app.b.by_testid("compose-attachment")] == [("agenda.bin", "done")],
               "the original's attachment listed (by blobId: nothing uploaded again)")
    app.b.one("compose-to").send_keys(erin[0])
    app.b.one("compose-send").click()
    app.b.gone("compose")
    fwd = arrives(app, erin, "INBOX", f"Fwd: {subject}")
    assert [p.get_content() for p in fwd.iter_attachments()] == [agenda]


def test_save_draft_keeps_one_draft_in_drafts(app, accounts, no_csp):
    from selenium.webdriver.common.keys import Keys

    _signed_in(app)
    draft = f"Unfinished thoughts {uuid.uuid4().hex[:6]}"
    app.b.one("action-compose").click()
    app.b.one("compose")
    app.b.one("compose-to").send_keys(accounts["bob"][0])
    app.b.one("compose-subject").send_keys(draft)
    app.b.one("compose-body").send_keys("First half.")
    app.b.one("compose-save-draft").click()
    app.b.wait(lambda _d: "Draft saved" in app.b.one("compose-saved").text, "the draft saved")
    app.b.one("compose-subject").send_keys(Keys.END, " v2")
    app.b.one("compose-save-draft").click()
    app.b.wait(lambda _d: [m["Subject"] for m in imap_find(app.stack, app.user, "Drafts", draft)] == [f"{draft} v2"],
               "one draft, the second save")
    app.b.screenshot("compose-draft")
    app.b.one("compose-close").click()
    app.b.gone("compose")


@pytest.mark.timeout(300)  # a filtered delivery and a vacation reply through the pipeline
def test_settings_filter_and_vacation_reply_take_effect(app, accounts, no_csp):
    """A filter saved in Settings files the next matching message into its folder; the vacation reply
    answers the sender. Both are undone at the end (the account is shared by the module)."""
    from selenium.webdriver.support.ui import Select

    _signed_in(app)
    bob = accounts["bob"]
    tag = uuid.uuid4().hex[:6]
    folder = f"Bob {tag}"
    app.b.one("action-settings").click()
    app.b.one("settings")
    app.b.one("vacation-enabled").click()
    app.b.one("vacation-subject").send_keys(f"Away {tag}")
    app.b.one("vacation-body").send_keys("Back on Monday.")
    app.b.one("vacation-save").click()
    app.b.wait(lambda _d: app.b.one("settings-status").text == "Vacation reply on", "the vacation reply saved")
    app.b.one("filter-add").click()
    Select(app.b.one("filter-field")).select_by_value("from")
    app.b.one("filter-value").send_keys(bob[0])
    app.b.one("filter-folder").send_keys(folder)
    app.b.one("filter-save").click()
    app.b.wait(lambda _d: [f.get_attribute("data-folder") for f in app.b.by_testid("filter")] == [folder],
               "the filter listed")
    app.b.screenshot("settings-filled")
    app.b.one("settings-close").click()
    app.b.gone("settings")

    subject = f"Filtered {tag}"
    submit_as(app.stack, bob, app.user[0], subject, "Into my folder, please.")
    arrives(app, app.user, folder, subject)
    assert imap_find(app.stack, app.user, "INBOX", subject) == []
    reply = arrives(app, bob, "INBOX", f"Away {tag}")
    assert reply["Auto-Submitted"].startswith("auto-replied")

    app.b.one("action-settings").click()
    app.b.one("settings")
    app.b.wait(lambda _d: app.b.by_testid("filter-delete"), "the filter listed")[0].click()
    app.b.wait(lambda _d: app.b.one("settings-status").text == "Filter deleted", "the filter deleted")
    app.b.wait(lambda _d: app.b.one("vacation-enabled").is_selected(), "the vacation reply shown as on")
    app.b.one("vacation-enabled").click()
    app.b.one("vacation-save").click()
    app.b.wait(lambda _d: app.b.one("settings-status").text == "Vacation reply off", "the vacation reply off")
    app.b.one("settings-close").click()
    app.b.gone("settings")


def test_signature_from_settings_is_in_the_next_message(app, no_csp):
    _signed_in(app)
    tag = uuid.uuid4().hex[:6]
    app.b.one("action-settings").click()
    app.b.one("settings")
    sig = app.b.one("signature-text")
    sig.clear()
    sig.send_keys(f"Alice {tag}")
    app.b.one("signature-save").click()
    app.b.wait(lambda _d: app.b.one("settings-status").text == "Name and signature saved", "the signature saved")
    app.b.one("settings-close").click()
    app.b.gone("settings")
    app.b.one("action-compose").click()
    assert app.b.one("compose-body").get_attribute("value") == f"\n\n-- \nAlice {tag}\n"
    app.b.one("compose-close").click()
    app.b.gone("compose")


def test_conversation_view_groups_threads_and_pages_to_the_end(app, no_csp):
    """By conversation: a reply is one row with its count, and a mailbox of more threads than one page
    (50) scrolls to its oldest (the list asks no count of Threads: the mailbox's totalThreads and "a
    full page means more" give its length; a page past the end says where it stops)."""
    tag = uuid.uuid4().hex[:6]
    folder = f"Bulk {tag}"
    with imaplib.IMAP4("127.0.0.1", app.stack.imap_port, timeout=30) as c:
        c.login(*app.user)
        assert c.create(f'"{folder}"')[0] == "OK"
    now = time.time()
    n = 55
    for i in range(n):  # through the store, oldest first: 55 threads
        raw = (f"From: Sender {i} <s{i}@origin.example>\r\nTo: {app.user[0]}\r\nSubject: Bulk {tag} {i:02d}\r\n"
               f"Message-ID: <bulk{i}.{tag}@origin.example>\r\nMIME-Version: 1.0\r\n"
               f"Content-Type: text/plain; charset=utf-8\r\n\r\nNumber {i}.\r\n").encode()
        app.stack.store.append(app.user[0], folder, raw, internaldate=now - (n - i) * 60)
    reply = (f"From: Sender 9 <s9@origin.example>\r\nTo: {app.user[0]}\r\nSubject: Re: Bulk {tag} 09\r\n"
             f"Message-ID: <bulk-re.{tag}@origin.example>\r\nIn-Reply-To: <bulk9.{tag}@origin.example>\r\n"
             f"References: <bulk9.{tag}@origin.example>\r\nMIME-Version: 1.0\r\n"
             f"Content-Type: text/plain; charset=utf-8\r\n\r\nAgreed.\r\n").encode()
    app.stack.store.append(app.user[0], folder, reply, internaldate=now)
    toggle = app.driver.find_element("css selector", ".view-toggle input")
    app.b.wait(lambda _d: [m for m in app.b.by_testid("mailbox") if m.get_attribute("data-name") == folder],
               f"the mailbox {folder!r} listed", PIPELINE, tick=app.drain)
    try:
        toggle.click()
        app.open_mailbox(name=folder)
        first = app.row(f"Re: Bulk {tag} 09", drain=False)  # the thread's newest message leads its row
        assert first.find_element("css selector", ".row-count").text.strip() == "2"
        assert app.subjects()[0] == f"Re: Bulk {tag} 09"
        assert f"Bulk {tag} 09" not in app.subjects(), "the thread's older message has no row of its own"
        listing = app.b.one("message-list")
        oldest = f"Bulk {tag} 00"

        def at_the_end(d):
            d.execute_script("arguments[0].scrollTop = arguments[0].scrollHeight", listing)
            return oldest in app.subjects() and not d.find_elements("css selector", ".message-list .placeholder")

        app.b.wait(at_the_end, "the oldest thread listed, nothing left loading", PIPELINE)
        rows = int(app.driver.execute_script(
            "return Math.round(parseFloat(getComputedStyle(arguments[0].querySelector('.list-spacer')).height)"
            " / parseFloat(getComputedStyle(arguments[0]).getPropertyValue('--row-height') || 70))", listing))
        assert rows == n, f"the list is {rows} rows long, the mailbox has {n} threads"
        app.b.screenshot("conversations")
    finally:
        if toggle.is_selected():
            toggle.click()


# --- Spam / Not spam, rich text, password (webjunk) ---------------------------------------------
def imap_flags(stack, user: tuple[str, str], mailbox: str, subject: str) -> list[set[str]]:
    """FETCH FLAGS of the messages of ``mailbox`` whose Subject contains ``subject`` (a read-only SELECT)."""
    return [{f.decode() for f in imaplib.ParseFlags(part)} - {"\\Recent"}
            for part in imap_fetch(stack, user, mailbox, subject, "(FLAGS)")]


def test_spam_and_not_spam_move_set_the_keywords_and_teach_the_filter_once(app, no_csp):
    """Spam: the message goes to Junk, $Junk over IMAP, one spam lesson on the learn queue; Not spam from
    Junk: back in the Inbox, $NotJunk and no $Junk, one ham lesson (postern/junk.py, as IMAP moves)."""
    from rspamd_testing import LessonTap

    _signed_in(app)
    tap = LessonTap(app.stack, app.user[0])
    tap.lessons(0, ceiling=0)  # whatever earlier tests left for alice (nothing: no move into or out of Junk)
    base = len(tap.got)
    subject = f"Cheap watches {uuid.uuid4().hex[:6]}"
    smtp_in(app.stack, app.user[0], subject, body="Limited offer, buy now.")
    app.open_mailbox(role="inbox")
    app.open(subject)
    app.b.one("action-spam").click()
    app.b.wait(lambda _d: subject not in app.subjects(), "the message left the inbox list")
    app.b.wait(lambda _d: imap_flags(app.stack, app.user, "Junk", subject), "in Junk over IMAP")
    (flags,) = imap_flags(app.stack, app.user, "Junk", subject)
    assert "$Junk" in flags and "$NotJunk" not in flags, flags
    assert tap.lessons(base + 1)[base:] == [(True, "Junk", 1)]

    app.open_mailbox(role="junk")
    app.open(subject)
    app.b.screenshot("reader-junk")
    app.b.one("action-notspam").click()
    app.b.wait(lambda _d: subject not in app.subjects(), "the message left the Junk list")
    app.b.wait(lambda _d: imap_flags(app.stack, app.user, "INBOX", subject), "back in INBOX over IMAP")
    (flags,) = imap_flags(app.stack, app.user, "INBOX", subject)
    assert "$NotJunk" in flags and "$Junk" not in flags, flags
    assert imap_flags(app.stack, app.user, "Junk", subject) == []
    assert tap.lessons(base + 2)[base:] == [(True, "Junk", 1), (False, "INBOX", 1)]
    app.open_mailbox(role="inbox")


def test_rich_text_arrives_as_multipart_alternative_with_html_and_plain(app, accounts, no_csp):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    _signed_in(app)
    bob = accounts["bob"]
    subject = f"Formatted notes {uuid.uuid4().hex[:6]}"
    app.b.one("action-compose").click()
    app.b.one("compose")
    app.b.one("compose-to").send_keys(bob[0])
    app.b.one("compose-subject").send_keys(subject)
    app.b.one("compose-rich").click()
    body = app.b.wait(lambda _d: [e for e in app.b.by_testid("compose-body")
                                  if e.get_attribute("contenteditable") == "true" and e.is_displayed()],
                      "the rich-text editor")[0]
    # the caret before the signature (typed to the focused editor: WebDriver's element send_keys would move
    # the caret to the end of a contenteditable)
    app.driver.execute_script("const el = arguments[0]; el.focus(); const r = document.createRange();"
                              " r.setStart(el, 0); r.collapse(true); const s = window.getSelection();"
                              " s.removeAllRanges(); s.addRange(r);", body)
    ActionChains(app.driver).send_keys("Plain words, then ").perform()
    app.driver.find_element(By.CSS_SELECTOR, '[aria-label="Bold (Ctrl+B)"]').click()
    ActionChains(app.driver).send_keys("strong words").perform()
    app.b.wait(lambda _d: "strong words" in (body.get_attribute("innerHTML") or "")
               and ("<b>" in body.get_attribute("innerHTML") or "<strong>" in body.get_attribute("innerHTML")),
               "bold text in the editor")
    app.b.screenshot("compose-rich")
    app.b.one("compose-send").click()
    app.b.gone("compose")
    got = arrives(app, bob, "INBOX", subject)
    alternative = got if got.get_content_type() == "multipart/alternative" else next(
        (p for p in got.walk() if p.get_content_type() == "multipart/alternative"), None)
    assert alternative is not None, got.get_content_type()
    types = [p.get_content_type() for p in alternative.iter_parts()]
    assert types == ["text/plain", "text/html"], types  # RFC 2046 §5.1.4: the richest last
    plain, html = (p.get_content() for p in alternative.iter_parts())
    assert "Plain words, then strong words" in plain and "<b>" not in plain and "<strong>" not in plain, plain
    assert "strong words" in html and ("<b>strong words</b>" in html or "<strong>strong words</strong>" in html), html


@pytest.mark.timeout(300)  # a few sign-ins, each an argon2id check, on a loaded machine
def test_password_change_in_settings_new_works_old_fails_in_the_browser_and_over_imap(app, no_csp):
    """A user of its own changes the password in Settings: signed out, the old password refused and the new
    one accepted by the webmail's sign-in and by IMAP LOGIN. Alice is signed in again at the end."""
    from postern_local.liveness import IMAP4From

    b = app.b
    frank, old = _new_user(app, "frank")
    new = secrets.token_urlsafe(14)
    if [e for e in b.by_testid("signout") if e.is_displayed()]:
        b.one("signout").click()
    b.one("signin-email")
    try:
        sign_in(b, app.url, frank, old)
        b.one("message-list")
        b.one("action-settings").click()
        b.one("settings")
        b.one("password-current").send_keys(old)
        b.one("password-new").send_keys(new)
        b.one("password-confirm").send_keys(new)
        b.one("password-save").click()
        b.wait(lambda _d: b.one("settings-status").text.startswith("Password changed"), "the password changed")
        b.screenshot("settings-password")
        b.one("signin-email")  # the server revoked every token of frank's: back at the sign-in page

        sign_in(b, app.url, frank, old)
        error = b.wait(lambda _d: [e.text for e in b.by_testid("signin-error") if e.is_displayed() and e.text.strip()
                                   and b.one("signin-submit").is_enabled()], "the old password refused")[0]
        assert "password" in error.lower(), error
        sign_in(b, app.url, frank, new)
        b.one("message-list")
        imap = IMAP4From(app.stack.imap_port, "127.0.0.9")  # its own address: no other test's failures count
        try:
            with pytest.raises(imaplib.IMAP4.error):
                imap.login(frank, old)
        finally:
            imap.shutdown()
        with imaplib.IMAP4("127.0.0.1", app.stack.imap_port, timeout=30) as c:
            assert c.login(frank, new)[0] == "OK"
    finally:
        if [e for e in b.by_testid("signout") if e.is_displayed()]:
            b.one("signout").click()
        b.one("signin-email")
        sign_in(b, app.url, *app.user)
        b.one("message-list")
