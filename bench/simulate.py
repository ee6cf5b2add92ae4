"""The scale model's inputs, measured: CPU and AWS requests per message of the router and store handlers.

In:   ``main(argv)``: ``--messages N`` (default 400) inbound messages of 1-3
      recipients (uniform) and 10-100 KB (uniform), ``--users`` local mailboxes
      the recipients are drawn from, ``--storm`` (every message to one mailbox:
      the hot-key case), ``--count N`` messages of the second, counted pass,
      ``--budget`` seconds (default 100: the run stops feeding when it is spent),
      ``--seed``, ``--json PATH`` (the figures as JSON too).
Out:  on stdout, a table per function: invocations, records, CPU ms per
      message (``time.thread_time`` of the thread that calls the handler: the
      handler's own Python, boto3 serialisation and HTTP included; the moto
      server answers in its own threads and is not counted; ``process_time``
      of the whole process, moto included, beside it as the upper bound), and
      AWS requests per inbound message by service and operation, with DynamoDB
      write units and the item writes per partition-key kind (``U#``, ``L#``,
      ``M#``... as postern/keys.py lays them out: which keys a mail storm heats).
Fails: exits non-zero when a handler reports a batch item failure or raises;
      nothing is estimated.

Method. A moto server (``ThreadedMotoServer``) on 127.0.0.1 with the
template's bucket, queues and tables (postern_local.resources), the
handlers' process environment as template.yaml's Globals give it, and the
real ``functions/router/app.py`` and ``functions/store/app.py`` handlers
imported in this process (postern_local.lambdas.load_handler). The
gateway's part is done untimed through the real ``postern.spool.Spooler``
(PUT to S3, envelope to the inbound queue). Lambda's event source mapping is
played by this loop: ReceiveMessage of up to 10 (template.yaml BatchSize), the
SQS event built as the local pollers build it, the handler called, then
DeleteMessageBatch; only the handler call is timed. Two passes: pass 1 times
the CPU with no botocore hook installed; pass 2 installs bench/cost.py's
counter (postern_local.requests.RequestCounter, no probe reads) and counts
the requests of ``--count`` more messages. Users are created and their
mailboxes made before anything is measured (first delivery creates them once
per user, not per message). Log lines and EMF metrics go to /dev/null, as
formatted as Lambda would print them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import time
from collections import Counter
from contextlib import contextmanager, nullcontext
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from common import md_table, message  # noqa: E402

DOMAIN = "example.test"
FUNCTIONS = ("router", "store")
WRITE_OPS = {"PutItem", "UpdateItem", "DeleteItem"}


# ---------------------------------------------------------------- partition-key tally
def _s(v) -> str:
    return v.get("S", "") if isinstance(v, dict) else str(v)


def pk_kind(pk: str) -> str:
    """``U#alice@x`` -> ``U#``; ``DOMAINS`` -> ``DOMAINS`` (postern/keys.py's layout)."""
    head, sep, _ = pk.partition("#")
    return head + sep


