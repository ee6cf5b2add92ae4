"""What Postern costs to run: per million messages and the monthly idle floor (``make cost``).

In:   the local stack (moto, the real Lambda handlers, the gateway on
      loopback), the price table ``postern/data/prices.json`` and template.yaml.
Out:  ``docs/cost.md`` (the tables and how they were computed) and
      ``layers/postern/postern/data/cost_profile.json`` (per-stage usage per
      message, which ``postern trace ID --cost`` multiplies out); the main
      table on stdout. ``main(argv)``: ``--quick`` (fewer repetitions),
      ``--out PATH``, ``--profile PATH``, ``--no-write`` (print only).
Fails: exits non-zero when the stack or a scenario fails; a scenario whose
      server has not landed yet (e.g. no IMAP listener) is reported as
      "not measured", never estimated.

Method. A :class:`~postern_local.requests.RequestCounter` on the stack's
shared boto3 clients counts every HTTP request each component makes
(gateway; ``lambda:<function>`` inside a handler), with the billed quantities:
S3 request tiers and bytes, SQS requests in 64 KB chunks, DynamoDB read and
write request units from the sizes of the items read and written (probed
with an un-hooked client where the call does not show them, including GSI
writes). Each scenario runs ``--reps`` times on warmed-up mailboxes (first
delivery creates a user's mailboxes once) and is drained message by message,
so every Lambda batch holds one record: the low-volume, worst case for
Lambda request counts (at volume, batches of up to 10 divide the Lambda
requests and the SQS receive/delete calls by up to 10).

Lambda's event source mapping (ESM), which AWS runs, is modelled rather than
counted (the local pollers' empty polls are an artefact): per batch one
ReceiveMessage and one DeleteMessageBatch. Lambda GB-seconds are the handlers'
measured wall time on this machine, rounded up to the millisecond per
invocation, at the memory template.yaml configures; the local AWS endpoint
answers in about a millisecond, AWS in several, so real durations are longer:
the table also shows Lambda duration at +10 ms per AWS request, a stated
allowance, not a measurement.
"""

from __future__ import annotations

import argparse
import os
import datetime as _dt
import imaplib
import json
import math
import poplib
import smtplib
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

from common import md_table, message, table

DOCS = REPO / "docs" / "cost.md"
HAND_WRITTEN = "<!-- written by hand from here on: make cost keeps it -->"
PROFILE = REPO / "layers" / "postern" / "postern" / "data" / "cost_profile.json"
GB = 1024 ** 3
MONTH_H = 730
AWS_LATENCY_ALLOWANCE = 0.010  # seconds per AWS request added for the "at AWS latency" duration column
LAMBDA_SCOPES = ("lambda:RouterFunction", "lambda:StoreFunction", "lambda:DeliverFunction", "lambda:NdrFunction")


# ---------------------------------------------------------------- measuring
GATEWAY_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"  # gateway/postern_gateway/__main__.py


class GatewayLogBytes:
    """The gateway's log lines as its container prints them (its format, at its default level INFO), counted:
    the gateway runs in this process, the handlers in their workers (which count their own output)."""

    LOGGERS = ("postern_gateway", "postern")

    def __init__(self):
        import logging

        self.bytes = 0
        self.events = 0
        outer = self

        class _Count(logging.Handler):
            def emit(self, record):
                if record.name.startswith(("postern.local", "postern_local")):
                    return  # the local stack's own lines: not the gateway's
                try:
                    line = self.format(record) + "\n"
                except Exception:  # noqa: BLE001 - a bad format argument: count nothing, never fail the run
                    return
                outer.bytes += len(line.encode("utf-8", "replace"))
                outer.events += line.count("\n")

        self.handler = _Count(level=logging.INFO)
        self.handler.setFormatter(logging.Formatter(GATEWAY_LOG_FORMAT))
        for name in self.LOGGERS:
            lg = logging.getLogger(name)
            lg.addHandler(self.handler)
            if lg.getEffectiveLevel() > logging.INFO:
                lg.setLevel(logging.INFO)
                lg.propagate = False  # counted, not printed: the bench's own stderr stays at WARNING

    def take(self) -> tuple[int, int]:
        out = (self.bytes, self.events)
        self.bytes = self.events = 0
        return out


class Run:
    """One stack, one counter, the scenarios."""

    def __init__(self, reps: int):
        from postern_local.evidence import Evidence

        self.reps = reps
        self.ev = Evidence(probe=True)
        from postern_local.fakemx import FakeMX, Script

        self.mx = FakeMX(script=Script().on_rcpt("nobody@remote.test", *(["550 5.1.1 no such user"] * (reps + 5))))
        self.mx.start()
        from postern_local.stack import LocalStack

        self.stack = LocalStack(
            {
                "POSTERN_OUTBOUND_TRANSPORT": "smarthost",
                "POSTERN_SMARTHOST": f"127.0.0.1:{self.mx.port}",
                "POSTERN_SMARTHOST_TLS": "none",
                "POSTERN_MX_PORT": str(self.mx.port),
                "POSTERN_LOGIN_FAIL_DELAY": "0",
                "POSTERN_IMAP_POLL_INTERVAL": "0.5",
                "POSTERN_DEMO_USER": "alice@example.test",
                "POSTERN_DEMO_PASSWORD": "alice-password",
                # The handlers log and emit metrics as deployed (template.yaml's LOG_LEVEL; EMF on), counted by
                # their workers and not printed (postern_local.worker): the Logs column is measured.
                "LOG_LEVEL": deployed_log_level(),
                "POWERTOOLS_METRICS_DISABLED": "false",
                "POSTERN_LOCAL_HANDLER_OUTPUT": "count",
            },
            ephemeral_ports=True,
            background=False,
            handler_wrapper=self.ev.handler_wrapper,
        ).start()
        s = self.stack
        self.password = "alice-password"
        self.users = ["alice@example.test", "bob@example.test", "carol@example.test"]
        for u in self.users[1:]:
            s.directory.add_user(u, self.password)
        self.ev.attach(s)
        self.gateway_logs = GatewayLogBytes()
        self.results: dict[str, dict] = {}
        self.memory = {fn.logical_id: fn.memory for fn in s.functions.values()}

    def close(self) -> None:
        try:
            self.stack.stop()
        finally:
            self.mx.stop()

    # --- one measured step -------------------------------------------------
    def _measure(self, name: str, messages: int, fn, **extra):
        n_inv = len(self.ev.invocations)
        self.gateway_logs.take()
        with self.ev.counter.measure() as m:
            info = fn() or {}
        inv = self.ev.invocations_since(n_inv)
        gw_bytes, gw_events = self.gateway_logs.take()
        self.results[name] = {"usage": m.usage, "invocations": inv, "messages": messages,
                              "gateway_log_bytes": gw_bytes, **extra, **info}

    def _smtp_send(self, rcpts: list[str], sender: str = "someone@remote.test", size: int = 10 * 1024):
        _mid, raw = message(sender, rcpts, size)
        with smtplib.SMTP("127.0.0.1", self.stack.smtp_port, timeout=30) as c:
            c.sendmail(sender, rcpts, raw)
        self.stack.drain()
        return len(raw)

    def _submit(self, rcpts: list[str], size: int = 10 * 1024):
        return self._submit_as(self.users[0], rcpts, size)

    def _submit_as(self, sender: str, rcpts: list[str], size: int = 10 * 1024):
        _mid, raw = message(sender, rcpts, size)
        with smtplib.SMTP("127.0.0.1", self.stack.submission_port, timeout=30) as c:
            c.ehlo("client.example.test")
            c.login(sender, self.password)
            c.sendmail(sender, rcpts, raw)
        self.stack.drain()
        return len(raw)

    def scenarios(self) -> None:
        reps = self.reps
        # Warm-up: first delivery creates each user's mailboxes (once per user, not per message).
        self._smtp_send(self.users)
        self._submit(["warm@remote.test"])
        size = {"n": 0}

        def inbound(rcpts):
            def run():
                for _ in range(reps):
                    size["n"] = self._smtp_send(rcpts)
                return {"bytes": size["n"]}
            return run

        self._measure("inbound, 1 recipient", reps, inbound(self.users[:1]))
        self._measure("inbound, 3 recipients", reps, inbound(self.users))

        def outbound():
            before = len(self.mx.messages)
            for _ in range(reps):
                size["n"] = self._submit(["bob@remote.test"])
            sent = len(self.mx.messages) - before
            return {"bytes": size["n"], "data_out": sum(len(r.data) for r in self.mx.messages[before:]),
                    "delivered_remote": sent}

        def bounced():
            for _ in range(reps):
                self._submit(["nobody@remote.test"])
            return {}

        # Sieve increments: the same inbound message to a user with an active script (read with the
        # managed rules in one BatchGetItem per delivery), and a local sender's message to a user on
        # vacation (a verified sender: authenticated submission) from a new sender each time, so a
        # reply is sent every time (vacation state written, the reply routed and stored), against
        # the same submission without vacation.
        from postern.sieve.managed import Managed, VacationSettings
        from postern.sieve.repository import repository

        repo = repository(self.stack.settings, self.stack.clients)
        d = self.stack.directory
        for u in ("dave@example.test", "erin@example.test", "frank@example.test"):
            d.add_user(u, self.password)
        repo.put("dave@example.test", "rules",
                 'require ["fileinto"];\nif header :contains "subject" "never-matches" { fileinto "Junk"; }\n')
        repo.activate("dave@example.test", "rules")
        Managed(repo).set_vacation("frank@example.test", VacationSettings(text="Away until Monday."))
        senders = [f"s{i}@example.test" for i in range(2 * reps + 2)]
        for u in senders:
            d.add_user(u, self.password)
            self.stack.store.ensure_mailboxes(u)  # the reply's first delivery would create them: not per message
        self._smtp_send(["dave@example.test"])
        self._submit_as(senders.pop(), ["erin@example.test"])
        self._submit_as(senders.pop(), ["frank@example.test"])
        self._measure("inbound, 1 recipient, Sieve script", reps, inbound(["dave@example.test"]))

        def local(rcpt):
            def run():
                for _ in range(reps):
                    self._submit_as(senders.pop(), [rcpt])
                return {}
            return run

        if self.stack.submission_port:
            self._measure("local submission, 1 recipient", reps, local("erin@example.test"))
            self._measure("local submission to a user on vacation (reply sent)", reps, local("frank@example.test"))

        if self.stack.submission_port:
            self._measure("outbound (submission)", reps, outbound)
            self._measure("outbound refused 550 -> failure notice to the local sender", reps, bounced)

        def pop3():
            got = 0
            for _ in range(reps):
                c = poplib.POP3("127.0.0.1", self.stack.pop3_port, timeout=30)
                c.user(self.users[2])
                c.pass_(self.password)
                c.stat()
                c.uidl()
                _resp, lines, octets = c.retr(1)
                got += octets
                c.quit()
            return {"data_out": got}

        if self.stack.pop3_port:
            self._measure("POP3 session (STAT, UIDL, RETR 1)", reps, pop3, unit="sessions")

        idle_seconds = 2.0 if reps <= 3 else 4.0

        def imap_session():
            got = 0
            for _ in range(reps):
                c = imaplib.IMAP4("127.0.0.1", self.stack.imap_port, timeout=30)
                c.login(self.users[1], self.password)
                c.select("INBOX")
                typ, data = c.fetch("1:*", "(UID FLAGS ENVELOPE)")
                typ, data = c.fetch("1", "(BODY.PEEK[])")
                got += sum(len(p[1]) for p in data if isinstance(p, tuple))
                c.logout()
            return {"data_out": got}

        def imap_idle():
            c = imaplib.IMAP4("127.0.0.1", self.stack.imap_port, timeout=30)
            c.login(self.users[1], self.password)
            c.select("INBOX")
            tag = c._new_tag().decode()
            c.send(f"{tag} IDLE\r\n".encode())
            c.readline()  # "+ idling"
            with self.ev.counter.measure() as m:
                time.sleep(idle_seconds)
            c.send(b"DONE\r\n")
            while not c.readline().startswith(tag.encode()):
                pass
            c.logout()
            return {"idle_usage": m.usage, "idle_seconds": idle_seconds}

        if self.stack.imap_port:
            self._measure("IMAP session (SELECT, FETCH headers + 1 body)", reps, imap_session, unit="sessions")
            self._measure("IMAP IDLE", 1, imap_idle, unit="sessions")


