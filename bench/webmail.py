"""Webmail: time to the first message list of a 10,000-message mailbox in the browser, against IMAP.

In:   ``main(argv)``: ``--messages N`` (default 10,000; ``--quick`` 1,000), ``--runs R`` timed runs
      after one warm-up (default 7; ``--quick`` 3), ``--json PATH``. Loopback only: the local stack
      (moto, the gateway, the local HTTPS front serving ``webmail/dist``, built by ``make webmail``), headless Debian chromium
      through Selenium (tests/browser.py; installed with apt-get when missing and root).
Out:  printed, p50 (and min/max) over the runs of:
      * browser: from the sign-in button's click to the first ``message-row`` in the DOM (seen by a
        MutationObserver in the page, so no polling lag), with the JMAP/auth requests the page made
        in that interval and the bytes they took (Resource Timing: ``transferSize``, response
        headers and body as received; the push WebSocket is not counted), two ways: a returning
        browser (the app remembers the account's inbox id, so the first page rides with Mailbox/get)
        and a first visit (localStorage cleared before signing in: the first page is a request of
        its own); and a returning browser in the conversation view (rows by thread: Thread/get rides
        with each page, and no count of Threads is asked);
      * IMAP, a client that fetches headers only, two ways: ``screenful`` = LOGIN, SELECT INBOX,
        FETCH the newest 50 (``FLAGS BODY.PEEK[HEADER.FIELDS (FROM TO CC SUBJECT DATE MESSAGE-ID)]``),
        what a client shows first; ``all headers`` = the same FETCH for ``1:*``, what a client that
        caches headers (Thunderbird's first sync) does before it is complete. Commands sent and bytes
        received counted at the socket.
      The app's load (navigation start to the sign-in form) is printed apart.
      * JMAP alone: the list's first page (Email/query newest 50 + Email/get, one POST) over HTTP.
Fails: exits 1 (after printing every figure) when a browser run shows no row within 120 s; IMAP
      answering other than OK stops it.

Seeding goes through the store's ``append``, not SMTP: the figure is the read path's, and
10,000 SMTP deliveries through the local Lambdas would take hours. By default (``--seed twin``)
the appends run on the store's in-memory twin (the same engine), whose items are then written to
the stack's table as they are (BatchWriteItem) and its blobs to the stack's bucket, as
bench/jmap_query.py seeds: 10,000 in a few minutes, where ``--seed append`` (each append on the
stack's moto, one after another) took 28 minutes.
"""

from __future__ import annotations

import argparse
import imaplib
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests"))

from common import percentile  # noqa: E402

USER, PASSWORD = "bench@webmail.test", "webmail-bench-password"
HEADERS = "FLAGS BODY.PEEK[HEADER.FIELDS (FROM TO CC SUBJECT DATE MESSAGE-ID)]"
SCREENFUL = 50
CEILING = 120.0

# Installed before the click: the first message-row's arrival, timed in the page.
OBSERVE = """
window.__bench = {t0: performance.now(), first: null};
const seen = () => document.querySelector('[data-testid="message-row"]');
new MutationObserver((_m, obs) => {
  if (window.__bench.first === null && seen()) { window.__bench.first = performance.now(); obs.disconnect(); }
}).observe(document.documentElement, {childList: true, subtree: true});
"""
# A row, or the app saying it could not load (a toast, or the list's own status): stop waiting.
GAVE_UP = """
if (window.__bench.first !== null) return true;
const said = [...document.querySelectorAll('[data-testid="status"], .list-status')].map(e => e.textContent).join(' ');
return /could not|cannot|unavailable/i.test(said);
"""
REQUESTS = """
const b = window.__bench;
return performance.getEntriesByType('resource')
  .filter(e => e.startTime >= b.t0 && e.startTime <= b.first
          && /\\/(jmap|auth|\\.well-known\\/jmap)/.test(new URL(e.name).pathname))
  .map(e => ({url: new URL(e.name).pathname, transfer: e.transferSize, body: e.encodedBodySize}));
"""