class KeyTally:
    """Item writes and reads per (table, pk kind), and the distinct partition keys written (botocore hook)."""

    def __init__(self, tables: dict[str, str]):
        self.tables = {v: k for k, v in tables.items()}  # physical name -> logical
        self.writes: Counter = Counter()
        self.reads: Counter = Counter()
        self.pk_writes: Counter = Counter()  # (table, pk) -> item writes

    def _w(self, table: str, key: dict | None) -> None:
        if key and "pk" in key:
            pk = _s(key["pk"])
            t = self.tables.get(table, table)
            self.writes[(t, pk_kind(pk))] += 1
            self.pk_writes[(t, pk)] += 1

    def _r(self, table: str, key: dict | None) -> None:
        if key and "pk" in key:
            self.reads[(self.tables.get(table, table), pk_kind(_s(key["pk"])))] += 1

    def hook(self, params=None, model=None, **kwargs) -> None:
        if not isinstance(params, dict) or model is None:
            return
        op = model.name
        if op in WRITE_OPS:
            self._w(params.get("TableName", ""), params.get("Key") or params.get("Item"))
        elif op == "TransactWriteItems":
            for it in params.get("TransactItems", []):
                for kind in ("Put", "Update", "Delete"):
                    if kind in it:
                        self._w(it[kind].get("TableName", ""), it[kind].get("Key") or it[kind].get("Item"))
        elif op == "BatchWriteItem":
            for table, reqs in params.get("RequestItems", {}).items():
                for r in reqs:
                    self._w(table, (r.get("PutRequest") or {}).get("Item") or (r.get("DeleteRequest") or {}).get("Key"))
        elif op == "GetItem":
            self._r(params.get("TableName", ""), params.get("Key"))
        elif op == "BatchGetItem":
            for table, spec in params.get("RequestItems", {}).items():
                for k in spec.get("Keys", []):
                    self._r(table, k)
        elif op == "Query":
            vals = params.get("ExpressionAttributeValues") or {}
            pk = next((_s(v) for v in vals.values() if "#" in _s(v) or _s(v).isupper()), "?")
            self.reads[(self.tables.get(params.get("TableName", ""), "?"), pk_kind(pk) + " (Query)")] += 1


# ---------------------------------------------------------------- the simulated stack
class Sim:
    def __init__(self, users: int, seed: int):
        self.rng = random.Random(seed)
        self.counter = None  # pass 2: postern_local.requests.RequestCounter (handler calls scoped lambda:<fn>)
        self._saved_env = dict(os.environ)
        from moto.server import ThreadedMotoServer

        from postern_local.moto_atomic import install

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the moto server's access log
        install()  # per-item atomicity, as DynamoDB has it (moto_atomic.py)
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        os.environ.update({
            "AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
            "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_NAMESPACE": "PosternSim",
            "POWERTOOLS_SERVICE_NAME": "postern", "POSTERN_HOSTNAME": "mx.example.test",
        })
        from postern import aws as aws_mod
        from postern import config
        from postern.aws import Clients
        from postern.config import Settings
        from postern_local.resources import create_resources

        self.res = create_resources(Clients(Settings()), prefix="sim")
        os.environ.update(self.res.environment())
        config.get_settings.cache_clear()
        aws_mod.reset_clients()
        self.settings, self.clients = config.get_settings(), aws_mod.get_clients()
        self.esm = Clients(self.settings).sqs  # the event source mapping's own client: never counted
        self.users = [f"user{i:03d}@{DOMAIN}" for i in range(users)]
        self._make_users()
        from postern.spool import Spooler
        from postern_local.lambdas import load_handler

        self.spooler = Spooler(self.settings, self.clients)
        self.handlers = {fn: load_handler(f"functions/{fn}", "app.lambda_handler", f"postern_sim_{fn}")
                         for fn in FUNCTIONS}
        self.queues = {"router": self.settings.inbound_queue_url, "store": self.settings.store_queue_url}
        self.arns = {"router": self.res.queue_arns["InboundQueue"], "store": self.res.queue_arns["StoreQueue"]}

    def _make_users(self) -> None:
        from argon2 import PasswordHasher

        from postern import passwords
        from postern.directory import dynamo_directory
        from postern.store.dynamo import DynamoMailStore

        passwords._HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)  # set-up only
        d = dynamo_directory(self.settings, self.clients)
        d.add_domain(DOMAIN)
        store = DynamoMailStore(self.settings, self.clients)
        for u in self.users:
            d.add_user(u, "sim-password")
            store.ensure_mailboxes(u)

    def close(self) -> None:
        from postern import aws as aws_mod
        from postern import config

        self.server.stop()
        os.environ.clear()
        os.environ.update(self._saved_env)
        config.get_settings.cache_clear()
        aws_mod.reset_clients()

    # --- the gateway's part (untimed) -------------------------------------------------
    def accept(self, storm: bool) -> tuple[int, int]:
        n = 1 if storm else self.rng.randint(1, 3)
        rcpts = [self.users[0]] if storm else self.rng.sample(self.users, n)
        size = self.rng.randint(10 * 1024, 100 * 1024)
        sender = f"sender{self.rng.randint(0, 10**6)}@remote.test"
        _mid, raw = message(sender, rcpts, size, subject="scale simulation")
        self.spooler.spool(raw, mail_from=sender, rcpt_to=rcpts, client_ip="192.0.2.10", helo="client.remote.test",
                           tls=True, trace_headers=f"Received: from client.remote.test ([192.0.2.10]) by mx.example.test\r\n")
        return len(rcpts), len(raw)

    # --- Lambda's event source mapping (only the handler call is timed) ---------------
    def pump(self, fn: str, stats: dict) -> int:
        from postern_local.lambdas import FakeContext
        from postern_local.pollers import sqs_event

        url, done = self.queues[fn], 0
        while True:
            msgs = self.esm.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                            AttributeNames=["All"]).get("Messages", [])
            if not msgs:
                return done
            event = sqs_event(msgs, self.arns[fn], self.settings.region)
            ctx = FakeContext(function_name=fn)
            t0, p0, w0 = time.thread_time(), time.process_time(), time.perf_counter()
            with self.counter.scope(f"lambda:{fn}") if self.counter else nullcontext():
                out = self.handlers[fn](event, ctx)
            t1, p1, w1 = time.thread_time(), time.process_time(), time.perf_counter()
            if out.get("batchItemFailures"):
                raise SystemExit(f"{fn}: batch item failures {out['batchItemFailures']}")
            s = stats[fn]
            s["invocations"] += 1
            s["records"] += len(msgs)
            s["thread_cpu"] += t1 - t0
            s["process_cpu"] += p1 - p0
            s["wall"] += w1 - w0
            self.esm.delete_message_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)])
            done += len(msgs)