# ---------------------------------------------------------------- computing
def deployed_log_level() -> str:
    """The functions' LOG_LEVEL as template.yaml deploys them (Globals)."""
    from postern_local.template import load_template

    env = load_template().get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    return str(env.get("LOG_LEVEL", "INFO"))


def lambda_arch(template: dict) -> str:
    from postern_local.template import resolve

    arch = (resolve(template, template.get("Globals", {}).get("Function", {}).get("Architectures")) or ["x86_64"])[0]
    return "arm64" if arch == "arm64" else "x86_64"  # FunctionArchitecture's default (it was read as x86_64)


def sqs_functions(template: dict) -> set[str]:
    """Functions an SQS event source mapping feeds (its receives and deletes are billed SQS requests)."""
    return {name for name, r in template.get("Resources", {}).items()
            if r.get("Type") == "AWS::Serverless::Function"
            and any(e.get("Type") == "SQS" for e in (r.get("Properties", {}).get("Events") or {}).values())}


def trace_sample_rate(template: dict) -> float:
    """The share of messages traced in X-Ray: template.yaml's TraceSampleRate default (postern.tracing)."""
    tracing = template.get("Globals", {}).get("Function", {}).get("Tracing", "PassThrough")
    if tracing == "Active":
        return 1.0  # Lambda's own sampling: every invocation at Postern's volumes
    default = template.get("Parameters", {}).get("TraceSampleRate", {}).get("Default", 1.0)
    return min(1.0, max(0.0, float(default)))


def invocation_log_bytes(inv, assumptions: dict) -> float:
    """What one invocation sends to CloudWatch Logs: the lines its handler printed (counted by its worker,
    postern_local.worker) plus Lambda's own START/END/REPORT lines; the flat assumption when not measured."""
    printed = getattr(inv, "log_bytes", None)
    if printed is None:
        return assumptions["lambda_log_bytes_per_invocation"]
    # In AWS, Powertools adds "xray_trace_id" (from Lambda's _X_AMZN_TRACE_ID) to each record: not set locally.
    xray = (getattr(inv, "log_records", 0) or 0) * assumptions["lambda_xray_key_bytes_per_log_record"]
    return printed + xray + assumptions["lambda_platform_log_bytes_per_invocation"]


def log_bytes_per_message(res: dict, assumptions: dict, batch: int = 1, functions=None) -> float:
    """Log bytes per message of a scenario: the invocations' (shared by ``batch`` records, as their count is)
    and, when ``functions`` is None, the gateway's own lines."""
    invs = [i for i in res["invocations"] if functions is None or i.function in functions]
    total = sum(invocation_log_bytes(i, assumptions) for i in invs) / batch
    if functions is None:
        total += res.get("gateway_log_bytes", 0)
    return total / max(1, res["messages"])


def log_note(run_results: dict, assumptions: dict) -> str:
    """How the Logs column was counted, with the measured bytes of the one-recipient inbound message."""
    res = run_results.get("inbound, 1 recipient")
    per_fn: dict[str, list[int]] = {}
    for inv in (res or {}).get("invocations", ()):
        if getattr(inv, "log_bytes", None) is not None:
            per_fn.setdefault(inv.function, []).append(inv.log_bytes)
    plat = assumptions["lambda_platform_log_bytes_per_invocation"]
    parts = [f"{fn} {sum(v) / len(v):.0f} B" for fn, v in sorted(per_fn.items())]
    gw = (res or {}).get("gateway_log_bytes", 0) / max(1, (res or {}).get("messages", 1))
    return (f"the lines each handler printed per invocation (Powertools' JSON log line and EMF metrics, counted"
            f" in its worker; inbound, 1 recipient: {', '.join(parts) or 'not measured'}) plus {plat} B of Lambda's"
            f" START/END/REPORT lines and {assumptions['lambda_xray_key_bytes_per_log_record']} B per log record for the"
            f" xray_trace_id key Powertools adds in AWS, and the gateway's own lines ({gw:.0f} B per message in its format), at"
            f" CloudWatch Logs' ingestion price (where a worker did not count,"
            f" {assumptions['lambda_log_bytes_per_invocation']} B per invocation is assumed).")


