"""Sieve benchmark: what Sieve adds to a delivery, against the store function without it.

In:   ``--quick`` (300 deliveries per case) or the full run (2,000); ``--messages N``;
      ``--no-moto`` skips the run over moto's DynamoDB/S3.
Out:  per store (in-memory twin; moto in process, the store function's real
      DynamoDB/S3 code), the time per delivery through the store pipeline's
      ``deliver()`` for:
        no sieve        POSTERN_SIEVE=false: the router's mailbox, nothing else (the baseline)
        managed only    the Postern-managed script (Junk rules), no user script
        50 rules        a user script of 50 rules (header, address, envelope,
                        :contains/:matches/:is, subaddress, relational), every test
                        evaluated, the last rule filing into a folder
      and the ratio of each to the baseline; then the pure evaluation time of
      the 50-rule script (compiled once, as the store function's cache keeps
      it) and its compile time (paid once per warm container per script).
Fails: exits 1 if a case raises.

In process and single-threaded: no network, no other load. The moto figures
count the same AWS requests a deployed store function makes, at moto's speed,
not AWS's (AWS adds ~5-10 ms per request, which makes Sieve's share smaller).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

USER = "bench@example.test"
RULES = 50


def script_50() -> str:
    lines = ['require ["fileinto", "envelope", "subaddress", "relational", "comparator-i;ascii-numeric", '
             '"variables", "imap4flags"];']
    kinds = [
        'if header :contains "subject" "project-{i}" {{ fileinto "Projects/{i}"; stop; }}',
        'if address :is :domain "from" "partner{i}.example" {{ fileinto "Partners"; stop; }}',
        'if header :matches "list-id" "*<list{i}.*>*" {{ fileinto "Lists/{i}"; stop; }}',
        'if envelope :detail "to" "tag{i}" {{ addflag "tag{i}"; }}',
        'if address :contains ["to", "cc"] "team{i}@" {{ fileinto "Team/{i}"; stop; }}',
        'if header :value "gt" :comparator "i;ascii-numeric" "x-priority" "{p}" {{ addflag "\\\\Flagged"; }}',
        'if allof(header :contains "from" "boss{i}", not header :contains "subject" "fyi") {{ keep; }}',
        'if header :is "x-mailer" "mailer-{i}" {{ discard; stop; }}',
        'if anyof(header :contains "subject" "invoice-{i}", header :contains "subject" "receipt-{i}") '
        '{{ fileinto "Billing"; stop; }}',
        'if header :matches "subject" "*[ticket #{i}]*" {{ set "t" "${{2}}"; fileinto "Tickets"; stop; }}',
    ]
    for i in range(RULES - 1):
        lines.append(kinds[i % len(kinds)].format(i=i, p=90 + i))
    lines.append('if header :contains "subject" "Weekly report" { fileinto "Reports"; }')
    return "\r\n".join(lines) + "\r\n"


def message(i: int) -> bytes:
    body = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 20 + "\r\n") * 4
    return (f"From: Colleague <colleague{i % 13}@example.org>\r\nTo: {USER}\r\nCc: someone@example.org\r\n"
            f"Subject: Weekly report {i}\r\nDate: Tue, 01 Dec 2026 10:00:00 +0000\r\n"
            f"Message-ID: <{i}@bench.test>\r\nX-Priority: 3\r\nX-Mailer: bench\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}").encode()


def jobs(store, n: int, tag: str):
    from postern.envelope import StoreJob
    from postern.store.summary import inline_header
    from postern.verdicts import AuthFacts, SpamVerdict

    out = []
    for i in range(n):
        raw = message(i)
        key = f"spool/{tag}{i}"
        store.put_spool(key, raw) if hasattr(store, "put_spool") else store.blobs.put(key, raw)
        out.append(StoreJob(queue_id=f"{tag}{i}", s3_key=key, user=USER, mail_from=f"colleague{i % 13}@example.org",
                            original_recipient=USER, received_at=time.time(), size=len(raw),
                            header=inline_header(raw), auth=AuthFacts(spf="pass").to_dict(),
                            spam=SpamVerdict("no action", 1.0).to_dict()))
    return out


def world(kind: str):
    """(store, repository, sieve delivery) over the in-memory twin or moto."""
    from postern import mailboxes
    from postern.directory import memory_directory
    from postern.items import MemoryItems
    from postern.sieve.delivery import SieveDelivery
    from postern.sieve.effects import Effects, MemoryOutlet, MemoryState
    from postern.sieve.repository import ScriptRepository

    if kind == "memory":
        from postern.store.memory import MemoryMailStore

        store = MemoryMailStore()
        repo = ScriptRepository(MemoryItems())
    else:
        import boto3

        from postern.aws import Clients
        from postern.config import Settings
        from postern.items import DynamoItems
        from postern.store.dynamo import DynamoMailStore

        s = Settings(bucket="bench-mail", mail_table="bench-mail", directory_table="bench-dir")
        for t in (s.mail_table, s.directory_table):
            boto3.client("dynamodb", region_name="us-east-1").create_table(
                TableName=t, BillingMode="PAY_PER_REQUEST",
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                      {"AttributeName": "sk", "AttributeType": "S"}],
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}])
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=s.bucket)
        clients = Clients(s)
        store = DynamoMailStore(s, clients)
        store.put_spool = lambda key, raw: clients.s3.put_object(Bucket=s.bucket, Key=key, Body=raw)
        repo = ScriptRepository(DynamoItems(lambda: clients.dynamodb, s.directory_table))  # one BatchGetItem
    directory = memory_directory()
    mailboxes.ensure_defaults(store, USER)
    for name in ("Reports", "Projects", "Partners", "Billing", "Tickets"):
        mailboxes.create(store, USER, name)
    sieve = SieveDelivery(repo, Effects(MemoryOutlet(), MemoryState()), directory, hostname="mail.example.test")
    return store, repo, sieve


def timed(store, sieve, batch) -> list[float]:
    from postern.pipeline import store as pipeline

    out = []
    for job in batch:
        t0 = time.perf_counter()
        pipeline.deliver(job, store, 0, sieve)
        out.append(time.perf_counter() - t0)
    return out


def run_store(kind: str, n: int) -> dict[str, float]:
    from postern.sieve.repository import program

    store, repo, sieve = world(kind)
    timed(store, sieve, jobs(store, 20, f"{kind}-warm-"))  # warm caches (mailbox ids, compiled managed script)
    res: dict[str, float] = {}
    res["no sieve"] = statistics.median(timed(store, None, jobs(store, n, f"{kind}-a-")))
    res["managed only"] = statistics.median(timed(store, sieve, jobs(store, n, f"{kind}-b-")))
    repo.put(USER, "bench", script_50())
    repo.activate(USER, "bench")
    program(script_50())
    res["50 rules"] = statistics.median(timed(store, sieve, jobs(store, n, f"{kind}-c-")))
    return res


def pure_eval(n: int) -> tuple[float, float]:
    from postern.mail.header import Header
    from postern.sieve import compile_script, run
    from postern.sieve.actions import USER as ORIGIN
    from postern.sieve.actions import Result
    from postern.sieve.message import Context, Envelope, MessageView

    text = script_50()
    t0 = time.perf_counter()
    for _ in range(20):
        prog = compile_script(text)
    compile_s = (time.perf_counter() - t0) / 20
    times = []
    for i in range(n):
        raw = message(i)
        ctx = Context(Envelope(f"colleague{i % 13}@example.org", USER, USER), MessageView(Header(raw), len(raw)))
        t0 = time.perf_counter()
        r = Result()
        run(prog, ctx, r, ORIGIN)
        r.outcome()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), compile_s


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--messages", type=int)
    ap.add_argument("--no-moto", action="store_true")
    args = ap.parse_args(argv)
    n = args.messages or (300 if args.quick else 2000)
    print(f"sieve benchmark: {n} deliveries per case, median time per delivery (store pipeline's deliver())")
    results = {"memory": run_store("memory", n)}
    if not args.no_moto:
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            os.environ.setdefault(k, "testing")
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        from moto import mock_aws

        with mock_aws():
            results["moto"] = run_store("moto", max(50, n // 4))
    for kind, res in results.items():
        base = res["no sieve"]
        print(f"\n{kind} store:")
        for case, t in res.items():
            print(f"  {case:<14} {t * 1000:8.3f} ms/delivery   ratio {t / base:5.2f}x vs no sieve")
        print(f"  sieve adds     {(res['50 rules'] - base) * 1000:8.3f} ms/delivery with a 50-rule script "
              f"({(res['managed only'] - base) * 1000:.3f} ms with the managed script alone)")
    ev, comp = pure_eval(n)
    print(f"\nevaluation alone: {ev * 1000:.3f} ms per delivery for the 50-rule script "
          f"(compile: {comp * 1000:.2f} ms, once per warm container per script)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