def run_pass(sim: Sim, messages: int, storm: bool, deadline: float, chunk: int = 50) -> dict:
    stats = {fn: Counter() for fn in FUNCTIONS}
    sent = rcpts = size = 0
    while sent < messages and time.monotonic() < deadline:
        k = min(chunk, messages - sent)
        for _ in range(k):
            r, n = sim.accept(storm)
            rcpts += r
            size += n
        sent += k
        sim.pump("router", stats)
        sim.pump("store", stats)
    return {"messages": sent, "deliveries": rcpts, "bytes": size, "stats": stats}


@contextmanager
def quiet_stdout():
    """Powertools prints a JSON log line and EMF metrics per invocation: formatted, then dropped."""
    sys.stdout.flush()
    saved = os.dup(1)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(null)
        os.close(saved)


# ---------------------------------------------------------------- report
def report(cpu: dict, counted: dict, usage, tally: KeyTally, elapsed: float) -> tuple[str, dict]:
    n, deliveries = cpu["messages"], cpu["deliveries"]
    lines = [f"pass 1 (CPU, no hooks): {n} inbound messages, {deliveries} deliveries "
             f"({deliveries / max(n, 1):.2f} recipients/message), {cpu['bytes'] / max(n, 1) / 1024:.1f} KB average, "
             f"{elapsed:.1f} s wall in all", ""]
    rows, out = [], {"messages": n, "deliveries": deliveries, "functions": {}}
    for fn in FUNCTIONS:
        s = cpu["stats"][fn]
        per_msg = s["thread_cpu"] / max(n, 1) * 1000
        row = {
            "invocations": s["invocations"], "records": s["records"],
            "records_per_invocation": s["records"] / max(s["invocations"], 1),
            "cpu_ms_per_message": per_msg, "cpu_ms_per_record": s["thread_cpu"] / max(s["records"], 1) * 1000,
            "process_cpu_ms_per_message": s["process_cpu"] / max(n, 1) * 1000,
            "wall_ms_per_invocation": s["wall"] / max(s["invocations"], 1) * 1000,
        }
        out["functions"][fn] = row
        rows.append([fn, str(row["invocations"]), str(row["records"]), f"{row['records_per_invocation']:.1f}",
                     f"{row['cpu_ms_per_record']:.2f}", f"{per_msg:.2f}", f"{row['process_cpu_ms_per_message']:.2f}",
                     f"{row['wall_ms_per_invocation']:.1f}"])
    lines.append(md_table(["function", "invocations", "records", "records/inv", "CPU ms/record",
                           "CPU ms/inbound msg", "process CPU ms/msg (moto incl.)", "wall ms/inv"], rows))
    m = counted["messages"]
    lines += ["", f"pass 2 (requests, bench/cost.py's counter): {m} inbound messages, {counted['deliveries']} deliveries;"
              " per inbound message", ""]
    rows, out["requests"] = [], {}
    for scope, label in (("gateway", "gateway (spool)"), ("lambda:router", "router"), ("lambda:store", "store")):
        su = usage.scopes.get(scope)
        if su is None:
            continue
        for op, k in sorted(su.requests.items()):
            out["requests"][f"{label}: {op}"] = k / m
            rows.append([label, op, f"{k / m:.2f}"])
        rows.append([label, "**all**", f"**{su.total_requests / m:.2f}**"])
        out["requests"][f"{label}: all"] = su.total_requests / m
        out["requests"][f"{label}: DynamoDB WRU"] = su.ddb_wru / m
        out["requests"][f"{label}: DynamoDB RRU"] = su.ddb_rru / m
        if su.ddb_wru or su.ddb_rru:
            rows.append([label, "DynamoDB write / read units", f"{su.ddb_wru / m:.2f} / {su.ddb_rru / m:.2f}"])
    lines.append(md_table(["component", "request", "per inbound message"], rows))
    lines += ["", "DynamoDB items per inbound message by table and partition-key kind (postern/keys.py)", ""]
    rows, out["items"] = [], {}
    for what, c in (("write", tally.writes), ("read", tally.reads)):
        for (table, kind), k in sorted(c.items()):
            out["items"][f"{what} {table} {kind}"] = k / m
            rows.append([what, table, kind, f"{k / m:.2f}"])
    lines.append(md_table(["", "table", "pk kind", "items per message"], rows))
    if tally.pk_writes:
        (table, pk), k = tally.pk_writes.most_common(1)[0]
        hot = f"hottest partition key: {table} {pk_kind(pk)}... with {k} item writes for {m} messages ({k / m:.2f} per message)"
        lines += ["", hot]
        out["hottest_pk_writes_per_message"] = k / m
    return "\n".join(lines), out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=400)
    ap.add_argument("--count", type=int, default=100, help="messages of the counted pass (requests)")
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--storm", action="store_true", help="every message to one mailbox")
    ap.add_argument("--budget", type=float, default=100.0, help="seconds; feeding stops when spent")
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    t_start = time.monotonic()
    sim = Sim(a.users, a.seed)
    try:
        with quiet_stdout():
            run_pass(sim, 20, a.storm, time.monotonic() + 30)  # warm: imports, first clients, compiled caches
            deadline = t_start + a.budget
            cpu = run_pass(sim, a.messages, a.storm, deadline - 15)
            from postern_local.requests import RequestCounter

            counter = sim.counter = RequestCounter(probe=False).install(sim.clients)
            tally = KeyTally(sim.res.tables)
            sim.clients.register_hook("before-parameter-build.dynamodb", tally.hook)
            with counter.measure() as meas:
                counted = run_pass(sim, a.count, a.storm, deadline)
        text, out = report(cpu, counted, meas.usage, tally, time.monotonic() - t_start)
    finally:
        sim.close()
    print(text)
    if a.json:
        a.json.write_text(json.dumps(out, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