def scenario_usage(res: dict, memory: dict[str, int], arch: str, assumptions: dict, latency: float = 0.0,
                   batch: int = 1) -> dict:
    """Billing-unit usage of one scenario, per message (or per session). ``batch``: model SQS batches of
    that many records (the event source's receive/delete, invocations, traces and per-invocation logs
    divided by it; duration kept as measured, a conservative choice)."""
    usage = res["usage"]
    n = max(1, res["messages"])
    scopes = {k: v for k, v in usage.scopes.items() if not k.startswith("esm:")}
    s3_t1 = sum(s.s3_tier1 for s in scopes.values())
    s3_t2 = sum(s.s3_tier2 for s in scopes.values())
    sqs = sum(s.sqs_chunks for s in scopes.values())
    sns = sum(s.requests.get("sns.Publish", 0) for s in scopes.values())
    wru = sum(s.ddb_wru for s in scopes.values())
    rru = sum(s.ddb_rru for s in scopes.values())
    invs = res["invocations"]
    # ESM model: one ReceiveMessage and one DeleteMessageBatch per batch, for functions fed by SQS (the
    # FeedFunction reads the table's stream, which Lambda does at no charge).
    sqs += 2 * sum(1 for i in invs if i.function in assumptions["sqs_functions"]) / batch
    gbs = 0.0
    aws_requests = {name: s.total_requests for name, s in scopes.items()}
    per_fn_inv: dict[str, int] = {}
    for inv in invs:
        per_fn_inv[inv.function] = per_fn_inv.get(inv.function, 0) + 1
    for inv in invs:
        extra = 0.0
        if latency:
            reqs = aws_requests.get(f"lambda:{inv.function}", 0) / max(1, per_fn_inv[inv.function])
            extra = latency * reqs
        ms = math.ceil((inv.seconds + extra) * 1000)
        gbs += ms / 1000 * memory.get(inv.function, 256) / 1024
    u = {
        "s3_tier1": s3_t1 / n,
        "s3_tier2": s3_t2 / n,
        "sqs_requests": sqs / n,
        "sns_publish": sns / n,
        "ddb_wru": wru / n,
        "ddb_rru": rru / n,
        "lambda_requests": len(invs) / batch / n,
        f"lambda_gb_s_{arch}": gbs / n,
        "xray_traces": len(invs) / batch * assumptions["trace_sample_rate"] / n,
        "log_gb": log_bytes_per_message(res, assumptions, batch) / 1e9,
    }
    if res.get("data_out"):
        u["data_out_gb"] = res["data_out"] / GB / n
    return {k: v for k, v in u.items() if v}


def stage_profile(results: dict, memory, arch, assumptions) -> dict:
    """Per-stage usage per message for :func:`postern.costs.message_cost`."""
    stages: dict[str, dict] = {}

    def scope_usage(res, scope_prefixes: tuple[str, ...], fn_names: tuple[str, ...], per: float):
        scopes = {k: v for k, v in res["usage"].scopes.items() if k.startswith(scope_prefixes)}
        invs = [i for i in res["invocations"] if i.function in fn_names]
        esm = 2 * sum(1 for i in invs if i.function in assumptions["sqs_functions"])
        u = {
            "s3_tier1": sum(s.s3_tier1 for s in scopes.values()) / per,
            "s3_tier2": sum(s.s3_tier2 for s in scopes.values()) / per,
            "sqs_requests": (sum(s.sqs_chunks for s in scopes.values()) + esm) / per,
            "sns_publish": sum(s.requests.get("sns.Publish", 0) for s in scopes.values()) / per,
            "ddb_wru": sum(s.ddb_wru for s in scopes.values()) / per,
            "ddb_rru": sum(s.ddb_rru for s in scopes.values()) / per,
        }
        if invs:
            u["lambda_requests"] = len(invs) / per
            u["xray_traces"] = len(invs) * assumptions["trace_sample_rate"] / per
            u[f"lambda_gb_s_{arch}"] = sum(math.ceil(i.seconds * 1000) / 1000 * memory.get(i.function, 256) / 1024
                                           for i in invs) / per
            u["log_gb"] = log_bytes_per_message(res, assumptions, functions=fn_names) * res["messages"] / 1e9 / per
        elif scope_prefixes == ("gateway",):  # the gateway's own log lines
            u["log_gb"] = res.get("gateway_log_bytes", 0) / 1e9 / per
        return {k: round(v, 9) for k, v in u.items() if v}

    one = results.get("inbound, 1 recipient")
    three = results.get("inbound, 3 recipients")
    out = results.get("outbound (submission)")
    if one:
        stages["accept"] = scope_usage(one, ("gateway",), (), one["messages"])
        stages["route"] = scope_usage(one, ("lambda:RouterFunction",), ("RouterFunction",), one["messages"])
    # A delivery is a change the change feed carries (FeedFunction: the stream batch, its SNS publish):
    # priced with the store stage, so `postern trace ID --cost` counts it per mailbox delivery.
    store = ("lambda:StoreFunction", "lambda:FeedFunction"), ("StoreFunction", "FeedFunction")
    if one:  # the headline scenario: `postern trace ID --cost` of such a message agrees with it exactly
        stages["store"] = scope_usage(one, *store, one["messages"])
    elif three:
        stages["store"] = scope_usage(three, *store, three["messages"] * 3)
    if out:
        stages["submit"] = scope_usage(out, ("gateway",), (), out["messages"])
        stages["deliver"] = scope_usage(out, ("lambda:DeliverFunction",), ("DeliverFunction",), out["messages"])
    bounce = results.get("outbound refused 550 -> failure notice to the local sender")
    if bounce:
        ndr = scope_usage(bounce, ("lambda:NdrFunction",), ("NdrFunction",), bounce["messages"])
        if ndr:
            stages["notice"] = ndr
    return stages


# Issue 12's targets, per million messages (outbound: plus SES's own fee), printed beside the figures.
TARGETS = {"inbound, 1 recipient": 10.0, "inbound, 3 recipients": 20.0, "outbound (submission)": 10.0}
FLOOR_TARGETS = {"default (GatewayProfile=ha)": 50.0, "small (GatewayProfile=small)": 30.0}

# The profiles priced: what template.yaml creates for these parameters (the walk-through's: a hosted
# zone, so Postern gets its own certificate: the SRS, TLS and ACME account secrets).
PROFILES = {
    "default (GatewayProfile=ha)": {"GatewayProfile": "ha", "HostedZoneId": "Z0EXAMPLE"},
    "small (GatewayProfile=small)": {"GatewayProfile": "small", "HostedZoneId": "Z0EXAMPLE"},
}


SERVICE_LABELS = {"GatewayMailService": "mail-in service (MX, submission)",
                  "GatewayAccessService": "mailbox-access service (IMAP, POP3, ManageSieve)",
                  "GatewaySoloService": "small profile's one service (every port)"}


def alarm_metric_count(props: dict) -> int:
    """Metrics an alarm (or a target-tracking metric) reads: 1 for a plain metric, else its MetricStats."""
    stats = sum(1 for m in props.get("Metrics") or [] if "MetricStat" in m)
    return stats or 1