def seed(store, user: str, n: int, how: str = "twin") -> float:
    """``n`` plain messages into INBOX through the store (``append``, one after another: appends to one
    account commit through its change log, and concurrent ones only conflict), dated over the last
    months; seconds taken. ``twin``: appended on the in-memory twin of the store (the same engine,
    its default mailboxes included), then its items and blobs copied to ``store`` as they are."""
    from postern.store import memory_store

    t0 = time.monotonic()
    now = time.time()
    target, store = store, (memory_store() if how == "twin" else store)
    store.ensure_mailboxes(user)
    for i in range(n):
        raw = (f"From: Sender {i % 97} <sender{i % 97}@example.org>\r\nTo: {user}\r\n"
               f"Subject: Message number {i} about topic {i % 13}\r\nMessage-ID: <bench{i}@example.org>\r\n"
               f"Date: Tue, 01 Dec 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
               f"Content-Type: text/plain; charset=utf-8\r\n\r\nBody of message {i}.\r\n").encode()
        store.append(user, "INBOX", raw, internaldate=now - (n - i) * 600.0)
        if (i + 1) % 1000 == 0:
            print(f"  seeded {i + 1:,} in {time.monotonic() - t0:.0f} s", flush=True)
    if store is not target:
        target.items.batch_put(list(store.items.dump().values()))  # BatchWriteItem, 25 a request
        blobs = store.blobs.keys()
        for key in sorted(blobs):
            target.blobs.put(key, store.blobs.read(key))
        print(f"  copied {len(blobs):,} blobs and the items to the stack in {time.monotonic() - t0:.0f} s", flush=True)
    return time.monotonic() - t0


def jmap_page_run(base: str) -> dict:
    """The list's first page as the app asks for it (Email/query newest 50 + Email/get of their list
    properties, one POST), timed over HTTP with Basic credentials: where the browser's time goes."""
    import base64
    import urllib.error
    import urllib.request

    auth = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
            "Content-Type": "application/json"}

    def post(path: str, body: dict | None = None) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(base + path, data=data, headers=auth, method="POST" if data else "GET")
        try:
            with urllib.request.urlopen(req, timeout=CEILING) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, {}

    status, session = post("/.well-known/jmap")
    if status != 200:
        return {"ms": None, "status": f"session {status}"}
    acct = next(iter(session["accounts"]))
    using = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"]
    status, boxes = post("/jmap/api", {"using": using, "methodCalls": [["Mailbox/get", {"accountId": acct}, "m"]]})
    if status != 200:  # e.g. 503: the function past its Timeout counting a large mailbox
        return {"ms": None, "status": f"Mailbox/get {status}"}
    inbox = next(m["id"] for m in boxes["methodResponses"][0][1]["list"] if m["role"] == "inbox")
    t0 = time.monotonic()
    status, _ = post("/jmap/api", {"using": using, "methodCalls": [
        ["Email/query", {"accountId": acct, "filter": {"inMailbox": inbox}, "position": 0, "limit": 50,
                         "sort": [{"property": "receivedAt", "isAscending": False}], "calculateTotal": True}, "q"],
        ["Email/get", {"accountId": acct, "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                       "properties": ["id", "threadId", "mailboxIds", "keywords", "from", "to", "subject",
                                      "receivedAt", "hasAttachment", "size"]}, "g"]]})
    return {"ms": (time.monotonic() - t0) * 1000, "status": status, "requests": 1, "bytes": 0}


