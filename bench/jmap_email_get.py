"""AWS requests per JMAP Email/get by id, for an account of N messages (the email-id index's figure).

In:   ``main(argv)``: ``--messages N`` (default 1000) spread over INBOX (70 %), Archive (20 %)
      and Sent (10 %), ``--json PATH``.
Out:  on stdout, the requests one ``Email/get`` of one Email by id makes (one request, a fresh
      account view, as the HTTPS function serves each request), by service and operation, for
      metadata properties only (``id, mailboxIds, keywords``) and for the default properties
      (headers and body too: the message's S3 GET); and the same for an account of 10 messages,
      so the growth with the account's size shows; and the DynamoDB items those requests read
      (what they bill: a Query reads and pays for every item it returns, however few requests).
Fails: exits non-zero when Email/get does not return the Email asked for.

Method: the DynamoDB + S3 store (``DynamoMailStore``) on moto in process (``mock_aws``), the mail
table as template.yaml declares it, messages appended through the store; a botocore
``before-call`` hook counts each API call the JMAP layer makes (retries are not expected on moto).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(os.environ.get("BENCH_ROOT") or Path(__file__).resolve().parents[1])  # another tree: a "before" run
for p in ("layers/postern", "local"):
    sys.path.insert(0, str(ROOT / p))


def _fill(store, user: str, n: int) -> list[str]:
    from postern import mailboxes as MB

    MB.ensure_defaults(store, user)
    ids = []
    for i in range(n):
        box = "INBOX" if i % 10 < 7 else ("Archive" if i % 10 < 9 else "Sent")
        raw = (f"From: s{i}@example.org\r\nTo: {user}\r\nSubject: message {i}\r\n"
               f"Message-ID: <m{i}@example.org>\r\n\r\nbody {i}\r\n").encode()
        ids.append(store.append(user, box, raw).email_id)
    return ids


def _count(clients, fn) -> tuple[Counter, int]:
    seen: Counter = Counter()
    items = [0]

    def hook(model, **_kw):
        seen[f"{model.service_model.service_name}.{model.name}"] += 1

    def after(model, parsed, **_kw):
        if model.name in ("Query", "Scan"):
            items[0] += int(parsed.get("Count", 0))
        elif model.name == "BatchGetItem":
            items[0] += sum(len(v) for v in (parsed.get("Responses") or {}).values())
        elif model.name == "GetItem":
            items[0] += 1 if parsed.get("Item") else 0

    clients.register_hook("before-call", hook)
    clients.register_hook("after-call", after)
    try:
        fn()
    finally:
        for c in clients._clients.values():
            c.meta.events.unregister("before-call", hook)
            c.meta.events.unregister("after-call", after)
        clients._hooks = [h for h in clients._hooks if h[1] not in (hook, after)]
    return seen, items[0]


def moto_store():
    """Inside ``mock_aws``: (settings, clients, store) of a DynamoDB + S3 store whose mail table is
    declared as template.yaml declares MailTable, and its bucket."""
    from postern.aws import Clients
    from postern.config import Settings
    from postern.store.dynamo import DynamoMailStore
    from postern_local.template import load_template, resources_of_type

    settings = Settings.from_env({**os.environ, "POSTERN_MAIL_TABLE": "bench-mail", "POSTERN_BUCKET": "bench-mail"})
    clients = Clients(settings)
    props = resources_of_type(load_template(), "AWS::DynamoDB::Table")["MailTable"]["Properties"]
    clients.dynamodb.create_table(TableName="bench-mail", AttributeDefinitions=props["AttributeDefinitions"],
                                  KeySchema=props["KeySchema"], BillingMode="PAY_PER_REQUEST")
    clients.s3.create_bucket(Bucket="bench-mail")
    return settings, clients, DynamoMailStore(settings, clients)


def measure(n: int) -> dict:
    from moto import mock_aws

    from postern.jmap import api
    from postern.jmap.account import Account
    from postern.store.dynamo import DynamoMailStore

    with mock_aws():
        settings, clients, store = moto_store()
        user = "bench@example.test"
        ids = _fill(store, user, n)
        out = {}
        for label, props_ in (("metadata", ["id", "mailboxIds", "keywords"]), ("default", None)):
            target = ids[len(ids) // 2]
            args = {"accountId": Account(user, store).id, "ids": [target]}
            if props_:
                args["properties"] = props_
            result = {}

            def call():
                acct = Account(user=user, store=DynamoMailStore(settings, clients))  # a fresh request's view
                result["r"] = api.handle(acct, {"using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"],
                                                "methodCalls": [["Email/get", args, "g"]]})

            seen, items = _count(clients, call)
            got = result["r"]["methodResponses"][0][1]
            if [e["id"] for e in got.get("list", [])] != [target]:
                raise SystemExit(f"Email/get did not return {target}: {got}")
            out[label] = {"total": sum(seen.values()), "items_read": items, "by_operation": dict(sorted(seen.items()))}
        return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    figures = {str(n): measure(n) for n in (10, a.messages)}
    for n, f in figures.items():
        for label, v in f.items():
            ops = ", ".join(f"{k} {c}" for k, c in v["by_operation"].items())
            print(f"{n:>6} messages  Email/get 1 id ({label:8}): {v['total']:4} requests, {v['items_read']:5} "
                  f"DynamoDB items read  ({ops})")
    if a.json:
        a.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