def idle_floor(template: dict, prices: dict, overrides: dict | None = None) -> tuple[list[list], float, list[str]]:
    """Monthly cost of the stack template.yaml creates for ``overrides`` (parameters), with no mail at all."""
    from postern.costs import cost_of
    from postern_local.template import deployed, parameter_values

    params = parameter_values(template, overrides)
    d = deployed(template, overrides)
    by_type: dict[str, list[tuple[str, dict]]] = {}
    for name, r in d["Resources"].items():
        by_type.setdefault(r.get("Type", ""), []).append((name, r.get("Properties", {}) or {}))
    a = prices["assumptions"]

    def value(v, default=None):
        return params.get(v["Ref"], default) if isinstance(v, dict) and "Ref" in v else (default if v is None else v)

    rows, notes, usage_rows = [], [], []
    tasks = by_type.get("AWS::ECS::TaskDefinition", [])
    task_defs = dict(tasks)
    services = by_type.get("AWS::ECS::Service", [])
    desired = 0
    for sname, sp in services:  # each service runs its own task definition (template.yaml: mail-in, access)
        count = int(value(sp.get("DesiredCount"), 1) or 0)
        desired += count
        td_name = (sp.get("TaskDefinition") or {}).get("Ref", "")
        td = task_defs.get(td_name, {})
        cpu = int(value(td.get("Cpu"), 256)) / 1024
        mem = int(value(td.get("Memory"), 512)) / 1024
        arch = str(value((td.get("RuntimePlatform") or {}).get("CpuArchitecture"), "X86_64")).lower()
        arch = "arm64" if arch == "arm64" else "x86_64"
        containers = [c.get("Name") for c in td.get("ContainerDefinitions") or []]
        usage_rows.append((f"Fargate {SERVICE_LABELS.get(sname, sname)}: {count} gateway task(s) of {cpu:g} vCPU,"
                           f" {mem:g} GB, {arch} ({' + '.join(containers)})",
                           {f"fargate_vcpu_hour_{arch}": cpu * MONTH_H * count,
                            f"fargate_gb_hour_{arch}": mem * MONTH_H * count}))
    public_ips = 0
    for _n, p in services:
        net = ((p.get("NetworkConfiguration") or {}).get("AwsvpcConfiguration") or {})
        if net.get("AssignPublicIp") == "ENABLED":
            public_ips += int(value(p.get("DesiredCount"), 1) or 0)
    nlbs = [(n, p) for n, p in by_type.get("AWS::ElasticLoadBalancingV2::LoadBalancer", [])
            if p.get("Type", "application") == "network"]
    for name, p in nlbs:
        usage_rows.append((f"Network Load Balancer {name} (idle: no capacity units)", {"nlb_hour": MONTH_H}))
        if p.get("Scheme", "internet-facing") == "internet-facing":
            public_ips += len(p.get("SubnetMappings") or p.get("Subnets") or []) or 2
    if public_ips:
        usage_rows.append((f"public IPv4 addresses x{public_ips} (a task each: its way to ECR and the AWS APIs"
                           " without a NAT gateway" + ("; a load balancer node per zone)" if nlbs else ")"),
                           {"public_ipv4_hour": public_ips * MONTH_H}))
    for name, p in by_type.get("AWS::ElastiCache::ServerlessCache", []):
        usage_rows.append((f"ElastiCache Serverless {p.get('Engine', '')} {name} (rspamd's Bayes and greylisting;"
                           f" idle: its {a['valkey_serverless_min_gb'] * 1000:.0f} MB minimum)",
                           {"valkey_serverless_gb_hour": a["valkey_serverless_min_gb"] * MONTH_H}))
    nats = len(by_type.get("AWS::EC2::NatGateway", []))
    if nats:
        usage_rows.append((f"NAT gateways x{nats}", {"nat_gateway_hour": nats * MONTH_H}))
    # An alarm is billed per metric it reads ($0.10 each a month): a metric-math alarm once per
    # metric in its expression; a target-tracking scaling policy makes two alarms of its own (scale
    # out, scale in) on its metric, billed the same way.
    alarms = by_type.get("AWS::CloudWatch::Alarm", [])
    alarm_metrics = sum(alarm_metric_count(p) for _n, p in alarms)
    tracking = [p for _n, p in by_type.get("AWS::ApplicationAutoScaling::ScalingPolicy", [])
                if p.get("PolicyType") == "TargetTrackingScaling"]
    tracking_metrics = sum(2 * alarm_metric_count((p.get("TargetTrackingScalingPolicyConfiguration") or {})
                                                  .get("CustomizedMetricSpecification") or {}) for p in tracking)
    if alarms or tracking:
        usage_rows.append((f"CloudWatch alarms x{len(alarms) + 2 * len(tracking)}, {alarm_metrics + tracking_metrics}"
                           f" alarm metrics ({len(alarms)} of the template's: {alarm_metrics} metrics, metric math"
                           f" billed per metric"
                           + (f"; 2 per target-tracking scaling policy x{len(tracking)}" if tracking else "") + ")",
                           {"cloudwatch_alarm_month": alarm_metrics + tracking_metrics}))
    secrets = [n for n, _p in by_type.get("AWS::SecretsManager::Secret", [])]
    if secrets:
        usage_rows.append((f"Secrets Manager secrets x{len(secrets)} ({', '.join(secrets)})",
                           {"secret_month": len(secrets)}))
    if params.get("HostedZoneId"):
        usage_rows.append(("Route 53 hosted zone of GatewayHostname (queries: $0.40 per million, by traffic)",
                           {"route53_zone_month": 1}))
    insights = [n for n, p in by_type.get("AWS::ECS::Cluster", [])
                if {"Name": "containerInsights", "Value": "enabled"} in (p.get("ClusterSettings") or [])]
    if insights:
        metrics = (a["container_insights_metrics_per_cluster"] + a["container_insights_metrics_per_service"]
                   * len(services) + a["container_insights_metrics_per_task_family"] * len(tasks))
        usage_rows.append((f"Container Insights: about {metrics} custom metrics (cluster, {len(services)} services,"
                           " task family; an estimate of AWS's metric list)", {"cloudwatch_metric_month": metrics}))
    emf = sum(1 for _n, p in services)  # OpenSessions: one metric per service (ClusterName, ServiceName)
    if emf:
        usage_rows.append((f"OpenSessions metric from the gateway's log line x{emf}"
                           " (ha: sessions scaling; small: the heartbeat alarm)",
                           {"cloudwatch_metric_month": emf}))
    if desired and any(p.get("MetricName") == "TlsCertificateDaysLeft" for _n, p in alarms):
        # postern_gateway/trust/certexpiry.py: every task puts the served certificate's days left
        # (one metric: the hostname is its only dimension) every POSTERN_TLS_METRIC_INTERVAL (900 s)
        puts = desired * 3600 / 900 * MONTH_H
        usage_rows.append((f"TlsCertificateDaysLeft metric x1 ({desired} task(s) putting it every 900 s)",
                           {"cloudwatch_metric_month": 1, "cloudwatch_api_requests": puts}))
    if desired:
        usage_rows.append((f"gateway log ingestion when idle ({a['gateway_log_bytes_per_task_minute']} B a task-minute:"
                           " the OpenSessions line, health)",
                           {"log_gb": desired * a["gateway_log_bytes_per_task_minute"] * 60 * MONTH_H / 1e9}))
    if desired and any(n == "ChangeFeedTopic" for n, _p in by_type.get("AWS::SNS::Topic", [])):
        # postern_gateway/changefeed.py: each task long-polls its own queue (20 s); the stream and the
        # feed function cost nothing idle (Lambda reads a stream at no charge).
        usage_rows.append((f"change feed: {desired} gateway task(s) long-polling their own queue (20 s)",
                           {"sqs_requests": desired * 3 * 60 * MONTH_H}))
    # postern_gateway/spam/relay.py: each task with rspamd (its gateway has the controller and the learn queue:
    # the mail-in tasks, or the small profile's one task) long-polls the spam lessons (20 s); without rspamd the
    # queue exists but nobody is handed its URL
    readers = 0
    for _n, sp in services:
        for c in task_defs.get((sp.get("TaskDefinition") or {}).get("Ref", ""), {}).get("ContainerDefinitions") or []:
            env = {e.get("Name"): e.get("Value") for e in c.get("Environment") or []}
            if env.get("POSTERN_LEARN_QUEUE_URL") and env.get("POSTERN_RSPAMD_CONTROLLER_URL"):
                readers += int(value(sp.get("DesiredCount"), 1) or 0)
    if readers:
        usage_rows.append((f"spam lesson relay: {readers} mail-in task(s) long-polling LearnQueue (20 s)",
                           {"sqs_requests": readers * 3 * 60 * MONTH_H}))
    # Lambda's SQS pollers long-poll every queue with an event source even when idle.
    esm_queues = 0
    for _n, p in by_type.get("AWS::Serverless::Function", []):
        esm_queues += sum(1 for e in (p.get("Events") or {}).values() if e.get("Type") == "SQS")
    polls = esm_queues * a["esm_pollers_per_queue"] * a["esm_idle_receives_per_poller_per_minute"] * 60 * MONTH_H
    usage_rows.append((f"idle SQS long polls by Lambda ({esm_queues} queues x {a['esm_pollers_per_queue']} pollers, 20 s)",
                       {"sqs_requests": polls}))
    total = 0.0
    for label, usage in usage_rows:
        b = cost_of(usage, prices)
        total += b.total
        rows.append([label, ", ".join(f"{q:,.0f} {l.unit}" if q >= 10 else f"{q:,.2f} {l.unit}"
                                      for q, l in ((l.quantity, l) for l in b.lines)), f"${b.total:,.2f}"])
    endpoints = [p for _n, p in by_type.get("AWS::EC2::VPCEndpoint", []) if p.get("VpcEndpointType") == "Interface"]
    if endpoints:
        notes.append(f"{len(endpoints)} interface VPC endpoints not priced (about $7.30 per AZ-month each)")
    return rows, total, notes


# Spam filtering priced apart from the floor (issue 13): what each option adds to a profile, as the
# difference of two floors of the same template (the parameters an operator sets for it), and clamd,
# which the template does not create (RspamdClamd names one), modelled as a task of its own.
RSPAMD_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/postern-rspamd@sha256:" + "0" * 64
SPAM_OPTIONS = {
    "default (GatewayProfile=ha)": {"rspamd": {"RspamdImage": RSPAMD_IMAGE, "MailInMemory": "1024"}},
    "small (GatewayProfile=small)": {"rspamd": {"RspamdImage": RSPAMD_IMAGE, "GatewayMemory": "2048"}},
}


