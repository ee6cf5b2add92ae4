"""Time and AWS requests of the webmail's first list page: Email/query newest first in one mailbox.

In:   ``main(argv)``: ``--messages N`` (default 10000) delivered to INBOX, plus ``--others M``
      (default 500) in Archive, ``--runs R`` (default 5), ``--json PATH``. ``BENCH_ROOT`` names another
      tree to measure (a "before" run against an older checkout).
Out:  on stdout, for each call the webmail makes when it opens a mailbox (a fresh account view, as
      the HTTPS function serves each request): ``Email/query {inMailbox, receivedAt desc, limit 50,
      calculateTotal}`` without and with ``collapseThreads``, ``Mailbox/get``, and the conversation
      view's first page as the webmail asks it in one request (Email/query with collapseThreads and
      calculateTotal, Email/get and Thread/get by result reference): the p50 wall time over the runs,
      the AWS requests by operation and the DynamoDB items they read.
Fails: exits non-zero when the query does not return the 50 newest Emails, or a count is not the
      seeded one (INBOX: N Emails, N/4 Threads).

Method: the DynamoDB + S3 store on moto in process (``mock_aws``), the mail table as template.yaml
declares it; messages go in through the store's append (the path a delivery takes, without SMTP) on
the in-memory twin of the same engine, whose items are then written to the table as they are
(BatchWriteItem: seeding 10,000 appends on moto would take most of an hour); dated one second apart
in delivery order, every fourth a new thread. A botocore hook counts each API call.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(os.environ.get("BENCH_ROOT") or Path(__file__).resolve().parents[1])
for p in ("layers/postern", "local"):
    sys.path.insert(0, str(ROOT / p))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from jmap_email_get import _count, moto_store  # noqa: E402  (the request counter and the store, written once)

USING = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"]
BASE = 1_700_000_000.0
# The webmail's list rows (webmail/src/list.ts LIST_PROPERTIES).
LIST_PROPERTIES = ["id", "threadId", "mailboxIds", "keywords", "from", "to", "subject", "receivedAt",
                   "hasAttachment", "size"]


def measure(n: int, others: int, runs: int, profile: Path | None = None) -> dict:
    from moto import mock_aws

    from postern import mailboxes as MB
    from postern.jmap import api
    from postern.jmap.account import Account
    from postern.store import memory_store
    from postern.store.dynamo import DynamoMailStore
    from postern_local import moto_speed

    moto_speed.install()  # as the local stack's moto (make run, bench/webmail.py)

    with mock_aws():
        settings, clients, store = moto_store()
        user = "bench@example.test"
        seed = memory_store()  # the same engine over in-memory items: its items are what DynamoDB would hold
        MB.ensure_defaults(seed, user)
        t0 = time.monotonic()
        newest: list[str] = []
        for i in range(n + others):
            box = "INBOX" if i < n else "Archive"
            refs = f"References: <m{i - 1}@example.org>\r\n" if i % 4 else ""
            raw = (f"From: s{i}@example.org\r\nTo: {user}\r\nSubject: message {i}\r\n"
                   f"Message-ID: <m{i}@example.org>\r\n{refs}\r\nbody {i}\r\n").encode()
            r = seed.append(user, box, raw, internaldate=BASE + (i if i < n else i - n - others))
            if box == "INBOX":
                newest.append(r.email_id)
        store.items.batch_put(list(seed.items.dump().values()))  # BatchWriteItem, 25 a request
        seed_s = time.monotonic() - t0
        newest = newest[::-1][:50]
        inbox = store.get_mailbox(user, "INBOX").mailbox_id
        out: dict = {"seed_seconds": round(seed_s, 1)}
        query = {"filter": {"inMailbox": inbox}, "sort": [{"property": "receivedAt", "isAscending": False}],
                 "position": 0, "limit": 50, "calculateTotal": True}
        thread_page = [["Email/query", {**query, "collapseThreads": True}, "p"],
                       ["Email/get", {"#ids": {"resultOf": "p", "name": "Email/query", "path": "/ids"},
                                      "properties": ["threadId", "subject", "receivedAt", "keywords"]}, "g"],
                       ["Thread/get", {"#ids": {"resultOf": "g", "name": "Email/get", "path": "/list/*/threadId"}},
                        "t"]]
        list_page = [["Email/query", query, "q"],
                     ["Email/get", {"#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                                    "properties": LIST_PROPERTIES}, "g"]]
        calls = {"Email/query": [["Email/query", query, "c"]],
                 "Email/query collapseThreads": [["Email/query", {**query, "collapseThreads": True}, "c"]],
                 "Mailbox/get": [["Mailbox/get", {}, "c"]],
                 "conversation view page": thread_page,
                 "list page (query + Email/get)": list_page,
                 "webmail first request": [["Mailbox/get", {}, "m"], *list_page]}
        import cProfile

        profiler = cProfile.Profile() if profile else None  # the calls only, not the seeding
        for label, batch in calls.items():
            times, result = [], {}
            seen = items = None
            for _ in range(runs):
                def call():
                    acct = Account(user=user, store=DynamoMailStore(settings, clients))  # a fresh request's view
                    result["r"] = api.handle(acct, {"using": USING, "methodCalls": [
                        [m, {"accountId": acct.id, **args}, cid] for m, args, cid in batch]})

                t = time.perf_counter()
                if profiler:
                    profiler.enable()
                seen, items = _count(clients, call)
                if profiler:
                    profiler.disable()
                times.append(time.perf_counter() - t)
            for (name, body, _), (method, _, _) in zip(result["r"]["methodResponses"], batch):
                if name != method:
                    raise SystemExit(f"{label}: {body}")
            name, body, _ = result["r"]["methodResponses"][0]
            if label == "Email/query" and (body["ids"] != newest or body.get("total") != n):
                raise SystemExit(f"{label}: not the 50 newest of {n}: {body['ids'][:3]}... total {body.get('total')}")
            if label == "Email/query collapseThreads" and body.get("total") not in (None, n // 4):
                raise SystemExit(f"{label}: total {body.get('total')}, seeded {n // 4} threads")
            if label == "Mailbox/get":
                box = next(b for b in body["list"] if b["id"] == inbox)
                if (box["totalEmails"], box["unreadEmails"], box["totalThreads"]) != (n, n, n // 4):
                    raise SystemExit(f"{label}: INBOX counts {box}, seeded {n} Emails in {n // 4} Threads")
            out[label] = {"p50_ms": round(statistics.median(times) * 1000, 1), "requests": sum(seen.values()),
                          "items_read": items, "by_operation": dict(sorted(seen.items()))}
        if profiler:
            profiler.dump_stats(str(profile))
        return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--messages", type=int, default=10000)
    ap.add_argument("--others", type=int, default=500)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--profile", type=Path, help="cProfile stats of the timed calls (not the seeding) to this file")
    a = ap.parse_args(argv)
    f = measure(a.messages, a.others, a.runs, a.profile)
    import postern
    print(f"tree {Path(postern.__file__).parents[1]}: {a.messages} messages in INBOX, {a.others} in Archive (seeded in {f['seed_seconds']} s)")
    for label, v in f.items():
        if isinstance(v, dict):
            ops = ", ".join(f"{k} {c}" for k, c in v["by_operation"].items())
            print(f"  {label:30} p50 {v['p50_ms']:9.1f} ms  {v['requests']:4} requests  "
                  f"{v['items_read']:6} DynamoDB items read  ({ops})")
    if a.json:
        a.json.write_text(json.dumps(f, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