def browser_run(b, url: str, first_visit: bool = False, view: str = "message") -> dict:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By

    d = b.driver
    d.get(url)
    if first_visit:
        d.execute_script("localStorage.clear()")  # what this browser remembered (the inbox id)
    d.execute_script("localStorage.setItem('postern.view', arguments[0])", view)
    b.one("signin-email").send_keys(USER)
    b.one("signin-password").send_keys(PASSWORD)
    nav = d.execute_script("const n = performance.getEntriesByType('navigation')[0]; return n.domContentLoadedEventEnd;")
    d.execute_script(OBSERVE)
    d.find_element(By.CSS_SELECTOR, '[data-testid="signin-submit"]').click()
    try:
        b.wait(lambda dr: dr.execute_script(GAVE_UP), "the first message-row", CEILING)
    except TimeoutException:
        pass
    if not d.execute_script("return window.__bench.first !== null"):
        status = [e.text for e in b.by_testid("status")] + [e.text for e in b.by_testid("message-list")]
        settle(b)
        return {"ms": None, "failed": f"no message-row (ceiling {CEILING:.0f} s); page says {status!r}"}
    t = d.execute_script("return window.__bench.first - window.__bench.t0")
    reqs = d.execute_script(REQUESTS)
    rows = len(b.by_testid("message-row"))
    after = settle(b)
    return {"after_first_row": after, "ms": t, "app_load_ms": nav, "requests": len(reqs), "bytes": sum(r["transfer"] for r in reqs),
            "body_bytes": sum(r["body"] for r in reqs), "paths": [r["url"] for r in reqs], "rows_in_dom": rows}


def settle(b, quiet: float = 3.0, ceiling: float = 60.0) -> list[str]:
    """Wait until the quota is shown (identities and quota are asked once the list is on screen) and no
    request has completed for ``quiet`` seconds (previews, the push ticket, Mailbox/changes: a Resource
    Timing entry appears when its request completes), so the next run's navigation cuts none short;
    the paths of those requests."""
    d = b.driver
    try:
        b.wait(lambda dr: dr.execute_script(
            "const q = document.querySelector('[data-testid=quota]'); return !q || q.dataset.used !== undefined"),
            "the quota shown", ceiling)
    except Exception:  # noqa: BLE001 - a page that never shows it is settled by the quiet period alone
        pass
    d.execute_script("if (window.__bench.first === null) window.__bench.first = performance.now()")  # a failed run
    script = "return performance.getEntriesByType('resource').filter(e => e.startTime > window.__bench.first).length"
    seen, since = -1, time.monotonic()
    deadline = since + ceiling
    while time.monotonic() < deadline:
        n = d.execute_script(script)
        if n != seen:
            seen, since = n, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
        time.sleep(0.1)
    return d.execute_script("return performance.getEntriesByType('resource')"
                            ".filter(e => e.startTime > window.__bench.first).map(e => new URL(e.name).pathname)")


class CountingIMAP(imaplib.IMAP4):
    """imaplib counting the bytes it reads and the commands it sends."""

    received = 0
    commands = 0

    def read(self, size):
        data = super().read(size)
        self.received += len(data)
        return data

    def readline(self):
        line = super().readline()
        self.received += len(line)
        return line

    def _command(self, name, *args):
        self.commands += 1
        return super()._command(name, *args)


def imap_run(port: int, mode: str) -> dict:
    t0 = time.monotonic()
    c = CountingIMAP("127.0.0.1", port, timeout=CEILING)
    c.login(USER, PASSWORD)
    typ, data = c.select("INBOX", readonly=True)
    exists = int(data[0])
    span = f"{max(1, exists - SCREENFUL + 1)}:*" if mode == "screenful" else "1:*"
    typ, fetched = c.fetch(span, f"({HEADERS})")
    if typ != "OK":
        raise SystemExit(f"IMAP FETCH {span}: {typ}")
    ms = (time.monotonic() - t0) * 1000
    got = sum(1 for f in fetched if isinstance(f, tuple))
    c.logout()
    return {"ms": ms, "requests": c.commands, "bytes": c.received, "messages": got}


def summary(name: str, runs: list[dict]) -> str:
    ms = [r["ms"] for r in runs]
    return (f"{name:<34} p50 {percentile(ms, 50):8.0f} ms  (min {min(ms):.0f}, max {max(ms):.0f}, n={len(ms)})  "
            f"{runs[-1]['requests']:3d} requests  {runs[-1]['bytes']:>10,} bytes")