def spam_extras(template: dict, prices: dict) -> list[list[str]]:
    """Rows (option, what it adds to each profile's floor a month) for rspamd, its Valkey and clamd."""
    from postern.costs import cost_of

    a = prices["assumptions"]
    rows = {"rspamd sidecar in the mail-in task(s) (RspamdImage; ~240 MiB measured: MailInMemory=1024,"
            " small profile GatewayMemory=2048; SpamUncheckedAlarm; the lesson relay's polls)": [],
            "shared Bayes and greylisting state (RspamdValkey=true: ElastiCache Serverless Valkey at its"
            f" {a['valkey_serverless_min_gb'] * 1000:.0f} MB minimum; a Redis of your own via RspamdRedis instead:"
            " its own price)": []}
    for name, options in SPAM_OPTIONS.items():
        base_o = PROFILES[name]
        base = idle_floor(template, prices, base_o)[1]
        with_rspamd = idle_floor(template, prices, {**base_o, **options["rspamd"]})[1]
        with_valkey = idle_floor(template, prices, {**base_o, **options["rspamd"], "RspamdValkey": "true"})[1]
        (r1, r2) = rows.values()
        r1.append(f"${with_rspamd - base:+,.2f}")
        r2.append(f"${with_valkey - with_rspamd:+,.2f}")
    clamd = cost_of({"fargate_vcpu_hour_arm64": a["clamd_task_vcpu"] * MONTH_H,
                     "fargate_gb_hour_arm64": a["clamd_task_gb"] * MONTH_H,
                     "public_ipv4_hour": MONTH_H}, prices).total
    clamd_row = (f"clamd for RspamdClamd (not in the template: one task of its own, {a['clamd_task_vcpu']:g} vCPU,"
                 f" {a['clamd_task_gb']:g} GB arm64 - ClamAV holds ~1.2 GiB of signatures, twice that while reloading -"
                 " and a public address for freshclam)")
    out = [[k, *v] for k, v in rows.items()]
    out.append([clamd_row, f"${clamd:+,.2f}", f"${clamd:+,.2f}"])
    return out


FLOOR_START = "## Monthly idle floor: "  # docs/cost.md's floor part runs from here to FLOOR_END (--floor rewrites it)
FLOOR_END = "## HTTPS front"


def _row_cost(rows: list[list], prefix: str) -> float:
    return sum(float(r[2].strip("$*").replace(",", "")) for r in rows if r[0].startswith(prefix))


def floor_section(template: dict, prices: dict, floors: dict) -> list[str]:
    """docs/cost.md's floor part: each profile line by line, what the small profile gives up, spam filtering
    apart, and why the default is where it is against its target."""
    a = prices["assumptions"]
    out: list[str] = []
    for name, (f_rows, f_total, f_notes) in floors.items():
        t = FLOOR_TARGETS[name]
        out += [f"{FLOOR_START}{name}, no mail", "",
                md_table(["resource", "quantity", "per month"],
                         f_rows + [["**total**", f"target <= ${t:g}: {'met' if f_total <= t else 'NOT met'}",
                                    f"**${f_total:,.2f}**"]]), ""]
        if f_notes:
            out += ["Not counted: " + "; ".join(f_notes) + ".", ""]
    ha_rows, ha_total, _ = floors["default (GatewayProfile=ha)"]
    fargate, nlb, ips = (_row_cost(ha_rows, "Fargate"), _row_cost(ha_rows, "Network Load Balancer"),
                         _row_cost(ha_rows, "public IPv4"))
    out += [
        "What the small profile gives up, for the difference: one task, so a restart, a crash or a deployment"
        " moves the gateway to a new public address, which the new task publishes in Route 53 when it listens"
        " (TTL 60 s: senders retry, clients reconnect within about a minute; a deployment starts the new task"
        " before the old one drains); no second Availability Zone; no autoscaling; the client's address is seen"
        " directly (no load balancer); no Container Insights (the alarm watches the task's own once-a-minute"
        " OpenSessions line instead). The default profile keeps two services behind the NLB, each with its own"
        " task definition (an ECS service attaches at most five target groups and the gateway has eight ports;"
        " the mailbox-access service holds five: 143, 993, 110, 995, 4190), rspamd only in the mail-in one.",
        "",
        "Task sizes: 0.25 vCPU per task (GatewayCpu=256), measured against the gateway's needs: idle it uses"
        " next to no CPU (one OpenSessions line a minute, the change feed's long poll), an MX message costs"
        " about 1.2 ms of gateway CPU (6 ms with rspamd in the task: bench/smtp_ingest.py, README \"Spam"
        " filtering\"), so a quarter vCPU carries tens of messages a second and the CPU scaling policy adds tasks"
        " before it saturates. Memory: 0.5 GB per task, Fargate's least for a quarter vCPU. The gateway's RSS is"
        " about 85 MiB idle; under the mailbox-access share of `make load` (`bench/load.py --quick --smtp 0`:"
        " 100 IMAP IDLE, 20 active IMAP and 50 POP3 sessions, 4 probes) it peaked at 345 MiB with four argon2id"
        " password checks at a time (64 MiB each) and at 152 MiB with one, which is what the template runs on a"
        " quarter vCPU (`POSTERN_PASSWORD_CHECKS` from GatewayCpu: hashing is CPU work, so more checks than CPU"
        " buy no logins a second; in that run one at a time also logged in sooner, LOGIN p50 8.1 s against"
        " 11.9 s, and no POP3 session timed out, against 11 of 50, on a shared 2-core machine at load 8-16);"
        " the whole quick mix (200 SMTP sessions too: the small profile's one task) peaked at 157 MiB with one."
        " IMAP's work budget runs one worker in a 512 MiB task, `RLIMIT_AS` 160 MiB (two of 256 MiB from"
        " 1024): a 25 MiB message (one base64 attachment, or 16 MiB of 5,242 small parts) parsed, sectioned and"
        " searched peaked at 124 MiB in a worker, 24 MiB idle (`python bench/worker_memory.py`). 152 + 160 = 312 MiB of 512, and a worker cannot pass its limit:"
        " about 200 MiB stay free for sessions beyond the load's (test_template_ops holds every task size to"
        " three quarters). What the one worker gives up: two accounts' CPU-heavy commands (SEARCH of a large"
        " mailbox, SORT, THREAD) run one after the other instead of side by side, which on a quarter vCPU"
        " shared one CPU anyway; one that waits past its budget answers `NO [UNAVAILABLE]` and the CPU"
        " policy adds a task. A mail-in task's workers never start (no IMAP traffic); 1 GB with rspamd. arm64"
        " (Graviton) Fargate is 20 % cheaper than x86_64 and the gateway image is built for it.",
        "",
        "Alarms are priced per alarm metric ($0.10 a month each): a metric-math alarm once per metric it reads,"
        " and each target-tracking scaling policy makes two alarms (scale out, scale in) of its own. The set"
        " watches each failure once: a DLQ with a message; the age of the inbound, store and outbound queues"
        " (which is how a failing or throttled router, store or deliver function shows, so they have no Errors"
        " alarm of their own); Errors of the feed, NDR, reports and junk-expiry functions (a throttled batch of"
        " theirs is retried and ends in a DLQ); Errors and Throttles of the HTTPS and push functions (clients"
        " call them); the certificate's days left (a failing CertFunction shows there, two weeks after it"
        " starts retrying); per gateway service, one target group's healthy and unhealthy counts (every group"
        " of a service checks the same `/healthz`, which covers the event loop and every listener).",
        "",
        "## Spam filtering, priced apart (added to the floors above, per month)",
        "",
        md_table(["option", "default (ha) adds", "small adds"], spam_extras(template, prices)),
        "",
        "Per message, rspamd costs gateway and rspamd CPU inside the task (above) and, with the Valkey, about"
        f" {a['rspamd_valkey_ecpu_per_message']} ECPUs (Bayes token reads and writes, greylisting; an estimate,"
        f" not measured: ${cost_of_ecpu(prices, a):,.2f} per million messages). Off (no Valkey, no RspamdRedis)"
        " means no Bayes learning and no greylisting: rspamd's other rules still score every message; the"
        " small profile is priced that way, as is the default.",
        "",
    ]
    t = FLOOR_TARGETS["default (GatewayProfile=ha)"]
    if ha_total > t:
        out += [
            f"**Why the default is above ${t:g}.** ${nlb + ips:,.2f} of its ${ha_total:,.2f} is the shape a highly"
            f" available front needs: the NLB (${nlb:,.2f}) and four public IPv4 addresses (${ips:,.2f}: one per NLB"
            " node in two zones, one per task, which reaches ECR and the AWS APIs through it; a NAT gateway or the"
            " seven interface endpoints the tasks would need instead cost $36 and $102 a month). Fargate is at its"
            f" least, ${fargate:,.2f} (two quarter-vCPU, half-GB arm64 tasks; the issue's split needs two services)."
            f" What would reach ${t:g}, not done: the tasks reaching ECR and the AWS APIs over IPv6 (dual-stack"
            " subnets and an egress-only path, no public IPv4 on the tasks: -$7.30 a month; it needs every service"
            " the tasks call - ECR, S3, SQS, SNS, DynamoDB, CloudWatch and its Logs, Secrets Manager, SSM - reachable"
            " on dual-stack endpoints from Fargate, which cannot be checked from here and would break the gateway"
            " on the first one that is not); the TLS certificate and the SRS key as SSM SecureString parameters"
            " like the ACME account key (-$0.80: the certificate's secret is also the bring-your-own one operators"
            " write, versioned for the gateway's reload; the SRS key is made by CloudFormation, so something would"
            " have to make it at first use, with write access for readers that only need to read); a front without"
            " the NLB (each service's tasks publishing their own addresses in Route 53 with health checks, as the"
            " small profile's task does: about -$22 a month, but a failed task's address lingers for the TTL and a"
            " client may be sent to it); an NLB in one zone (-$3.65, but then one zone's outage takes the front"
            " down: not highly available); a Compute Savings Plan on Fargate (a billing choice, -20 % to -50 % of"
            " the Fargate line). The HTTPS origin secret stays a secret: CloudFront reads it by a"
            " `resolve:secretsmanager` reference, and SecureString references are not accepted there.",
            "",
        ]
    out += [
        "Idle SQS polling assumes Lambda keeps "
        f"{a['esm_pollers_per_queue']} long-polling (20 s) pollers per queue; DynamoDB, S3 and Lambda cost nothing idle;"
        " free tiers (1M Lambda requests, 400,000 GB-s, 1M SQS requests, 100,000 X-Ray traces a month) are ignored."
        " The HTTPS front (CloudFront, the HTTP API, its function) costs nothing idle beyond what the floors"
        " above count from the template (its origin secret, its functions' alarms, the reports queue's polls);"
        " WAF, when attached (edge.yaml), adds its own monthly fee (below). JMAP push over WebSocket is billed"
        " per connection-minute and message, nothing idle.",
        "",
    ]
    return out


