"""Concurrent writers on one mailbox, a watcher following the change log: order, conflicts, write units.

Runs ``postern_local.logrun`` against the DynamoDB store on an in-process moto
(with the per-item atomicity DynamoDB has: postern_local.moto_atomic) and the
request counter that ``make cost`` uses, and prints: writers, changes, whether
the follower saw each exactly once and in order, the log-slot conflict rate,
and DynamoDB write request units per change (under contention, and for one
change of each kind alone). Loopback only; about a minute.

    .venv/bin/python bench/store_order.py [--writers 4] [--ops 25] [--seed 1]
"""

from __future__ import annotations

import argparse
import os
import sys

for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
             "AWS_DEFAULT_REGION": "us-east-1"}.items():
    os.environ.setdefault(k, v)
os.environ.pop("AWS_ENDPOINT_URL", None)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--ops", type=int, default=25, help="operations per writer")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="10 operations per writer (make bench)")
    args = ap.parse_args(argv)
    if args.quick:
        args.ops = min(args.ops, 10)

    from moto import mock_aws

    from postern.aws import Clients
    from postern.config import Settings
    from postern.store.dynamo import DynamoMailStore
    from postern.store.engine import LogStore
    from postern_local.logrun import run
    from postern_local.moto_atomic import install
    from postern_local.requests import RequestCounter
    from postern_local.resources import create_resources

    install()
    with mock_aws():
        res = create_resources(Clients(Settings()), prefix="order")
        settings = Settings.from_env({**os.environ, **res.environment()})
        clients = Clients(settings)
        counter = RequestCounter().install(clients)
        base = DynamoMailStore(settings, clients)

        def make_store():
            return LogStore(base.items, base.blobs, spool_prefix=base.spool_prefix, message_prefix=base.message_prefix)

        f = run(make_store, "bench@example.test", writers=args.writers, ops=args.ops, seed=args.seed, counter=counter)
    print(f.report())
    ok = not f.errors and f.seen == f.changes and not (f.out_of_order or f.duplicates or f.missing) and f.replay_matches
    print("all seen exactly once, in order" if ok else f"FAILED {f.errors}")
    alone = ", ".join(f"{k} {w / n:.1f}" for k, (n, w) in sorted(f.wru_by_kind.items()))
    print(f"summary: {f.writers} writers, {f.changes} changes, {'in order' if ok else 'NOT in order'}; "
          f"{f.conflict_rate:.0%} slot conflicts; {f.wru_per_change:.2f} WRU per change contended "
          f"(alone: {alone})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