def run(messages: int, runs: int, how: str = "twin") -> dict:
    import browser as B
    from postern_local.stack import LocalStack

    stack = LocalStack({"POSTERN_LOGIN_FAIL_DELAY": "0"}, ephemeral_ports=True, background=False).start()
    chrome = None
    try:
        domain = USER.split("@")[1]
        stack.directory.add_domain(domain)
        stack.directory.add_user(USER, PASSWORD)
        seconds = seed(stack.store, USER, messages, how)
        print(f"seeded {messages:,} messages through the store in {seconds:.1f} s")
        url = stack.webmail_url
        if not url:
            raise SystemExit("webmail/dist/index.html is missing: run `make webmail` (make bench does) first")
        chrome = B.start_chrome()
        out = {"messages": messages, "browser": [], "browser_first": [], "browser_threads": [], "jmap_page": [],
               "imap_screenful": [], "imap_all": []}
        skip = set()  # a kind whose warm-up showed no row is not run again: each failure past the
        # function's Timeout kills a worker, and the next run would time a cold start
        for i in range(runs + 1):  # the first of each is a warm-up (cold workers, caches)
            f = browser_run(chrome, url, first_visit=True)
            r = browser_run(chrome, url)
            t = browser_run(chrome, url, view="thread") if "thread" not in skip else {"ms": None, "failed": "skipped"}
            if i == 0 and t.get("ms") is None:
                skip.add("thread")
                print(f"conversation view: no row in the warm-up ({t['failed']}): not run again")
            j = jmap_page_run(stack.http_url)
            s = imap_run(stack.imap_port, "screenful")
            a = imap_run(stack.imap_port, "all")
            if a["messages"] != messages:
                raise SystemExit(f"IMAP fetched {a['messages']} of {messages}")
            if i:
                out["browser"].append(r)
                out["browser_first"].append(f)
                out["browser_threads"].append(t)
                out["jmap_page"].append(j)
                out["imap_screenful"].append(s)
                out["imap_all"].append(a)
        return out
    finally:
        if chrome is not None:
            chrome.quit()
        stack.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--messages", type=int, default=None)
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--quick", action="store_true", help="1,000 messages, 3 runs")
    ap.add_argument("--seed", choices=("twin", "append"), default="twin",
                    help="twin: append on the in-memory twin, then copy (default); append: on the stack")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    messages = a.messages or (1000 if a.quick else 10_000)
    runs = a.runs or (3 if a.quick else 7)
    r = run(messages, runs, a.seed)
    print(f"mailbox of {messages:,} messages, p50 over {runs} runs after a warm-up (loopback, local stack on moto)")
    failed = []
    for key, name in (("browser", "browser: sign-in click -> first row"),
                      ("browser_first", "browser, first visit: -> first row"),
                      ("browser_threads", "browser, conversations: -> first row")):
        ok = [x for x in r[key] if x.get("ms") is not None]
        failed += [f"{name}: {x['failed']}" for x in r[key] if x.get("ms") is None and x["failed"] != "skipped"]
        if ok:
            print(summary(name, ok))
            print(f"{'':<34} {ok[-1]['rows_in_dom']} rows in the DOM; requests: {', '.join(ok[-1]['paths'])}")
            print(f"{'':<34} then, after the first row: {', '.join(ok[-1]['after_first_row']) or 'nothing'}")
            print(f"{'':<34} app load (navigation -> DOMContentLoaded) p50 "
                  f"{percentile([x['app_load_ms'] for x in ok], 50):.0f} ms")
    ok = [x for x in r["browser"] if x.get("ms") is not None]
    for f in failed:
        print(f"FAILED: {f}")
    j = [x for x in r["jmap_page"] if x["ms"] is not None]
    statuses = sorted({str(x["status"]) for x in r["jmap_page"]})
    print(f"{'JMAP list page (query+get 50), 1 POST':<34} p50 "
          f"{percentile([x['ms'] for x in j], 50) if j else float('nan'):8.0f} ms  (statuses {statuses})")
    print(summary(f"IMAP headers, newest {SCREENFUL} (screenful)", r["imap_screenful"]))
    print(summary("IMAP headers, all (1:*)", r["imap_all"]))
    if ok:
        ratio = percentile([x["ms"] for x in ok], 50) / percentile([x["ms"] for x in r["imap_screenful"]], 50)
        print(f"ratio browser / IMAP screenful (p50): {ratio:.2f}x")
    if a.json:
        a.json.write_text(json.dumps(r, indent=1) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