def cost_of_ecpu(prices: dict, a: dict) -> float:
    from postern.costs import cost_of

    return cost_of({"valkey_serverless_ecpu": a["rspamd_valkey_ecpu_per_message"] * 1e6}, prices).total


def floor_text(template: dict, prices: dict) -> str:
    """`make cost-floor` / `make cost`: every profile's floor line by line, then spam filtering apart."""
    floors = {name: idle_floor(template, prices, o) for name, o in PROFILES.items()}
    out = []
    for name, (rows, total, _n) in floors.items():
        t = FLOOR_TARGETS[name]
        out += [f"idle floor, {name}, per month:",
                table(["resource", "quantity", "per month"],
                      rows + [["total", f"target <= ${t:g}: {'met' if total <= t else 'NOT met'}", f"${total:,.2f}"]]),
                ""]
    out += ["spam filtering, added to the floors above (per month):",
            table(["option", "default (ha) adds", "small adds"], spam_extras(template, prices), align="lrr")]
    return "\n".join(out)


def https_front(prices: dict, arch: str, feed_memory: int = 256) -> list[str]:
    """The HTTPS front's cost (issue 14), modelled from list prices (not measured by this run): per
    million requests of each kind, and what WAF adds. Nothing of it costs anything idle except what
    the idle floor above already counts from the template (the origin secret, its alarms)."""
    from postern.costs import cost_of

    gb_s = f"lambda_gb_s_{arch}"
    common = {"cloudfront_https_requests": 1e6, "http_api_requests": 1e6, "lambda_requests": 1e6}
    kinds = [
        # (what, Lambda GB-s per request at 512 MB, DynamoDB RRU, WRU, KB out)
        ("MTA-STS policy or autoconfig (no login)", 0.5 * 0.02, 1.0, 0, 1),
        ("JMAP call with a bearer token (token and user read; the store's reads not counted)",
         0.5 * 0.05, 1.5, 0, 4),
        ("password login (POST /auth/token or Basic past the cache: argon2id, 64 MiB, ~0.3 s at 512 MB)",
         0.5 * 0.35, 2.0, 2, 1),
    ]
    rows = []
    for what, gbs, rru, wru, kb in kinds:
        usage = {**common, gb_s: gbs * 1e6, "ddb_rru": rru * 1e6, "ddb_wru": wru * 1e6,
                 "cloudfront_data_out_gb": kb * 1e6 / 1024 / 1024}
        b = cost_of(usage, prices)
        rows.append([what, f"${b.total:,.2f}"])
    waf_month = cost_of({"waf_web_acl_month": 1, "waf_rule_month": 2}, prices).total
    waf_req = cost_of({"waf_requests": 1e6}, prices).total

    def month(usage: dict) -> str:
        return f"${cost_of(usage, prices).total:,.2f}"

    idle = [  # (what, usage a month idle, how it is billed once used)
        ("CloudFront distribution, response headers policy, viewer-request CloudFront Function", {},
         f"per request ({month({'cloudfront_https_requests': 1e6})} per million) and GB out; the function "
         f"{month({'cloudfront_function_invocations': 1e6})} per million invocations"),
        ("API Gateway HTTP API", {}, f"per request ({month({'http_api_requests': 1e6})} per million)"),
        ("HTTPS Lambda function", {}, "per request and GB-second (table below)"),
        ("ACM certificate in us-east-1 (public, DNS-validated, renewed by ACM)", {"acm_public_certificate_month": 1},
         "free"),
        ("DNS: 4 CNAMEs to the distribution and 1 validation CNAME per domain", {},
         f"records are free; in Route 53, {month({'route53_queries': 1e6})} per million queries (the zone's "
         f"{month({'route53_zone_month': 1})} is in the floor when Postern's)"),
        ("origin secret (HttpsOriginSecret) and the three alarms of the HTTPS and reports functions",
         {"secret_month": 1, "cloudwatch_alarm_month": 3}, "counted by the floor (make cost, from the template)"),
        ("AWS WAF web ACL with two rate-based rules (edge.yaml, optional)",
         {"waf_web_acl_month": 1, "waf_rule_month": 2}, f"{month({'waf_requests': 1e6})} per million requests"),
    ]
    idle_rows = [[what, month(usage), billed] for what, usage, billed in idle]
    without_waf = sum(cost_of(u, prices).total for w, u, _b in idle if "WAF" not in w)
    return [
        "## HTTPS front (JMAP, client set-up, MTA-STS; modelled from list prices)",
        "",
        md_table(["HTTPS side, idle", "per month", "once used"], idle_rows),
        "",
        f"Idle: ${without_waf:,.2f} a month without WAF, ${without_waf + waf_month:,.2f} with it; everything else of"
        " the HTTPS side is billed per request:",
        "",
        md_table(["per million requests", "cost (CloudFront, HTTP API, Lambda " + arch + " 512 MB, DynamoDB, data out)"],
                 rows),
        "",
        "Free tiers (CloudFront's 10M requests and 2M function invocations a month, Lambda's) are ignored."
        f" WAF adds ${waf_req:,.2f} per million requests to each row. Durations are estimates, not measured by this run; the"
        " login lockout caps what a password-guessing flood costs (argon2id is never run for a locked-out"
        " client), as does HttpsRateLimit.",
        "",
        *push_paragraph(prices, arch, feed_memory),
    ]


def push_paragraph(prices: dict, arch: str, feed_memory: int) -> list[str]:
    """JMAP push (RFC 8887) over API Gateway's WebSocket API, modelled from list prices: per change and per
    connected client (functions/feed pushes, functions/push authorizes and connects)."""
    from postern.costs import cost_of

    def usd(usage: dict, digits: int = 2) -> str:
        return f"${cost_of(usage, prices).total:,.{digits}f}"

    gb_s = f"lambda_gb_s_{arch}"
    minutes = MONTH_H * 60
    keepalives = minutes / 9  # one client message within each 10-minute idle timeout
    connected = cost_of({"apigw_ws_connection_minutes": minutes}, prices).total
    keep = cost_of({"apigw_ws_messages": keepalives}, prices).total
    reconnect = 0.002  # a ticket, the authorizer, $connect and $disconnect every 2 h (estimate)
    return [
        "JMAP push (RFC 8887; modelled from list prices: WebSocket API"
        f" {usd({'apigw_ws_messages': 1e6})} per million messages,"
        f" {usd({'apigw_ws_connection_minutes': 1e6})} per million connection-minutes): per million changes,"
        f" FeedFunction's registry Query of each changed account costs {usd({'ddb_rru': 0.5e6})} with nobody"
        f" connected (0.5 RRU) and each push to a socket adds"
        f" {usd({'apigw_ws_messages': 1e6, gb_s: 1e6 * 0.015 * feed_memory / 1024})} per million (one"
        f" `@connections` message, ~15 ms more of FeedFunction at {feed_memory} MB). A client connected all month"
        f" pays {minutes:,} connection-minutes (${connected:,.3f}), a reconnect every 2 h (ticket, authorizer,"
        f" `$connect`, `$disconnect`: about ${reconnect:,.3f} a month) and a keepalive within the 10-minute idle"
        f" timeout (${keep:,.3f}): about ${connected + keep + reconnect:,.2f} a month; nothing connected costs"
        " nothing but PushFunction's alarm (counted by `make cost` from the template).",
        "",
    ]


def report(run_results: dict, memory: dict, template: dict, reps: int) -> tuple[str, dict, str]:
    from postern.costs import cost_of, load_prices

    prices = load_prices()
    a = {**prices["assumptions"], "trace_sample_rate": trace_sample_rate(template),
         "sqs_functions": sqs_functions(template)}
    arch = lambda_arch(template)
    lines_md: list[str] = []
    text: list[str] = []
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

    headers = ["scenario (per million)", "S3", "SQS+SNS", "DynamoDB", "Lambda req", "Lambda GB-s", "X-Ray", "Logs",
               "Data out", "Total", "at AWS latency", "batches of 10 (model)", "target (issue 12)"]
    rows = []
    details = []
    per_message_totals = {}
    per_message_requests = {}  # without Lambda duration (its run-to-run noise hides a small increment)
    for name, res in run_results.items():
        if name == "IMAP IDLE":
            continue
        u = scenario_usage(res, memory, arch, a)
        u_lat = scenario_usage(res, memory, arch, a, latency=AWS_LATENCY_ALLOWANCE)
        b = cost_of({k: v * 1e6 for k, v in u.items()}, prices)
        b_lat = cost_of({k: v * 1e6 for k, v in u_lat.items()}, prices)
        b10 = cost_of({k: v * 1e6 for k, v in scenario_usage(res, memory, arch, a, batch=10).items()}, prices)
        group = {"S3": 0.0, "SQS+SNS": 0.0, "DynamoDB": 0.0, "Lambda req": 0.0, "Lambda GB-s": 0.0, "X-Ray": 0.0,
                 "Logs": 0.0, "Data out": 0.0}
        for line in b.lines:
            key = {"s3_tier1": "S3", "s3_tier2": "S3", "sqs_requests": "SQS+SNS", "sns_publish": "SQS+SNS",
                   "ddb_wru": "DynamoDB",
                   "ddb_rru": "DynamoDB", "lambda_requests": "Lambda req", "xray_traces": "X-Ray", "log_gb": "Logs",
                   "data_out_gb": "Data out"}.get(line.item, "Lambda GB-s")
            group[key] += line.cost
        per_message_totals[name] = b.total / 1e6
        per_message_requests[name] = sum(v for k, v in group.items() if k != "Lambda GB-s") / 1e6
        target = TARGETS.get(name)
        mark = "" if target is None else f"<= ${target:g} {'met' if b.total <= target else 'NOT met'}"
        rows.append([name] + [f"${v:,.2f}" for v in group.values()] + [f"**${b.total:,.2f}**", f"${b_lat.total:,.2f}",
                                                                       f"${b10.total:,.2f}", mark])
        total_scope = res["usage"].total()
        reqs = {k: v for k, v in sorted(total_scope.requests.items())}
        non_esm = {}
        for sname, s in res["usage"].scopes.items():
            if not sname.startswith("esm:"):
                for k, v in s.requests.items():
                    non_esm[k] = non_esm.get(k, 0) + v
        details.append((name, res, u, {k: v for k, v in sorted(non_esm.items())}, reqs))

    # Storage: a message kept for a month (its spool object is the blob its mailbox copies share) + index items.
    stor_rows = []
    one = run_results.get("inbound, 1 recipient")
    if one:
        size = one.get("bytes", 10 * 1024)
        item = one.get("index_item_bytes", 1500)
        st = cost_of({"s3_gb_month": 1e6 * size / GB,
                      "ddb_gb_month": 1e6 * (item + 100) / GB,
                      "ddb_pitr_gb_month": 1e6 * (item + 100) / GB}, prices)
        stor_rows.append([f"storage of 1M messages of {size / 1024:.0f} KB kept a month (S3: the spool object is the blob,"
                          f" DynamoDB index {item} B + PITR)", f"${st.total:,.2f} per month"])

    idle = run_results.get("IMAP IDLE")
    idle_row = None
    if idle and idle.get("idle_usage") is not None:
        iu = idle["idle_usage"]
        scopes = {k: v for k, v in iu.scopes.items() if not k.startswith("esm:")}
        secs = idle["idle_seconds"]
        per_month = MONTH_H * 3600 / secs
        ib = cost_of({"ddb_rru": sum(s.ddb_rru for s in scopes.values()) * per_month,
                      "ddb_wru": sum(s.ddb_wru for s in scopes.values()) * per_month,
                      "s3_tier2": sum(s.s3_tier2 for s in scopes.values()) * per_month}, prices)
        reqs = sum(s.total_requests for s in scopes.values())
        idle_row = [f"one IMAP client in IDLE all month ({reqs / secs:.1f} AWS requests/s measured)",
                    f"${ib.total:,.2f} per month"]
    feed = REPO / ".postern-local" / "evidence" / "feed.json"
    if feed.is_file():  # bench/feed.py: a window long enough to hold the change feed's safety-net polls
        fp = json.loads(feed.read_text())["priced"]
        idle_row = [f"one IMAP client in IDLE all month, at {fp['at_clients']:,} clients on {fp['tasks']} tasks"
                    f" (change feed; {fp['requests_per_idle_client_hour']:.1f} AWS requests/hour measured by"
                    " bench/feed.py, docs/feed.md; target <= $0.05)", f"${fp['per_idle_client_month']:,.4f} per month"]

    floors = {name: idle_floor(template, prices, o) for name, o in PROFILES.items()}
    floor_total = floors["default (GatewayProfile=ha)"][1]
    small_total = floors["small (GatewayProfile=small)"][1]

    # Comparison at a few volumes.
    inbound = per_message_totals.get("inbound, 1 recipient", 0.0)
    comp_rows = []
    for users, msgs in ((10, 10_000), (50, 100_000), (500, 1_000_000)):
        postern = (small_total if users <= 10 else floor_total) + inbound * msgs
        ses = cost_of({"ses_inbound": msgs, "ses_inbound_chunk": msgs}, prices).total
        wm = cost_of({"workmail_user_month": users}, prices).total
        comp_rows.append([f"{users} users, {msgs:,} inbound messages/month", f"${postern:,.2f}",
                          f"${ses:,.2f} (+ storage, Lambda, no IMAP/POP3)", f"${wm:,.2f}"])

    # ---- markdown
    lines_md += [
        "# What Postern costs to run",
        "",
        f"Measured by `make cost` (`bench/cost.py`) on {now}; prices: `layers/postern/postern/data/prices.json`"
        f" (us-east-1, as of {prices['as_of']}; {prices['source']})",
        "",
        "## Per million messages (or sessions)",
        "",
        md_table(headers, rows),
        "",
        f"Each scenario ran {reps} times on the local stack with warmed-up mailboxes, drained one message at a"
        " time, so every Lambda batch held one record (the low-volume worst case; at volume SQS batches of up to"
        " 10 divide the Lambda requests and the event-source receive/delete requests by up to 10)."
        " \"batches of 10 (model)\": the same requests with the event source's receive and delete, the"
        " invocations, their traces and their log lines shared by 10 records (template.yaml's BatchSize),"
        " duration per message kept as measured: what a busy stack pays, not measured here."
        f" Lambda duration at {memory.get('RouterFunction', 256)} MB {arch} (template.yaml), measured wall time"
        f" per invocation rounded up to 1 ms; \"at AWS latency\" adds {AWS_LATENCY_ALLOWANCE * 1000:.0f} ms per AWS"
        " request made inside the handler (an allowance for real service latency, not a measurement)."
        f" X-Ray: {a['trace_sample_rate']:g} of the messages traced end to end (template parameter TraceSampleRate;"
        " the gateway marks them, the functions run Tracing: PassThrough: postern/tracing.py), so traces per"
        " message = invocations x that share; logs and metrics cover every message. Logs: measured, "
        + log_note(run_results, a) +
        " SQS+SNS: SQS requests in 64 KB chunks, with the event source's receive and delete modelled for the"
        " SQS-fed functions (the FeedFunction reads the mail table's stream, at no charge), and the change feed's"
        " SNS publishes ($0.50 per million; its deliveries to the tasks' queues are free)."
        " Data out: bytes sent to the internet (POP3/IMAP downloads, outbound SMTP), $0.09/GB. Outbound uses the"
        " smarthost transport here; with the template's default `OutboundTransport=ses` add SES's $0.10 per"
        " 1,000 messages ($100 per million).",
        "",
    ]
    inc = []
    base, sieve = per_message_totals.get("inbound, 1 recipient"), per_message_totals.get("inbound, 1 recipient, Sieve script")
    if base is not None and sieve is not None:
        d = per_message_requests["inbound, 1 recipient, Sieve script"] - per_message_requests["inbound, 1 recipient"]
        inc.append(["an active Sieve script (read with the managed rules: one BatchGetItem per delivery, compiled"
                    " once per warm function)", f"${d * 1e6:+,.2f} (with Lambda duration: ${(sieve - base) * 1e6:+,.2f})"])
    loc, vac = (per_message_totals.get("local submission, 1 recipient"),
                per_message_totals.get("local submission to a user on vacation (reply sent)"))
    if loc is not None and vac is not None:
        d = (per_message_requests["local submission to a user on vacation (reply sent)"]
             - per_message_requests["local submission, 1 recipient"])
        inc.append(["vacation on, a reply sent (state item with TTL, the reply spooled, routed and stored or sent)",
                    f"${d * 1e6:+,.2f} (with Lambda duration: ${(vac - loc) * 1e6:+,.2f})"])
    rec = (one or {}).get("change_record_bytes")
    if rec:
        from postern.costs import cost_of as _c

        inc.append([f"the account change log (one record of {rec} B per change, included above in every delivery)",
                    f"${_c({'ddb_wru': 1e6 * math.ceil(rec / 1024)}, prices).total:,.2f}"])
    if rec:
        inc += priced_increments(prices)
    if inc:
        lines_md += ["## Per-message increments (per million deliveries)", "",
                     md_table(["what", "adds"], inc), "",
                     "The first two rows are the difference of two scenarios above run the same way (noise: Lambda"
                     " duration varies by a few cents between runs); the others are priced from the items and"
                     " requests the code writes for them: those marked \"included above\" are in every scenario's"
                     " figures, the others are not (the bench's messages reply to nothing and no JMAP client is"
                     " connected).",
                     ""]
    if stor_rows or idle_row:
        lines_md += ["## Storage and connected clients", "", md_table(["item", "cost"], stor_rows + ([idle_row] if idle_row else [])), ""]
    lines_md += floor_section(template, prices, floors)
    lines_md += [
        *https_front(prices, arch, memory.get("FeedFunction", 256)),
        "## Compared with SES inbound and WorkMail (per month)",
        "",
        md_table(["volume", "Postern (floor + measured inbound cost; small profile for 10 users)", "SES inbound ($0.10/1,000 + $0.09/1,000 chunks)",
                  "WorkMail ($4/user)"], comp_rows),
        "",
        "SES inbound only receives: it still needs a Lambda or S3 action and offers no mailbox, IMAP or POP3.",
        "",
        "## AWS requests per scenario (per message or session, measured)",
        "",
    ]
    for name, res, u, non_esm, _all in details:
        n = max(1, res["messages"])
        per = ", ".join(f"{k} {v / n:g}" for k, v in non_esm.items())
        scope_tot = {k: s.total_requests / n for k, s in res["usage"].scopes.items()
                     if not k.startswith("esm:") and s.total_requests}
        lines_md.append(f"- **{name}**: {sum(non_esm.values()) / n:g} requests ({per});"
                        f" by component: {', '.join(f'{k} {v:g}' for k, v in sorted(scope_tot.items()))};"
                        f" Lambda invocations {len(res['invocations']) / n:g}, mean"
                        f" {1000 * sum(i.seconds for i in res['invocations']) / max(1, len(res['invocations'])):.1f} ms;"
                        f" DynamoDB {u.get('ddb_wru', 0):g} WRU + {u.get('ddb_rru', 0):g} RRU;"
                        f" SQS incl. modelled event source {u.get('sqs_requests', 0):g}.")
    lines_md += ["", "Missing scenarios are not measured, not estimated." if len(details) < 6 else "", ""]
    text.append(table(headers, [[c.replace("**", "") for c in r] for r in rows]))
    text.append(floor_text(template, prices))
    if idle_row:
        text.append(" ".join(idle_row))
    profile = {"measured": now, "method": "bench/cost.py: counted AWS requests on the local stack, Lambda duration measured there",
               "prices_as_of": prices["as_of"], "stages": stage_profile(run_results, memory, arch, a),
               # per message, as the table above: what tests/unit/test_cost_model.py holds trace --cost to
               "scenarios": {k: round(v, 9) for k, v in per_message_totals.items()}}
    return "\n".join(lines_md), profile, "\n".join(text)


def change_record_bytes(run: Run) -> int:
    """Size of the newest change record of the account that received the inbound scenario."""
    from postern import keys
    from postern_local.requests import item_size

    from common import unhooked

    c = unhooked(run.stack.settings)
    r = c.dynamodb.query(TableName=run.stack.settings.mail_table, KeyConditionExpression="pk = :p",
                         ExpressionAttributeValues={":p": {"S": keys.log_pk(run.users[0])}}, ScanIndexForward=False,
                         Limit=1)
    items = r.get("Items", [])
    return item_size(items[0]) if items else 0


def index_item_bytes(run: Run) -> int:
    """Mean size of a message index item in the mail table (read with un-hooked clients)."""
    from postern import keys
    from postern_local.requests import item_size

    from common import unhooked

    c = unhooked(run.stack.settings)
    mb = run.stack.store.get_mailbox(run.users[0], "INBOX")
    r = c.dynamodb.query(TableName=run.stack.settings.mail_table, KeyConditionExpression="pk = :p",
                         ExpressionAttributeValues={":p": {"S": keys.messages_pk(run.users[0], mb.mailbox_id)}})
    items = r.get("Items", [])
    return int(sum(item_size(i) for i in items) / max(1, len(items)))


def priced_increments(prices: dict) -> list[list[str]]:
    """What the sorting (Sieve) and HTTPS (JMAP) issues add to each delivery, priced from the items and
    requests their code writes (postern.store.materialise, postern.sieve.repository, functions/feed)."""
    from postern.costs import cost_of as _c

    def usd(usage: dict) -> str:
        return f"${_c({k: v * 1e6 for k, v in usage.items()}, prices).total:,.2f}"

    return [
        ["sorting, for every delivery even without a script: the Sieve read (active script and managed rules, one"
         " BatchGetItem of two items, eventually consistent), included above", usd({"ddb_rru": 1.0})],
        ["JMAP: the email-id index (one E# item per delivery, 1 WRU), included above", usd({"ddb_wru": 1.0})],
        ["JMAP: mailbox thread counts, the thread's members item in its mailbox (one H# UpdateItem per delivery,"
         " 1 WRU while the thread has under ~150 messages there; read in the existing BatchGetItem, 1 RRU;"
         " postern/store/counts.py), included above", usd({"ddb_wru": 1.0, "ddb_rru": 1.0})],
        ["the thread index, a message that replies to another (one T# item, 1 WRU; a thread's first message"
         " writes none: it is found by its own Message-ID)", usd({"ddb_wru": 1.0})],
        ["JMAP push with nobody connected (FeedFunction's registry Query of the changed account, 0.5 RRU),"
         " included above", usd({"ddb_rru": 0.5})],
        ["JMAP push to each connected socket (one @connections message, ~15 ms more FeedFunction at 256 MB;"
         " HTTPS front section)", usd({"apigw_ws_messages": 1.0, "lambda_gb_s_arm64": 0.015 * 0.25})],
    ]


def write_floor(out: Path, write: bool) -> int:
    """``--floor``: print the floors; replace docs/cost.md's part from FLOOR_START to FLOOR_END with them."""
    from postern.costs import load_prices
    from postern_local.template import load_template

    template, prices = load_template(), load_prices()
    print(floor_text(template, prices))
    if not write:
        return 0
    doc = out.read_text() if out.exists() else ""
    if FLOOR_START not in doc or FLOOR_END not in doc:
        print(f"{out}: no floor part to replace (run make cost once)", file=sys.stderr)
        return 1
    floors = {name: idle_floor(template, prices, o) for name, o in PROFILES.items()}
    a, b = doc.index(FLOOR_START), doc.index(FLOOR_END)
    out.write_text(doc[:a] + "\n".join(floor_section(template, prices, floors)) + "\n" + doc[b:])
    print(f"wrote the floor part of {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/cost.py", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 repetitions per scenario instead of 10")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--out", default=str(DOCS))
    ap.add_argument("--profile", default=str(PROFILE))
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--floor", action="store_true",
                    help="the idle floors only (from template.yaml and the prices; no stack, seconds):"
                         " printed line by line, and docs/cost.md's floor part rewritten")
    args = ap.parse_args(argv)
    if args.floor:
        return write_floor(Path(args.out), not args.no_write)
    os.environ.setdefault("LOG_LEVEL", "ERROR")  # the handlers' Powertools loggers: quiet unless asked
    reps = args.reps or (3 if args.quick else 10)
    from postern_local.template import load_template

    run = Run(reps)
    try:
        run.scenarios()
        if "inbound, 1 recipient" in run.results:
            run.results["inbound, 1 recipient"]["index_item_bytes"] = index_item_bytes(run)
            run.results["inbound, 1 recipient"]["change_record_bytes"] = change_record_bytes(run)
        md, profile, text = report(run.results, run.memory, load_template(), reps)
    finally:
        run.close()
    print(text)
    if not args.no_write:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        kept = ""
        if out.exists() and HAND_WRITTEN in out.read_text():  # the notes below the marker are people's, not ours
            kept = out.read_text()[out.read_text().index(HAND_WRITTEN):]
        out.write_text(md + "\n" + (("\n" + kept) if kept else ""))
        Path(args.profile).write_text(json.dumps(profile, indent=1, sort_keys=True) + "\n")
        print(f"wrote {args.out} and {args.profile}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
